/**
 * The relay flows' metrics: per flow (packets and bytes in and out, drops
 * by reason, subscribers) and per subscriber (copies, bytes, drops by
 * reason), from one reading of `FlowStats` per scrape. docs/METRICS.md
 * says what each one means.
 */
import type { Registry } from 'prom-client';
import { DESTINATION_DROP_REASONS, FLOW_DROP_REASONS } from '../index.js';
import { SnapshotCounter, SnapshotGauge, type Sample, type ScrapeCache } from './metrics-snapshot.js';
import type { CapResult, CappedFlow, SubscriberTotals } from './metrics-subscriber-cap.js';

/** The subscriber label of the per-flow sum of subscribers past the cap. */
export const OTHER_SUBSCRIBER = '_other';

type FlowLabel = 'flow';
type Rows<L extends string> = Sample<L>[];

/** Every flow's subscriber series: its own, then `_other`. */
function subscriberRows<L extends string>(
  flows: readonly CappedFlow[],
  pick: (t: SubscriberTotals, flow: string, subscriber: string) => readonly Sample<L>[],
): Rows<L> {
  const rows: Rows<L> = [];
  for (const f of flows) {
    for (const d of f.kept) rows.push(...pick(d, f.stats.name, d.to));
    if (f.other) rows.push(...pick(f.other, f.stats.name, OTHER_SUBSCRIBER));
  }
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
  new SnapshotCounter<FlowLabel | 'subscriber'>({
    name: 'sluice_subscriber_packets_total',
    help: `Copies handed to the OS for this subscriber; subscriber="${OTHER_SUBSCRIBER}" sums the subscribers past the series cap.`,
    labelNames: ['flow', 'subscriber'],
    registry,
    read: () => subscriberRows(flows(), (t, flow, subscriber) => [{ labels: { flow, subscriber }, value: t.packetsOut }]),
  });
  new SnapshotCounter<FlowLabel | 'subscriber'>({
    name: 'sluice_subscriber_bytes_total',
    help: `UDP payload bytes sent to this subscriber; subscriber="${OTHER_SUBSCRIBER}" sums the subscribers past the series cap.`,
    labelNames: ['flow', 'subscriber'],
    registry,
    read: () => subscriberRows(flows(), (t, flow, subscriber) => [{ labels: { flow, subscriber }, value: t.bytesOut }]),
  });
  new SnapshotCounter<FlowLabel | 'subscriber' | 'reason'>({
    name: 'sluice_subscriber_drops_total',
    help: 'Copies for this subscriber not delivered, by reason (sendError, queueFull, suspended; unreachable: ICMP errors about copies that left); a reason appears at its first drop.',
    labelNames: ['flow', 'subscriber', 'reason'],
    registry,
    read: () =>
      // Only reasons that counted something: four always-zero series per subscriber would be two thirds of a large scrape.
      subscriberRows(flows(), (t, flow, subscriber) =>
        DESTINATION_DROP_REASONS.filter((reason) => t.drops[reason] > 0).map((reason) => ({ labels: { flow, subscriber, reason }, value: t.drops[reason] })),
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
