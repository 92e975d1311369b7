/**
 * The TPO gateways' metrics, from their status objects (the JSON of
 * `sluice status --json`): per peer (up, RTT, rate, loss, retransmissions,
 * bytes, flows carried, drops) and per gateway (flow table, flows opened,
 * refused and ended by reason, drops). Label values of reasons are the
 * status fields' own names, so a metric leads to its field in the status.
 */
import type { Registry } from 'prom-client';
import type { GatewayCounters, PeerStatus, TpoGatewayStatus } from '../tpo/index.js';
import { SnapshotCounter, SnapshotGauge, type Sample, type ScrapeCache } from './metrics-snapshot.js';
import { PeerLoss, numberField } from './metrics-tpo-loss.js';

type PeerLabels = 'gateway' | 'peer';

type CounterPlace = readonly [metric: 'opened' | 'delivered' | 'refused' | 'ended' | 'dropped' | 'sequence', reason: string];

/**
 * Where each gateway counter goes: a metric and its reason label (the
 * flowfail event's reason names for flows). Every counter the status type
 * has must be placed (the type checks it); counters of newer gateways
 * (connectFailed, openRefused, noSession) are placed ahead and show when
 * the status has them.
 */
const GATEWAY_COUNTERS: Readonly<Record<keyof GatewayCounters, CounterPlace> & Record<string, CounterPlace>> = {
  flowsOpened: ['opened', ''],
  flowsDelivered: ['delivered', ''],
  refusedNoRoute: ['refused', 'noRoute'],
  refusedLimit: ['refused', 'limit'],
  refusedSourceQuota: ['refused', 'sourceQuota'],
  refusedNotAllowed: ['refused', 'notAllowed'],
  refusedUndeliverable: ['refused', 'undeliverable'],
  openTimedOut: ['refused', 'openTimeout'],
  connectFailed: ['refused', 'connectFailed'],
  openRefused: ['refused', 'openRefused'],
  noSession: ['refused', 'noSession'],
  evictedUdp: ['ended', 'evicted'],
  idleTcpClosed: ['ended', 'idle'],
  heldOverflow: ['ended', 'heldOverflow'],
  windowExceeded: ['ended', 'windowExceeded'],
  flowErrors: ['ended', 'error'],
  unknownFlow: ['dropped', 'unknownFlow'],
  udpDropped: ['dropped', 'udpDropped'],
  udpTooLarge: ['dropped', 'udpTooLarge'],
  droppedReplies: ['dropped', 'droppedReplies'],
  unsendable: ['dropped', 'unsendable'],
  heldDropped: ['dropped', 'heldDropped'],
  sequenceErrors: ['sequence', ''],
};

export interface TpoReading {
  readonly gateways: readonly TpoGatewayStatus[];
}

