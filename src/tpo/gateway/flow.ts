/**
 * What every carried flow shares (issue #7): its 5-tuple as the source
 * gateway intercepted it (both gateways name the flow by it, in both
 * directions: docs/WIRE.md §1), one branch per peer gateway it goes to,
 * and the gateway services a flow needs. The TCP and UDP edges build on
 * this; the gateway routes messages to them by (peer, tuple).
 */
import { isIPv4 } from 'node:net';
import type { CarriedMessage } from '../../wire/tpo/driver-buffer.js';
import type { MessageFunction, MessageProtocol } from '../../wire/tpo/message.js';

import type { HostPort } from '../intercept/interception.js';

export interface FlowTuple {
  readonly protocol: MessageProtocol;
  readonly src: HostPort;
  readonly dst: HostPort;
}

export function tupleKey(t: FlowTuple): string {
  return `${t.protocol} ${t.src.address}:${t.src.port} > ${t.dst.address}:${t.dst.port}`;
}

/**
 * The tuple as the wire can name it: both addresses of one family
 * (docs/WIRE.md §1). An IPv6 client of an IPv4 target (an explicit
 * listener on `[::]`, say) gets its IPv4 address written IPv4-mapped, so
 * the far side connects to `::ffff:a.b.c.d` (dual-stack) instead of the
 * message failing to encode.
 */
export function oneFamily(t: FlowTuple): FlowTuple {
  const src4 = isIPv4(t.src.address);
  if (src4 === isIPv4(t.dst.address)) return t;
  const mapped = (h: HostPort): HostPort => (isIPv4(h.address) ? { address: `::ffff:${h.address}`, port: h.port } : h);
  return { protocol: t.protocol, src: mapped(t.src), dst: mapped(t.dst) };
}

/** Status codes (docs/WIRE.md §1). */
export const STATUS = { ok: 0, refused: 1, unreachable: 2, timedOut: 3, resetByPeer: 4, noRoute: 5, limit: 6, other: 255 } as const;

/** A socket error's code as a status for open-ok/reset. */
export function statusOfError(err: NodeJS.ErrnoException | undefined): number {
  switch (err?.code) {
    case 'ECONNREFUSED':
      return STATUS.refused;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return STATUS.unreachable;
    case 'ETIMEDOUT':
      return STATUS.timedOut;
    case 'ECONNRESET':
    case 'EPIPE':
      return STATUS.resetByPeer;
    default:
      return STATUS.other;
  }
}

/** The failures a TCP edge finds itself (the gateway finds the others). */
export type EdgeFailReason = 'openTimeout' | 'windowExceeded' | 'connectFailed' | 'openRefused';

/** Statuses of a failed connect (the far side's open-ok says connectFailed with these; any other is openRefused). */
export function isConnectFailure(status: number): boolean {
  return status === STATUS.refused || status === STATUS.unreachable || status === STATUS.timedOut;
}

/** A status as words, for events and logs. */
export function statusText(status: number): string {
  switch (status) {
    case STATUS.ok:
      return 'ok';
    case STATUS.refused:
      return 'connection refused';
    case STATUS.unreachable:
      return 'unreachable';
    case STATUS.timedOut:
      return 'timed out';
    case STATUS.resetByPeer:
      return 'reset';
    case STATUS.noRoute:
      return 'not allowed (deliver.allow) or no route';
    case STATUS.limit:
      return 'over a limit';
    default:
      return 'failed';
  }
}

/** What a flow needs from its gateway. */
export interface FlowHost {
  /** Queues a message to a peer (`urgent`: ahead of queued bulk, see ThinFlowMeter); false: the peer's link is full or down (wait for onPeerDrain). */
  send(peer: string, domain: number, message: CarriedMessage, urgent?: boolean): boolean;
  /**
   * The peer's link has room now: 'stream' (default) for a sender that can
   * wait; 'datagram' for one that cannot (DataMover.hasRoomForDatagram);
   * 'urgent' for a thin flow's datagram (DataMover.hasRoomForUrgent).
   */
  hasRoom(peer: string, kind?: 'stream' | 'datagram' | 'urgent'): boolean;
  /** Asks for a drain of the peer's link once it has room (a flow paused itself on it). */
  requestDrain(peer: string): void;
  /** The flow ended: forget it. */
  forget(flow: CarriedFlow): void;
  /** The flow carried data (its idle time starts again; a UDP flow becomes the most recently used). */
  active(flow: CarriedFlow): void;
  /** The edge ended the branch to `peer` for one of these reasons (it counted it): for the owner's events. */
  flowFailed?(flow: CarriedFlow, reason: EdgeFailReason, peer: string, detail?: { status?: number; error?: string }): void;
}

