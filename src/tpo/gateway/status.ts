/**
 * A TPO gateway's status (issue #7: what `sluice status` shows and its
 * control socket answers as JSON): the types, the counters, and the
 * snapshot built from the gateway's parts. The JSON is the contract of
 * `sluice status --json`, the soak and the fuzz tests: fields are added,
 * never renamed.
 */
import type { DatagramPort } from '../io/datagram-port.js';
import type { PeerConfig, TpoConfig } from '../config/config.js';
import type { PeerLink } from '../link/peer-link.js';
import type { PortDemux } from '../link/port-demux.js';
import type { Interception } from '../intercept/interception.js';
import type { CarriedFlow, FlowStatus } from './flow.js';
import type { FlowSequencerStats } from './flow-sequencer.js';
import type { RatePhase } from '../protocol/rate-control.js';

export interface GatewayCounters {
  flowsOpened: number;
  flowsDelivered: number;
  /** Intercepted flows not carried: no route, peer unknown. */
  refusedNoRoute: number;
  /** New flows (either side) refused: the table was full (limits.maxFlows) and no quiet UDP flow could make room. */
  refusedLimit: number;
  /** New flows (either side) refused: their source already held limits.maxFlowsPerSource flows, none of them a quiet UDP flow. */
  refusedSourceQuota: number;
  /** Quiet UDP flows ended to make room for a new flow (the least recently used first). */
  evictedUdp: number;
  /** TCP flows reset after carrying nothing for limits.tcpIdleMs. */
  idleTcpClosed: number;
  /** Peers' opens refused: destination not in deliver.allow. */
  refusedNotAllowed: number;
  /** Flows refused on either side because an endpoint is no endpoint: port 0, broadcast, multicast, unspecified (destination.ts). */
  refusedUndeliverable: number;
  /** Messages for no known flow (answered with a reset where one is due). */
  unknownFlow: number;
  udpDropped: number;
  /** UDP datagrams larger than one message carries (MAX_CARRIED_DATAGRAM, about 32 KiB): dropped. */
  udpTooLarge: number;
  droppedReplies: number;
  sequenceErrors: number;
  /** Intercepted TCP connections reset because their open was not answered within limits.openTimeoutMs. */
  openTimedOut: number;
  /** Messages the peer link refused to queue (a UDP datagram larger than a driver buffer): dropped. */
  unsendable: number;
  /** Flows ended because handling a message threw (a bug or a refused socket call): counted, never fatal. */
  flowErrors: number;
  /**
   * Flows reset (status 6, limit) because the flow sequencer held too much
   * of theirs waiting for a gap: more than its per-flow count or bytes, or
   * the largest holder when its peer's flows together held too much.
   */
  heldOverflow: number;
  /** Messages dropped with those flows. */
  heldDropped: number;
  /** TCP flows reset (status 6) because the peer sent more than the 4 MiB window it was given (docs/WIRE.md §1). */
  windowExceeded: number;
  /** TCP flows whose connection to the destination failed: here (destination side), or at the far gateway (source side, told by its open-ok). */
  connectFailed: number;
  /** Source side: TCP flows whose open the far gateway refused for its own reasons (not allowed, limits, undeliverable). */
  openRefused: number;
  /** Source side: TCP clients reset because no session with their peer came up within limits.sessionWaitMs. */
  noSession: number;
}

export interface PeerStatus {
  readonly name: string;
  readonly role: 'initiator' | 'responder';
  readonly address?: string;
  readonly up: boolean;
  readonly sessions: number;
  readonly flows: number;
  readonly srttMs?: number;
  readonly bandwidthMbit?: number;
  readonly pacingMbit?: number;
  /** The rate control's state (protocol/rate-control.ts): its phase, the path's minimum RTT, the window of bytes it lets be in flight, and the host delay it allows for. */
  readonly rate?: { readonly phase: RatePhase; readonly minRttMs: number | null; readonly windowBytes: number; readonly hostDelayMs: number };
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly retransmissions: number;
  /**
   * Datagrams sent to this peer (first sends, retransmissions and redundant
   * copies) and those its loss detector declared lost: Δlost / ΔdatagramsSent
   * over an interval is the path's loss ratio as this side sees it.
   */
  readonly datagramsSent: number;
  readonly lost: number;
  /** Parity datagrams and second copies sent for latency-sensitive flows (their redundancy), and their bytes. */
  readonly redundantDatagrams: number;
  readonly redundantBytes: number;
  /** Segments from this peer rebuilt from its parity datagrams (a loss that cost no round trip). */
  readonly parityRecovered: number;
  /** All datagrams from this peer's direction dropped: the sum of `drops` and the link's handshake and no-session drops. */
  readonly dropped: number;
  /** The session's receive drops by reason: undecodable, another connection id, failed authentication, replayed. */
  readonly drops: { readonly malformed: number; readonly otherConnection: number; readonly unauthenticated: number; readonly replayed: number };
  /**
   * The link's handshake and message counters: initiations sent and
   * responses answered, the unconfirmed session offer (0 or 1), goodbyes
   * heard, datagrams dropped before a session or as a bad handshake,
   * driver buffers that did not decode, messages whose handler failed,
   * sealed buffers lost.
   */
  readonly link: {
    readonly initiationsSent: number;
    readonly responsesSent: number;
    readonly unconfirmed: number;
    readonly goodbyes: number;
    readonly droppedHandshake: number;
    readonly droppedNoSession: number;
    readonly badBuffers: number;
    readonly handlerErrors: number;
    readonly sealFailures: number;
    /** Initiations sent since the peer last answered (initiator; 0 while a session is up): a growing number is an unreachable peer. */
    readonly unanswered: number;
  };
  /** Bytes waiting to be sent, and sent but not yet acknowledged. */
  readonly queuedBytes: number;
  readonly inFlightBytes: number;
}