export function registerTpoMetrics(registry: Registry, reading: ScrapeCache<TpoReading>): void {
  const gateways = (): readonly TpoGatewayStatus[] => reading.get().gateways;
  const loss = new PeerLoss();
  const perPeer = (value: (p: PeerStatus, gateway: string) => number | undefined) => (): Sample<PeerLabels>[] => {
    const rows: Sample<PeerLabels>[] = [];
    for (const g of gateways()) {
      for (const p of g.peers) {
        const v = value(p, g.name);
        if (v !== undefined && Number.isFinite(v)) rows.push({ labels: { gateway: g.name, peer: p.name }, value: v });
      }
    }
    return rows;
  };
  const peerGauge = (name: string, help: string, value: (p: PeerStatus, gateway: string) => number | undefined): void => {
    new SnapshotGauge({ name, help, labelNames: ['gateway', 'peer'], registry, read: perPeer(value) });
  };
  const peerCounter = (name: string, help: string, value: (p: PeerStatus) => number): void => {
    new SnapshotCounter({ name, help, labelNames: ['gateway', 'peer'], registry, read: perPeer(value) });
  };

  peerGauge('sluice_tpo_peer_up', 'Whether the peer link has a session now (1) or not (0).', (p) => (p.up ? 1 : 0));
  peerGauge('sluice_tpo_peer_flows', 'Flows the gateway carries over this peer now.', (p) => p.flows);
  peerGauge('sluice_tpo_peer_rtt_seconds', 'Smoothed round-trip time to the peer, as the data mover measures it (absent before a session).', (p) =>
    p.srttMs === undefined ? undefined : p.srttMs / 1000,
  );
  peerGauge('sluice_tpo_peer_rate_bits_per_second', "The data mover's estimate of the path's bandwidth to the peer (bits/s; absent before a session).", (p) =>
    p.bandwidthMbit === undefined ? undefined : p.bandwidthMbit * 1e6,
  );
  peerGauge('sluice_tpo_peer_pacing_rate_bits_per_second', 'The rate the data mover paces its datagrams to the peer at now (bits/s).', (p) =>
    p.pacingMbit === undefined ? undefined : p.pacingMbit * 1e6,
  );
  peerGauge(
    'sluice_tpo_peer_loss_ratio',
    'Share of datagrams sent to the peer that were lost (0-1), over the last 10 s or more; absent while the status does not report loss.',
    (p, gateway) => loss.ratio(gateway, p),
  );
  peerCounter(
    'sluice_tpo_peer_retransmissions_total',
    'Segments sent again to the peer because the first copy was lost or not acknowledged in time.',
    (p) => p.retransmissions,
  );
  peerCounter('sluice_tpo_peer_sessions_total', 'Sessions established with the peer (handshakes completed) since the gateway started.', (p) => p.sessions);
  peerCounter(
    'sluice_tpo_peer_redundant_datagrams_total',
    'Parity datagrams and second copies sent for latency-sensitive flows (their redundancy).',
    (p) => p.redundantDatagrams,
  );
  peerCounter('sluice_tpo_peer_redundant_bytes_total', 'Bytes of those parity datagrams and copies.', (p) => p.redundantBytes);
  peerCounter(
    'sluice_tpo_peer_parity_recovered_total',
    'Segments from the peer rebuilt from its parity datagrams instead of waiting for a retransmission.',
    (p) => p.parityRecovered,
  );
  peerGauge(
    'sluice_tpo_peer_unanswered_initiations',
    'Handshake initiations sent since the peer last answered (0 while a session is up): a growing number is an unreachable peer or a key mismatch.',
    (p) => numberField(p.link, 'unanswered'),
  );
  peerGauge('sluice_tpo_peer_queued_bytes', 'Bytes waiting to be sent to the peer.', (p) => p.queuedBytes);
  peerGauge('sluice_tpo_peer_in_flight_bytes', 'Bytes sent to the peer and not yet acknowledged.', (p) => p.inFlightBytes);
  new SnapshotCounter<PeerLabels | 'direction'>({
    name: 'sluice_tpo_peer_bytes_total',
    help: 'Datagram bytes sent to (direction="out") and received from (direction="in") the peer, on the wire (sealed, headers of the TPO transport included).',
    labelNames: ['gateway', 'peer', 'direction'],
    registry,
    read: () =>
      gateways().flatMap((g) =>
        g.peers.flatMap((p) => [
          { labels: { gateway: g.name, peer: p.name, direction: 'out' }, value: p.bytesSent },
          { labels: { gateway: g.name, peer: p.name, direction: 'in' }, value: p.bytesReceived },
        ]),
      ),
  });
  new SnapshotCounter<PeerLabels | 'reason'>({
    name: 'sluice_tpo_peer_dropped_datagrams_total',
    help: "Datagrams from the peer's direction dropped, by reason: malformed, otherConnection, unauthenticated (wrong key or forged), replayed, droppedHandshake, droppedNoSession.",
    labelNames: ['gateway', 'peer', 'reason'],
    registry,
    read: () =>
      gateways().flatMap((g) =>
        g.peers.flatMap((p) =>
          Object.entries({ ...p.drops, droppedHandshake: p.link.droppedHandshake, droppedNoSession: p.link.droppedNoSession }).map(([reason, value]) => ({
            labels: { gateway: g.name, peer: p.name, reason },
            value,
          })),
        ),
      ),
  });
  registerGatewayMetrics(registry, gateways);
}

