/**
 * The relay flows' metrics: per flow (packets and bytes in and out, drops
 * by reason, subscribers) and per subscriber (copies, bytes, drops by
 * reason), from one reading of `FlowStats` per scrape. docs/METRICS.md
 * says what each one means.
 */
import type { Registry } from 'prom-client';
import { DESTINATION_DROP_REASONS, FLOW_DROP_REASONS } from '../index.js';
import { SnapshotCounter, SnapshotGauge, escapeLabelValue, valueText, type Sample, type ScrapeCache } from './metrics-snapshot.js';
import type { DestinationStats } from '../index.js';
import type { CapResult, CappedFlow } from './metrics-subscriber-cap.js';

/** The subscriber label of the per-flow sum of subscribers past the cap. */
export const OTHER_SUBSCRIBER = '_other';

type FlowLabel = 'flow';
type Rows<L extends string> = Sample<L>[];
type Counts = Pick<DestinationStats, 'packetsOut' | 'bytesOut' | 'drops'>;

/** One subscriber series set of a scrape: its labels, escaped once for the three families that use them. */
interface SubscriberRow {
  readonly flow: string;
  readonly subscriber: string;
  /** `flow="…",subscriber="…"`, escaped. */
  readonly labels: string;
  readonly counts: Counts;
}

/** Every flow's subscriber series of one reading: its own, then `_other` (memoized per reading). */
const tables = new WeakMap<CapResult, SubscriberRow[]>();
function subscriberTable(reading: CapResult): SubscriberRow[] {
  let rows = tables.get(reading);
  if (rows) return rows;
  rows = [];
  for (const f of reading.flows) {
    const flow = f.stats.name;
    const fl = `flow="${escapeLabelValue(flow)}"`;
    for (const d of f.kept) rows.push({ flow, subscriber: d.to, labels: `${fl},subscriber="${escapeLabelValue(d.to)}"`, counts: d });
    if (f.other) rows.push({ flow, subscriber: OTHER_SUBSCRIBER, labels: `${fl},subscriber="${OTHER_SUBSCRIBER}"`, counts: f.other });
  }
  tables.set(reading, rows);
  return rows;
}

