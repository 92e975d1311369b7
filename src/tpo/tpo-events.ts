/**
 * The TpoGateway's events ('sluice/tpo'): what they carry, and how the
 * internal gateway's events (gateway/events.ts) become them, each with a
 * `message` that says what happened and what to look at
 * (tpo-event-text.ts). Handshake failures are what strangers can cause at
 * will, so they are coalesced: at most one event per (source address,
 * reason) per interval — 1 s, doubling while the failures go on, up to
 * 60 s — and at most HANDSHAKE_EVENTS_PER_SECOND in all; `count` says how
 * many the event stands for. The status counters count every one
 * regardless.
 */
import type { HostPort } from './intercept/interception.js';
import type { DatagramSource } from './io/datagram-port.js';
import type { HandshakeFailureReason } from './link/peer-link.js';
import type { FlowFailDetail, FlowFailReason, PeerFlowsResetCause } from './gateway/events.js';
import { statusText, tupleKey, type CarriedFlow, type FlowTuple } from './gateway/flow.js';
import type { TpoPeerView, TpoTableEntryView } from './config/changes.js';
import { flowFailureText, handshakeFailureText } from './tpo-event-text.js';

export type { FlowFailReason as TpoFlowFailReason, PeerFlowsResetCause as TpoPeerFlowsResetCause } from './gateway/events.js';
export type { HandshakeFailureReason as TpoHandshakeFailureReason } from './link/peer-link.js';

/** A flow the gateway carries. */
export interface TpoFlowInfo {
  /** 'source': intercepted here; 'destination': opened here for a peer. */
  readonly role: 'source' | 'destination';
  readonly protocol: 'tcp' | 'udp';
  /** The client and the destination, as the source gateway intercepted them (both gateways name the flow by them). */
  readonly src: HostPort;
  readonly dst: HostPort;
  /** The same as status() shows it: `tcp 10.0.0.1:40000 > 10.1.0.5:443`. */
  readonly tuple: string;
  /** The peer gateways it goes to (several: fan-out) or came from. */
  readonly peers: readonly string[];
}

/** A flow refused, or ended by the gateway before its applications ended it ('flowfail'). */
export interface TpoFlowFailure {
  /** Why; each reason is also a status counter (gateway/events.ts), 'error' is `flowErrors`. */
  readonly reason: FlowFailReason | 'error';
  /** Which side gave up on it; absent for 'error'. */
  readonly role?: 'source' | 'destination';
  /** The flow as status() names it; absent for 'error'. */
  readonly tuple?: string;
  /** The peer concerned, when one is. */
  readonly peer?: string;
  /** connectFailed, openRefused: what the connect came to, in words ('connection refused', 'timed out', 'unreachable', ...). */
  readonly status?: string;
  /** connectFailed on the destination side: the socket's error code (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ...). */
  readonly code?: string;
  /** 'error': what handling the flow's socket or message threw (the flow ended, the gateway goes on). */
  readonly error?: unknown;
  /** One line for a log: the flow, what happened, where to look. */
  readonly message: string;
}

/** An initiator's handshakes to a peer go unanswered ('peerunreachable'). */
export interface TpoPeerUnreachable {
  readonly peer: string;
  /** Where the handshakes go, `address:port` (the peer's `address` in the config). */
  readonly address: string;
  /** Initiations sent since the peer last answered. */
  readonly attempts: number;
  /** Since the first of them, ms. */
  readonly sinceMs: number;
  /** One line for a log, with the likely causes. */
  readonly message: string;
}

/** Every flow with a peer was reset at once ('peerflowsreset'). */
export interface TpoPeerFlowsReset {
  readonly peer: string;
  readonly flows: number;
  /** 'dead': down limits.peerDeadMs; 'restarted': a new session from a restarted peer (or a goodbye); 'removed': removePeer(). */
  readonly cause: PeerFlowsResetCause;
  readonly message: string;
}

/** removePeer() ended a peer ('peerremoved'). */
export interface TpoPeerRemoval {
  readonly name: string;
  /** Its flows, reset. */
  readonly flowsReset: number;
}

/** removeTableEntry() ended an entry ('tableentryremoved'). */
export interface TpoTableEntryRemoval {
  readonly name: string;
  /** The flows it had handed over that ended with it (its UDP flows; its TCP flows too with `resetFlows`). */
  readonly flowsEnded: number;
}

/** Handshake datagrams dropped: a wrong key, forged or replayed handshakes, a peer whose key id is unknown here. */
export interface TpoHandshakeFailure {
  /** The peer whose link dropped it; absent when no peer has the datagram's key id ('unknownKey'). */
  readonly peer?: string;
  /** Where it came from, `address:port` (UDP: the address may be forged). */
  readonly from: string;
  readonly reason: HandshakeFailureReason;
  /** How many from this address for this reason since its last event (events are coalesced, see above). */
  readonly count: number;
  /** One line for a log: what the reason means here (e.g. "the peers' keys differ"). */
  readonly message: string;
}