function registerGatewayMetrics(registry: Registry, gateways: () => readonly TpoGatewayStatus[]): void {
  const perGateway = (value: (g: TpoGatewayStatus) => number) => (): Sample<'gateway'>[] =>
    gateways().map((g) => ({ labels: { gateway: g.name }, value: value(g) }));
  const counters = (metric: CounterPlace[0]) => (): Sample<'gateway' | 'reason'>[] =>
    gateways().flatMap((g) =>
      Object.entries(GATEWAY_COUNTERS).flatMap(([field, [m, reason]]) => {
        const value = numberField(g.counters, field);
        return m !== metric || value === undefined ? [] : [{ labels: reason ? { gateway: g.name, reason } : { gateway: g.name }, value }];
      }),
    );
  new SnapshotGauge({
    name: 'sluice_tpo_flows',
    help: "Flows in the gateway's flow table now.",
    labelNames: ['gateway'],
    registry,
    read: perGateway((g) => g.table.flows),
  });
  new SnapshotGauge({
    name: 'sluice_tpo_flows_limit',
    help: "The flow table's size limit (limits.maxFlows).",
    labelNames: ['gateway'],
    registry,
    read: perGateway((g) => g.table.maxFlows),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_flows_opened_total',
    help: 'Flows this gateway intercepted and opened across a peer.',
    labelNames: ['gateway'],
    registry,
    read: counters('opened'),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_flows_delivered_total',
    help: "Peers' flows this gateway opened towards their destination.",
    labelNames: ['gateway'],
    registry,
    read: counters('delivered'),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_flows_refused_total',
    help: 'Flows refused, by reason: noRoute, limit, sourceQuota, notAllowed, undeliverable, openTimeout (the flowfail event reasons).',
    labelNames: ['gateway', 'reason'],
    registry,
    read: counters('refused'),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_flows_ended_total',
    help: 'Flows ended by the gateway, by reason: evicted (quiet UDP flow, to make room), idle, heldOverflow, windowExceeded, error.',
    labelNames: ['gateway', 'reason'],
    registry,
    read: counters('ended'),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_dropped_total',
    help: "Messages or datagrams of carried flows dropped, by reason (the status counters' names).",
    labelNames: ['gateway', 'reason'],
    registry,
    read: counters('dropped'),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_sequence_errors_total',
    help: 'Messages of a carried flow that arrived out of sequence.',
    labelNames: ['gateway'],
    registry,
    read: counters('sequence'),
  });
  new SnapshotCounter<'gateway' | 'direction'>({
    name: 'sluice_tpo_port_datagrams_total',
    help: 'Datagrams received (direction="in") and sent (direction="out") on the peer port, all peers together.',
    labelNames: ['gateway', 'direction'],
    registry,
    read: () =>
      gateways().flatMap((g) => [
        { labels: { gateway: g.name, direction: 'in' }, value: g.port.datagramsReceived },
        { labels: { gateway: g.name, direction: 'out' }, value: g.port.datagramsSent },
      ]),
  });
  new SnapshotCounter<'gateway' | 'reason'>({
    name: 'sluice_tpo_port_drops_total',
    help: 'Peer-port datagrams dropped before any peer saw them (unknownSource, truncated, listenerError, malformed, noLink, noSource) or not sent (queueFull, sendError, closed).',
    labelNames: ['gateway', 'reason'],
    registry,
    read: () =>
      gateways().flatMap((g) =>
        Object.entries({ ...g.port.receiveDropped, ...g.port.sendDropped, ...g.demux }).map(([reason, value]) => ({
          labels: { gateway: g.name, reason },
          value,
        })),
      ),
  });
  new SnapshotCounter({
    name: 'sluice_tpo_refused_clients_total',
    help: 'Clients the interception refused (not in a table entry, or over its limits).',
    labelNames: ['gateway'],
    registry,
    read: perGateway((g) => g.dropped.refusedClients),
  });
  new SnapshotGauge({
    name: 'sluice_tpo_sequencer_held_bytes',
    help: 'Bytes of messages held waiting for a gap (a lost segment) to be filled.',
    labelNames: ['gateway'],
    registry,
    read: perGateway((g) => g.sequencer.heldBytes),
  });
}