export const THIN_BYTES = 16 * 1024;
export const THIN_WINDOW_MS = 100;
export const BULK_HOLD_MS = 1000;

/**
 * Tells a thin flow from a bulk one, so the thin flow's messages can go
 * ahead of the bulk queued at the data mover (20 ms of the link's rate at
 * most, plus what the driver holds): request/response exchanges,
 * keystrokes, control messages and the receiving side's window updates
 * then cross with the path's delay, not behind a bulk transfer's queue. A
 * flow is thin while it sends at most THIN_BYTES per THIN_WINDOW_MS; once
 * over, it counts as bulk for BULK_HOLD_MS, so a bulk flow does not send
 * the first bytes of each window ahead of its own queued data (its
 * messages would only wait at the far end for the earlier ones). Order
 * within a flow is restored by its sequence numbers at the far gateway
 * (flow-sequencer.ts), so either lane is safe.
 */
export class ThinFlowMeter {
  #windowStart = -Infinity;
  #windowBytes = 0;
  #bulkUntil = -Infinity;

  /** Counts a message of `bytes` data; true: the flow is thin (send it urgent). */
  urgent(bytes: number, now = performance.now()): boolean {
    if (now - this.#windowStart >= THIN_WINDOW_MS) {
      this.#windowStart = now;
      this.#windowBytes = 0;
    }
    this.#windowBytes += bytes;
    if (this.#windowBytes > THIN_BYTES) this.#bulkUntil = now + BULK_HOLD_MS;
    return now >= this.#bulkUntil;
  }
}

/** One peer a flow goes to, with its own message sequence in each direction. */
export interface Branch {
  readonly peer: string;
  seqOut: number;
  seqIn: number;
  /** Bytes of data sent / received on this branch. */
  bytesOut: number;
  bytesIn: number;
  /** The branch is finished (closed, reset or failed) and takes no more messages. */
  done: boolean;
  /** Whether this branch's messages go urgent (each branch is its own peer's queue). */
  readonly meter: ThinFlowMeter;
}

export function newBranch(peer: string): Branch {
  return { peer, seqOut: 0, seqIn: 0, bytesOut: 0, bytesIn: 0, done: false, meter: new ThinFlowMeter() };
}

export interface FlowStatus {
  readonly tuple: string;
  readonly role: 'source' | 'destination';
  readonly peers: readonly string[];
  readonly state: string;
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** TCP: bytes from the peer the application has not taken yet (at most the 4 MiB window, plus what the kernel holds). */
  readonly pendingToApp?: number;
  readonly entry?: string;
}

/** The gateway's view of a flow. */
export interface CarriedFlow {
  readonly tuple: FlowTuple;
  readonly role: 'source' | 'destination';
  readonly branches: readonly Branch[];
  /** When it last carried data either way (performance.now() ms). */
  readonly lastActive: number;
  /** Source side: the name of the table entry that intercepted it. */
  readonly entry?: string | undefined;
  /** A message for this flow from `peer` (in order: the data mover and driver keep it). */
  onMessage(peer: string, m: CarriedMessage): void;
  /** The peer's link has room again; true when this made the flow read from its application again. */
  onPeerDrain(peer: string): boolean;
  /** The peer is gone (restarted or down too long): end the flow as a reset. */
  abort(peer: string, status: number): void;
  /** This side ends the branch to `peer` (it broke a limit): the peer is told with a reset; a primary's takes the flow down. */
  resetBranch(peer: string, status: number): void;
  status(): FlowStatus;
}

/** Builds a message of this flow (the header's 5-tuple is always the intercepted one). */
export function message(
  tuple: FlowTuple,
  fn: MessageFunction,
  sequence: number,
  data: Uint8Array = EMPTY,
  status: number = STATUS.ok,
  latencySensitive = false,
): CarriedMessage {
  return {
    header: {
      function: fn,
      protocol: tuple.protocol,
      sequence: sequence >>> 0,
      src: tuple.src,
      dst: tuple.dst,
      status,
      dataLength: data.length,
      ...(latencySensitive ? { latencySensitive } : {}),
    },
    data,
  };
}

export const EMPTY = new Uint8Array(0);
