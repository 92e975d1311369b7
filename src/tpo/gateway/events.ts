/**
 * What a Gateway reports as events (its owner, the TpoGateway facade,
 * turns them into its public ones). Each is emitted where the gateway
 * already counts the thing in its status, with the objects it has at hand:
 * nothing is built for an event nobody listens to.
 */
import type { DatagramSource } from '../io/datagram-port.js';
import type { HandshakeFailureReason } from '../link/peer-link.js';
import type { PeerUnreachable } from '../link/unanswered.js';
import type { CarriedFlow, FlowTuple } from './flow.js';

/** Why a flow was refused or ended before its applications ended it (each is a counter of the status too). */
export type FlowFailReason =
  /** Source side: no route or peer for the destination (refusedNoRoute). */
  | 'noRoute'
  /** The flow table is full (refusedLimit). */
  | 'limit'
  /** The flow's source holds limits.maxFlowsPerSource flows already (refusedSourceQuota). */
  | 'sourceQuota'
  /** Destination side: the destination is not in deliver.allow (refusedNotAllowed). */
  | 'notAllowed'
  /** An endpoint is no endpoint: port 0, broadcast, multicast, unspecified (refusedUndeliverable). */
  | 'undeliverable'
  /** A TCP open the far side did not answer within limits.openTimeoutMs (openTimedOut). */
  | 'openTimeout'
  /** The flow sequencer held too much of the flow waiting for a gap (heldOverflow). */
  | 'heldOverflow'
  /** The peer sent beyond the flow's window (windowExceeded). */
  | 'windowExceeded'
  /** A TCP flow carried nothing for limits.tcpIdleMs (idleTcpClosed). */
  | 'idle'
  /**
   * Destination side: the connection to the destination failed (refused,
   * unreachable, timed out: the detail says); source side: the far gateway
   * said so in its open-ok (connectFailed).
   */
  | 'connectFailed'
  /** Source side: the far gateway refused the open for its own reasons: not allowed, its limits, undeliverable (openRefused). */
  | 'openRefused'
  /** Source side: no session with the peer came up within limits.sessionWaitMs of the client's arrival (noSession). */
  | 'noSession';

/** What more a flow failure says: the wire status (flow.ts STATUS) and, where a socket failed here, its error code. */
export interface FlowFailDetail {
  readonly status?: number;
  readonly error?: string;
}

/** Why a peer's flows were all reset at once: it stayed down limits.peerDeadMs, it restarted (a new session), or it was removed. */
export type PeerFlowsResetCause = 'dead' | 'restarted' | 'removed';

export interface GatewayEvents {
  /** A session with the peer is up: the first, a new one after a restart, or the old one back after 'peer-down'. */
  'peer-up': [peer: string];
  /** The peer's session went quiet or said goodbye; its flows are reset after limits.peerDeadMs unless it comes back. */
  'peer-down': [peer: string];
  /** The peer port failed (its receive thread died): the gateway can no longer hear its peers. */
  fault: [error: Error];
  /** Handling one flow's socket or message threw; that flow ended (flowErrors), the gateway goes on. */
  'flow-error': [error: unknown];
  /** A flow was made: intercepted here (source) or opened for a peer (destination). */
  'flow-open': [flow: CarriedFlow];
  /** A flow was refused, or ended by the gateway; `peer` when one peer is concerned. */
  'flow-fail': [reason: FlowFailReason, role: 'source' | 'destination', tuple: FlowTuple, peer: string | undefined, detail?: FlowFailDetail];
  /** An initiator's handshakes to the peer go unanswered (link/unanswered.ts: after a few, then with backoff). */
  'peer-unreachable': [peer: string, report: PeerUnreachable];
  /** Every flow with the peer was reset at once (`flows` of them; only emitted when there were some). */
  'peer-flows-reset': [peer: string, flows: number, cause: PeerFlowsResetCause];
  /** A handshake datagram was dropped (droppedHandshake, or the demux's noLink for an initiation: no peer has its key id). */
  'handshake-failure': [peer: string | undefined, reason: HandshakeFailureReason, from: DatagramSource];
}
