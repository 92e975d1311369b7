/**
 * The daemon's live fan-out series (the serve config's `fanout:`), read
 * from the counters its thread gave just before the scrape (the metrics
 * ask it once per scrape). No series without a fan-out.
 */
import type { FanoutStats } from '../index.js';
import { SnapshotCounter, SnapshotGauge, type SnapshotRegistry } from './metrics-snapshot.js';

export function registerFanoutMetrics(registry: SnapshotRegistry, read: () => FanoutStats | undefined): void {
  const one = (name: string, help: string, kind: 'gauge' | 'counter', value: (s: FanoutStats) => number): void => {
    const config = {
      name,
      help,
      labelNames: [] as never[],
      registry,
      read: () => {
        const s = read();
        return s ? [{ labels: {}, value: value(s) }] : [];
      },
    };
    if (kind === 'gauge') new SnapshotGauge<never>(config);
    else new SnapshotCounter<never>(config);
  };
  one('sluice_fanout_clients', 'Clients (HTTP and TCP) the fan-out streams to now.', 'gauge', (s) => s.totals.clients);
  one('sluice_fanout_inputs', 'Inputs the fan-out receives now (an input opens with its first client).', 'gauge', (s) => s.totals.inputs);
  one('sluice_fanout_bytes_total', 'Bytes the fan-out wrote to its clients, all clients together.', 'counter', (s) => s.totals.bytesSent);
  one(
    'sluice_fanout_skipped_chunks_total',
    'Chunks a client could not take (its pipe full) and was skipped, all clients together: slow readers.',
    'counter',
    (s) => s.totals.skippedChunks,
  );
  one('sluice_fanout_datagrams_total', 'Datagrams the fan-out received on its inputs.', 'counter', (s) => s.totals.datagrams);
  const byReason = (name: string, help: string, counts: (s: FanoutStats) => Readonly<Record<string, number>>): void => {
    new SnapshotCounter<'reason'>({
      name,
      help,
      labelNames: ['reason'],
      registry,
      read: () => {
        const s = read();
        return s ? Object.entries(counts(s)).map(([reason, value]) => ({ labels: { reason }, value })) : [];
      },
    });
  };
  byReason(
    'sluice_fanout_clients_ended_total',
    'Client streams that ended, by reason: closed (the client went), dropped (took nothing for dropAfterMs), error, input-failed, removed (its input was taken out), stopped (the fan-out stopped).',
    (s) => s.totals.ended,
  );
  byReason(
    'sluice_fanout_refused_total',
    'Requests and connections the fan-out front refused, by reason (badRequest, notFound, notAllowed, method, tooLarge, timeout, overLimit, pendingLimit).',
    (s) => s.front.refused,
  );
}