export function registerFlowMetrics(registry: Registry, reading: ScrapeCache<{ readonly flows: CapResult }>, maxSubscribers: number): void {
  const flows = (): readonly CappedFlow[] => reading.get().flows.flows;

  new SnapshotGauge<'tier'>({
    name: 'sluice_flows',
    help: 'Relay flows running, by data-plane tier.',
    labelNames: ['tier'],
    registry,
    read: () => {
      const byTier = new Map<string, number>();
      for (const f of flows()) byTier.set(f.stats.tier, (byTier.get(f.stats.tier) ?? 0) + 1);
      return [...byTier].map(([tier, value]) => ({ labels: { tier }, value }));
    },
  });
  new SnapshotGauge<'flow' | 'type' | 'tier' | 'listen'>({
    name: 'sluice_flow_info',
    help: 'One series per running flow (value 1): its type, tier and listen address, to join on flow.',
    labelNames: ['flow', 'type', 'tier', 'listen'],
    registry,
    read: () => flows().map((f) => ({ labels: { flow: f.stats.name, type: f.stats.type, tier: f.stats.tier, listen: f.stats.listen }, value: 1 })),
  });
  const inOut = (pick: 'packets' | 'bytes') => (): Rows<'flow' | 'direction' | 'tier'> =>
    flows().flatMap(({ stats: s }) => [
      { labels: { flow: s.name, direction: 'in', tier: s.tier }, value: pick === 'packets' ? s.packetsIn : s.bytesIn },
      { labels: { flow: s.name, direction: 'out', tier: s.tier }, value: pick === 'packets' ? s.packetsOut : s.bytesOut },
    ]);
  new SnapshotCounter({
    name: 'sluice_flow_packets_total',
    help: 'Datagrams received on the flow listen address (direction="in", dropped ones included) and copies handed to the OS for sending (direction="out").',
    labelNames: ['flow', 'direction', 'tier'],
    registry,
    read: inOut('packets'),
  });
  new SnapshotCounter({
    name: 'sluice_flow_bytes_total',
    help: 'UDP payload bytes received (direction="in") and sent (direction="out") by the flow.',
    labelNames: ['flow', 'direction', 'tier'],
    registry,
    read: inOut('bytes'),
  });
  new SnapshotCounter<FlowLabel | 'reason'>({
    name: 'sluice_flow_drops_total',
    help: 'Datagrams (or copies of one) the flow did not deliver, by reason (docs/METRICS.md); reason="unreachable" counts ICMP errors about copies that did leave.',
    labelNames: ['flow', 'reason'],
    registry,
    read: () => flows().flatMap(({ stats: s }) => FLOW_DROP_REASONS.map((reason) => ({ labels: { flow: s.name, reason }, value: s.drops[reason] }))),
  });
  new SnapshotGauge<FlowLabel>({
    name: 'sluice_flow_workers',
    help: 'Worker threads the flow runs on (batched tier with --workers; 1 otherwise).',
    labelNames: ['flow'],
    registry,
    read: () => flows().map(({ stats: s }) => ({ labels: { flow: s.name }, value: s.workers?.length ?? 1 })),
  });
  new SnapshotCounter<FlowLabel | 'worker' | 'direction'>({
    name: 'sluice_flow_worker_packets_total',
    help: "One worker's share of sluice_flow_packets_total (flows on more than one worker only); worker is 1-based.",
    labelNames: ['flow', 'worker', 'direction'],
    registry,
    read: () =>
      flows().flatMap(({ stats: s }) =>
        (s.workers ?? []).flatMap((w, i) => [
          { labels: { flow: s.name, worker: String(i + 1), direction: 'in' }, value: w.packetsIn },
          { labels: { flow: s.name, worker: String(i + 1), direction: 'out' }, value: w.packetsOut },
        ]),
      ),
  });
  new SnapshotGauge<FlowLabel>({
    name: 'sluice_subscribers',
    help: 'Subscribers (destinations) of the flow now, suspended ones included.',
    labelNames: ['flow'],
    registry,
    read: () => flows().map(({ stats: s }) => ({ labels: { flow: s.name }, value: s.destinations.length })),
  });
  new SnapshotGauge<FlowLabel>({
    name: 'sluice_subscribers_suspended',
    help: 'Subscribers of the flow suspended now after repeated send errors (policy suspendAfterErrors).',
    labelNames: ['flow'],
    registry,
    read: () =>
      flows().map(({ stats: s }) => ({ labels: { flow: s.name }, value: s.destinations.reduce((n, d) => n + (d.suspendedUntil === undefined ? 0 : 1), 0) })),
  });
  const table = (): SubscriberRow[] => subscriberTable(reading.get().flows);
  const perSubscriber = (name: string, value: (c: Counts) => number) => ({
    read: (): Rows<FlowLabel | 'subscriber'> => table().map((r) => ({ labels: { flow: r.flow, subscriber: r.subscriber }, value: value(r.counts) })),
    lines: (extra: string): string[] => table().map((r) => `${name}{${r.labels}${extra}} ${valueText(value(r.counts))}`),
  });
  new SnapshotCounter<FlowLabel | 'subscriber'>({
    name: 'sluice_subscriber_packets_total',
    help: `Copies handed to the OS for this subscriber; subscriber="${OTHER_SUBSCRIBER}" sums the subscribers past the series cap.`,
    labelNames: ['flow', 'subscriber'],
    registry,
    ...perSubscriber('sluice_subscriber_packets_total', (c) => c.packetsOut),
  });
  new SnapshotCounter<FlowLabel | 'subscriber'>({
    name: 'sluice_subscriber_bytes_total',
    help: `UDP payload bytes sent to this subscriber; subscriber="${OTHER_SUBSCRIBER}" sums the subscribers past the series cap.`,
    labelNames: ['flow', 'subscriber'],
    registry,
    ...perSubscriber('sluice_subscriber_bytes_total', (c) => c.bytesOut),
  });
  // Only reasons that counted something: four always-zero series per subscriber would be two thirds of a large scrape.
  const drops = (r: SubscriberRow) => DESTINATION_DROP_REASONS.filter((reason) => r.counts.drops[reason] > 0);
  new SnapshotCounter<FlowLabel | 'subscriber' | 'reason'>({
    name: 'sluice_subscriber_drops_total',
    help: 'Copies for this subscriber not delivered, by reason (sendError, queueFull, suspended; unreachable: ICMP errors about copies that left); a reason appears at its first drop.',
    labelNames: ['flow', 'subscriber', 'reason'],
    registry,
    read: () =>
      table().flatMap((r) => drops(r).map((reason) => ({ labels: { flow: r.flow, subscriber: r.subscriber, reason }, value: r.counts.drops[reason] }))),
    lines: (extra) =>
      table().flatMap((r) =>
        drops(r).map((reason) => `sluice_subscriber_drops_total{${r.labels},reason="${reason}"${extra}} ${valueText(r.counts.drops[reason])}`),
      ),
  });
  new SnapshotGauge<never>({
    name: 'sluice_metrics_series_dropped',
    help: `Subscribers without series of their own in this scrape: past the cap of ${maxSubscribers}, summed per flow into subscriber="${OTHER_SUBSCRIBER}".`,
    labelNames: [],
    registry,
    read: () => [{ labels: {}, value: reading.get().flows.folded }],
  });
}