export interface GatewayStatus {
  readonly name: string;
  readonly listen: string;
  readonly io: string;
  readonly interception: string;
  readonly listeners: ReturnType<Interception['listenAddresses']>;
  readonly peers: readonly PeerStatus[];
  readonly flows: readonly FlowStatus[];
  /** The flow table against its limits, and the source holding the most flows. */
  readonly table: {
    readonly flows: number;
    readonly maxFlows: number;
    readonly maxFlowsPerSource: number;
    readonly busiestSource?: { readonly source: string; readonly flows: number };
  };
  /**
   * The peer port (every peer's datagrams): what it received and sent, and
   * what it dropped — received but not handed over (no readable source,
   * longer than a receive slot, a handler that threw) or not sent (socket
   * buffer full, a send error, after close).
   */
  readonly port: {
    readonly datagramsReceived: number;
    readonly datagramsSent: number;
    /**
     * How the I/O was batched: send system calls, GSO messages and the
     * datagrams they carried, batches the receive thread handed over and
     * GRO buffers among what it read (batched port; the portable port makes
     * one call and one batch per datagram). Datagrams per call is what
     * the per-datagram CPU cost follows.
     */
    readonly batching: {
      readonly sendCalls: number;
      readonly gsoMessages: number;
      readonly gsoSegments: number;
      readonly receiveBatches: number;
      readonly groBuffers: number;
    };
    readonly receiveDropped: { readonly unknownSource: number; readonly truncated: number; readonly listenerError: number };
    readonly sendDropped: { readonly queueFull: number; readonly sendError: number; readonly closed: number };
    readonly lastSendError?: string;
    readonly lastListenerError?: string;
  };
  /** Datagrams the port demux could give to no link: malformed (no known version/kind), no link (no session, key id or initiation of ours), no source. */
  readonly demux: { readonly malformed: number; readonly noLink: number; readonly noSource: number };
  /** Messages the flow sequencer holds for gaps now (bytes), and what its bounds cost (flow-sequencer.ts). */
  readonly sequencer: {
    readonly heldBytes: number;
    readonly overflows: number;
    readonly groupOverflows: number;
    readonly orphaned: number;
    readonly late: number;
  };
  readonly counters: GatewayCounters;
  /**
   * Drops no peer accounts for: peer-port datagrams dropped before a link
   * saw them (the port's: truncated, unknown source, a failed handler; the
   * demux's: malformed, no link for the connection or key id, no source)
   * and clients the interception refused. With the peers' `dropped`,
   * every datagram a stranger sends shows somewhere (issue 16).
   */
  readonly dropped: { readonly peerPort: Readonly<Record<string, number>>; readonly refusedClients: number };
}

/** Every counter at zero (the gateway counts from its start). */
export function newCounters(): GatewayCounters {
  return {
    flowsOpened: 0,
    flowsDelivered: 0,
    refusedNoRoute: 0,
    refusedLimit: 0,
    refusedSourceQuota: 0,
    evictedUdp: 0,
    idleTcpClosed: 0,
    refusedNotAllowed: 0,
    refusedUndeliverable: 0,
    unknownFlow: 0,
    udpDropped: 0,
    udpTooLarge: 0,
    droppedReplies: 0,
    sequenceErrors: 0,
    openTimedOut: 0,
    unsendable: 0,
    flowErrors: 0,
    heldOverflow: 0,
    heldDropped: 0,
    windowExceeded: 0,
    connectFailed: 0,
    openRefused: 0,
    noSession: 0,
  };
}

/** What a status is made of: the gateway's parts, read, never changed. */
export interface StatusSources {
  readonly name: string;
  readonly port: DatagramPort;
  readonly interceptionName: string;
  readonly interception: Interception | undefined;
  readonly peers: Iterable<{ readonly config: PeerConfig; readonly link: PeerLink; readonly flows: ReadonlySet<CarriedFlow> }>;
  readonly flows: Iterable<CarriedFlow>;
  /** The flow table (FlowAdmission): its size and busiest source. */
  readonly table: { readonly size: number; busiest(): { source: string; flows: number } | undefined };
  readonly limits: TpoConfig['limits'];
  readonly demuxDropped: PortDemux['dropped'];
  readonly sequencer: Readonly<FlowSequencerStats>;
  readonly counters: GatewayCounters;
}