export interface TpoGatewayEvents {
  /** A session with the peer is up: the first, a new one (the peer restarted), or the old one back after 'peerdown'. */
  peerup: [peer: string];
  /** The peer went quiet or said goodbye; its flows are reset after limits.peerDeadMs unless it comes back. */
  peerdown: [peer: string];
  /** A flow was made: intercepted here, or opened here for a peer. */
  flowopen: [flow: TpoFlowInfo];
  flowfail: [failure: TpoFlowFailure];
  handshakefailure: [failure: TpoHandshakeFailure];
  /** This side's handshakes to the peer go unanswered: after a few (about 2 s), then after 10 s, 30 s, 1, 2 and every 5 min while it lasts. */
  peerunreachable: [info: TpoPeerUnreachable];
  /** Every flow with the peer was reset at once: it stayed down, it restarted, or it was removed. */
  peerflowsreset: [info: TpoPeerFlowsReset];
  /** addPeer() added a peer (an initiator's handshake has started). */
  peeradded: [peer: TpoPeerView];
  /** removePeer() removed a peer (after its flows were reset and it was told goodbye). */
  peerremoved: [info: TpoPeerRemoval];
  /** addTableEntry() added an entry (its listener is open). */
  tableentryadded: [entry: TpoTableEntryView];
  /** removeTableEntry() removed an entry (its listener is closed). */
  tableentryremoved: [info: TpoTableEntryRemoval];
  /** The gateway can no longer work (its peer port's receive thread died, the interception failed): close it. */
  fault: [error: Error];
  /** close() finished: everything the gateway owned is closed. Once. */
  close: [];
  /** A listener of `event` threw; the gateway went on (without a listener here: a process warning). */
  listenererror: [event: string, error: unknown];
}

export function flowInfo(flow: CarriedFlow): TpoFlowInfo {
  const t = flow.tuple;
  return {
    role: flow.role,
    protocol: t.protocol === 'udp' ? 'udp' : 'tcp',
    src: { address: t.src.address, port: t.src.port },
    dst: { address: t.dst.address, port: t.dst.port },
    tuple: tupleKey(t),
    peers: flow.branches.map((b) => b.peer),
  };
}

export function flowFailure(
  reason: FlowFailReason,
  role: 'source' | 'destination',
  tuple: FlowTuple,
  peer: string | undefined,
  detail: FlowFailDetail | undefined,
): TpoFlowFailure {
  const f = {
    reason,
    role,
    tuple: tupleKey(tuple),
    ...(peer !== undefined ? { peer } : {}),
    ...(detail?.status !== undefined ? { status: statusText(detail.status) } : {}),
    ...(detail?.error !== undefined ? { code: detail.error } : {}),
  };
  return { ...f, message: flowFailureText(f, tuple.dst) };
}

/** A flow's handling threw ('flowfail' with reason 'error'). */
export function flowError(error: unknown): TpoFlowFailure {
  return { reason: 'error', error, message: flowFailureText({ reason: 'error', error }, undefined) };
}

/** Handshake failure events per second, all sources together. */
export const HANDSHAKE_EVENTS_PER_SECOND = 20;
/** (source, reason) pairs remembered; beyond it the least recently seen is forgotten (and its count with it). */
const MAX_PAIRS = 1024;
const WINDOW_MS = 1000;
/** The longest a pair's failures go unreported while they go on (its interval doubles from WINDOW_MS up to this). */
export const HANDSHAKE_EVENT_MAX_INTERVAL_MS = 60_000;

/** Turns handshake drops into at most one event per interval per (source, reason), and a bounded number in all. */
export class HandshakeFailureCoalescer {
  readonly #pairs = new Map<string, { last: number; count: number; interval: number; seen: number }>();
  #windowStart = -Infinity;
  #inWindow = 0;

  /** One drop; the event to emit now, if one is due. */
  add(peer: string | undefined, reason: HandshakeFailureReason, from: DatagramSource, now = performance.now()): TpoHandshakeFailure | undefined {
    const key = `${reason}|${from.address}|${from.port}`;
    let pair = this.#pairs.get(key);
    if (pair) this.#pairs.delete(key);
    else {
      pair = { last: -Infinity, count: 0, interval: WINDOW_MS, seen: now };
      if (this.#pairs.size >= MAX_PAIRS) this.#pairs.delete(this.#pairs.keys().next().value!);
    }
    // Most recently seen last (Map keeps insertion order).
    this.#pairs.set(key, pair);
    pair.count++;
    // Quiet for as long as the longest interval: a new episode, reported at once again.
    if (now - pair.seen > HANDSHAKE_EVENT_MAX_INTERVAL_MS) {
      pair.interval = WINDOW_MS;
      pair.last = -Infinity;
    }
    pair.seen = now;
    if (now - pair.last < pair.interval) return undefined;
    if (now - this.#windowStart >= WINDOW_MS) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= HANDSHAKE_EVENTS_PER_SECOND) return undefined;
    this.#inWindow++;
    // A repeated report of the same thing doubles the wait for the next (a misconfigured peer retries for ever).
    if (pair.last !== -Infinity) pair.interval = Math.min(HANDSHAKE_EVENT_MAX_INTERVAL_MS, pair.interval * 2);
    pair.last = now;
    const count = pair.count;
    pair.count = 0;
    const f = { ...(peer !== undefined ? { peer } : {}), from: `${from.address}:${from.port}`, reason, count };
    return { ...f, message: handshakeFailureText(f) };
  }
}
