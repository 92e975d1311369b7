/**
 * `GET /metrics`: the daemon's Prometheus exposition (prom-client).
 *
 * Every relay and TPO metric is read at scrape time from the source's
 * `flows()` and `gateways()`, once per scrape: nothing is counted here
 * and no engine is asked anything. A flow's `stats()` is a synchronous read
 * on every tier — the portable tier's counters live in this thread, the
 * batched engine's in SharedArrayBuffers it writes from its worker, and the
 * kernel tier's in BPF maps (one bpf(2) lookup per flow and per in-kernel
 * subscriber) merged with its companion's shared counters — so a scrape
 * costs the service thread time proportional to flows and subscribers and
 * costs the data plane nothing. Process metrics come from prom-client's
 * default collectors on the same registry, prefixed `sluice_`.
 *
 * The names, labels and meaning of each metric: docs/METRICS.md.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';
import type { HostDrops, MonitoredFlowStats } from '../index.js';
import type { TpoGatewayStatus } from '../tpo/index.js';
import { registerFlowMetrics } from './metrics-flows.js';
import { registerMediaMetrics } from './metrics-media.js';
import { ScrapeCache, SnapshotCounter, SnapshotGauge, SnapshotRegistry } from './metrics-snapshot.js';
import { SubscriberCap, type CapResult } from './metrics-subscriber-cap.js';
import { registerTpoMetrics } from './metrics-tpo.js';
import { registerClusterMetrics } from './metrics-cluster.js';
import type { ClusterAgentStatus } from '../cluster/index.js';
import { registerTcpMetrics } from './metrics-tcp.js';
import type { TcpFlowStats } from './tcp-flows.js';
import { registerFanoutMetrics } from './metrics-fanout.js';
import type { FanoutStats } from '../index.js';

export { OTHER_SUBSCRIBER } from './metrics-flows.js';

/** What the metrics read, at each scrape. */
export interface MetricsSource {
  /** Every running flow's counters (`Flow.stats()`): synchronous, from shared memory or BPF maps. */
  flows(): readonly MonitoredFlowStats[];
  /** Every TPO gateway's status (`TpoGateway.status()`). */
  gateways(): readonly TpoGatewayStatus[];
  /** Engine failures as `GET /v1/health` lists them: `sluice_engine_failures` and, per engine, `sluice_engine_failed{engine}`. */
  failures?(): readonly { readonly engine: string }[];
  /** The cluster agent's status when the daemon is a cluster node (`sluice_cluster_*`). */
  cluster?(): ClusterAgentStatus | undefined;
  /** Kernel tier: the host's drops outside Sluice while its flows ran (`sluice_host_backlog_drops_total`); undefined elsewhere. */
  hostDrops?(): HostDrops | undefined;
  /** Every tcp-redirect's counters (`sluice_tcp_*`). */
  tcpFlows?(): readonly TcpFlowStats[];
  /** The fan-out's counters (`sluice_fanout_*`), undefined without one; `refreshFanout` is awaited before each scrape to update them. */
  fanout?(): FanoutStats | undefined;
  refreshFanout?(): Promise<void>;
}

export interface MetricsOptions {
  /** Subscribers (flow, subscriber pairs) with series of their own; the rest are summed per flow into `_other`. Default 10,000. */
  readonly maxSubscriberSeries?: number;
  /** A `node` label on every series (this daemon's name, for setups that merge several daemons' metrics). */
  readonly node?: string;
  /** `sluice_build_info{version}`. */
  readonly version?: string;
  /** Process metrics (prom-client's default collectors); default true. Tests that compare whole texts turn them off. */
  readonly processMetrics?: boolean;
}

export interface Metrics {
  /** The `Content-Type` of render()'s text (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /** The exposition text of one scrape. */
  render(): Promise<string>;
  readonly registry: Registry;
}

export const DEFAULT_MAX_SUBSCRIBER_SERIES = 10_000;

interface Reading {
  readonly flows: CapResult;
  readonly gateways: readonly TpoGatewayStatus[];
  readonly failures: readonly { readonly engine: string }[];
  readonly cluster: ClusterAgentStatus | undefined;
  readonly tcp: readonly TcpFlowStats[];
}

export function createMetrics(source: MetricsSource, opts: MetricsOptions = {}): Metrics {
  const registry = new SnapshotRegistry(opts.node === undefined ? {} : { node: opts.node });
  const max = opts.maxSubscriberSeries ?? DEFAULT_MAX_SUBSCRIBER_SERIES;
  const cap = new SubscriberCap(max);
  const reading = new ScrapeCache<Reading>(() => ({
    flows: cap.apply(source.flows()),
    gateways: source.gateways(),
    failures: source.failures?.() ?? [],
    cluster: source.cluster?.(),
    tcp: source.tcpFlows?.() ?? [],
  }));

  registerFlowMetrics(registry, reading, max);
  registerMediaMetrics(registry, reading);
  registerTpoMetrics(registry, reading);
  if (source.cluster) registerClusterMetrics(registry, reading);
  if (source.tcpFlows) registerTcpMetrics(registry, () => reading.get().tcp);
  if (source.fanout) registerFanoutMetrics(registry, source.fanout);
  new SnapshotGauge<never>({
    name: 'sluice_engine_failures',
    help: 'Engine failures the service reports (GET /v1/health failures: a data plane worker, a send engine, a TPO gateway); 0 when healthy.',
    labelNames: [],
    registry,
    read: () => [{ labels: {}, value: reading.get().failures.length }],
  });
  new SnapshotGauge<'engine'>({
    name: 'sluice_engine_failed',
    help: 'Failures reported per engine, named as in GET /v1/health.',
    labelNames: ['engine'],
    registry,
    read: () => {
      const byEngine = new Map<string, number>();
      for (const f of reading.get().failures) byEngine.set(f.engine, (byEngine.get(f.engine) ?? 0) + 1);
      return [...byEngine].map(([engine, value]) => ({ labels: { engine }, value }));
    },
  });
  if (source.hostDrops) {
    const read = source.hostDrops;
    new SnapshotCounter<never>({
      name: 'sluice_host_backlog_drops_total',
      help: 'Kernel tier: packets the host dropped in its CPU backlog queue (net.core.netdev_max_backlog, /proc/net/softnet_stat) while kernel-tier flows ran; host-wide, not per flow.',
      labelNames: [],
      registry,
      read: () => {
        const d = read();
        return d ? [{ labels: {}, value: d.hostBacklog }] : [];
      },
    });
  }
  if (opts.version !== undefined) {
    const version = opts.version;
    new SnapshotGauge<'version'>({
      name: 'sluice_build_info',
      help: 'The running Sluice version (value 1).',
      labelNames: ['version'],
      registry,
      read: () => [{ labels: { version }, value: 1 }],
    });
  }
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'sluice_' });

  return {
    contentType: registry.contentType,
    render: async () => {
      await source.refreshFanout?.();
      return registry.metrics();
    },
    registry,
  };
}