/** The gateway's status now (a copy: later changes do not show in it). */
export function buildStatus(s: StatusSources): GatewayStatus {
  const a = s.port.address();
  return {
    name: s.name,
    listen: `${a.address}:${a.port}`,
    io: s.port.kind,
    interception: s.interceptionName,
    listeners: s.interception?.listenAddresses() ?? [],
    peers: [...s.peers].map((p): PeerStatus => {
      const m = p.link.mover;
      const d = m?.stats.dropped;
      const ls = p.link.stats;
      return {
        name: p.config.name,
        role: p.config.address ? 'initiator' : 'responder',
        ...(p.config.address ? { address: `${p.config.address.address}:${p.config.address.port}` } : {}),
        up: p.link.up,
        sessions: p.link.stats.sessions,
        flows: p.flows.size,
        ...(m
          ? {
              srttMs: Math.round(m.rtt.srttMs * 10) / 10,
              bandwidthMbit: Math.round((m.rate.bandwidthBps * 8) / 1e4) / 100,
              pacingMbit: Math.round((m.rate.pacingRateBps * 8) / 1e4) / 100,
              rate: {
                phase: m.rate.phase,
                minRttMs: Number.isFinite(m.rtt.minRttMs) ? Math.round(m.rtt.minRttMs * 100) / 100 : null,
                windowBytes: Math.round(m.rate.windowBytes),
                hostDelayMs: Math.round(m.rate.hostDelayMs * 100) / 100,
              },
            }
          : {}),
        bytesSent: m?.stats.bytesSent ?? 0,
        bytesReceived: m?.stats.bytesReceived ?? 0,
        retransmissions: m?.stats.retransmissions ?? 0,
        datagramsSent: m?.stats.datagramsSent ?? 0,
        lost: m?.stats.lost ?? 0,
        redundantDatagrams: m?.stats.redundantDatagrams ?? 0,
        redundantBytes: m?.stats.redundantBytes ?? 0,
        parityRecovered: m?.stats.parityRecovered ?? 0,
        queuedBytes: m?.queuedBytes ?? 0,
        inFlightBytes: m ? m.backlogBytes - m.queuedBytes : 0,
        dropped: (d ? d.malformed + d.otherConnection + d.unauthenticated + d.replayed : 0) + ls.droppedHandshake + ls.droppedNoSession,
        drops: {
          malformed: d?.malformed ?? 0,
          otherConnection: d?.otherConnection ?? 0,
          unauthenticated: d?.unauthenticated ?? 0,
          replayed: d?.replayed ?? 0,
        },
        link: {
          initiationsSent: ls.initiationsSent,
          responsesSent: ls.responsesSent,
          unconfirmed: p.link.unconfirmed,
          goodbyes: ls.goodbyes,
          droppedHandshake: ls.droppedHandshake,
          droppedNoSession: ls.droppedNoSession,
          badBuffers: ls.badBuffers,
          handlerErrors: ls.handlerErrors,
          sealFailures: p.link.driverStats.sealFailures,
          unanswered: p.link.unanswered,
        },
      };
    }),
    flows: [...s.flows].map((f) => f.status()),
    table: (() => {
      const busiest = s.table.busiest();
      return {
        flows: s.table.size,
        maxFlows: s.limits.maxFlows,
        maxFlowsPerSource: s.limits.maxFlowsPerSource,
        ...(busiest ? { busiestSource: busiest } : {}),
      };
    })(),
    port: (() => {
      const ps = s.port.stats;
      return {
        datagramsReceived: ps.datagramsReceived,
        datagramsSent: ps.datagramsSent,
        batching: {
          sendCalls: ps.sendCalls,
          gsoMessages: ps.gsoMessages,
          gsoSegments: ps.gsoSegments,
          receiveBatches: ps.receiveBatches,
          groBuffers: ps.groBuffers,
        },
        receiveDropped: { ...ps.receiveDropped },
        sendDropped: { ...ps.dropped },
        ...(ps.lastSendError ? { lastSendError: ps.lastSendError } : {}),
        ...(ps.lastListenerError ? { lastListenerError: ps.lastListenerError } : {}),
      };
    })(),
    demux: { ...s.demuxDropped },
    sequencer: (() => {
      const q = s.sequencer;
      return { heldBytes: q.heldBytes, overflows: q.overflows, groupOverflows: q.groupOverflows, orphaned: q.orphaned, late: q.late };
    })(),
    counters: { ...s.counters },
    dropped: { peerPort: { ...s.port.stats.receiveDropped, ...s.demuxDropped }, refusedClients: s.interception?.stats.refused ?? 0 },
  };
}
