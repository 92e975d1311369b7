/**
 * The TpoGateway's events ('sluice/tpo'): what they carry, and how the
 * internal gateway's events (gateway/events.ts) become them. Handshake
 * failures are what strangers can cause at will, so they are coalesced:
 * at most one event per second per (source address, reason), and at most
 * HANDSHAKE_EVENTS_PER_SECOND in all; `count` says how many the event
 * stands for. The status counters count every one regardless.
 */
import type { HostPort } from './intercept/interception.js';
import type { DatagramSource } from './io/datagram-port.js';
import type { HandshakeFailureReason } from './link/peer-link.js';
import type { FlowFailReason } from './gateway/events.js';
import { tupleKey, type CarriedFlow, type FlowTuple } from './gateway/flow.js';

export type { FlowFailReason as TpoFlowFailReason } from './gateway/events.js';
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
  /** 'error': what handling the flow's socket or message threw (the flow ended, the gateway goes on). */
  readonly error?: unknown;
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

export function flowFailure(reason: FlowFailReason, role: 'source' | 'destination', tuple: FlowTuple, peer: string | undefined): TpoFlowFailure {
  return { reason, role, tuple: tupleKey(tuple), ...(peer !== undefined ? { peer } : {}) };
}

/** Handshake failure events per second, all sources together. */
export const HANDSHAKE_EVENTS_PER_SECOND = 20;
/** (source, reason) pairs remembered; beyond it the least recently seen is forgotten (and its count with it). */
const MAX_PAIRS = 1024;
const WINDOW_MS = 1000;

/** Turns handshake drops into at most one event per second per (source, reason), and a bounded number in all. */
export class HandshakeFailureCoalescer {
  readonly #pairs = new Map<string, { last: number; count: number }>();
  #windowStart = -Infinity;
  #inWindow = 0;

  /** One drop; the event to emit now, if one is due. */
  add(peer: string | undefined, reason: HandshakeFailureReason, from: DatagramSource, now = performance.now()): TpoHandshakeFailure | undefined {
    const key = `${reason}|${from.address}|${from.port}`;
    let pair = this.#pairs.get(key);
    if (pair) this.#pairs.delete(key);
    else {
      pair = { last: -Infinity, count: 0 };
      if (this.#pairs.size >= MAX_PAIRS) this.#pairs.delete(this.#pairs.keys().next().value!);
    }
    // Most recently seen last (Map keeps insertion order).
    this.#pairs.set(key, pair);
    pair.count++;
    if (now - pair.last < WINDOW_MS) return undefined;
    if (now - this.#windowStart >= WINDOW_MS) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= HANDSHAKE_EVENTS_PER_SECOND) return undefined;
    this.#inWindow++;
    pair.last = now;
    const count = pair.count;
    pair.count = 0;
    return { ...(peer !== undefined ? { peer } : {}), from: `${from.address}:${from.port}`, reason, count };
  }
}
