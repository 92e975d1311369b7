/**
 * Counters the worker writes and the application thread reads, in
 * SharedArrayBuffers: reading stats costs no message and no wake-up, and
 * the worker pays one array store per update. Values are float64 (exact to
 * 2^53). A reader may see a flow total a few copies ahead of a destination's
 * while a batch is in flight; each number on its own is always consistent.
 */
import { errnoName } from '../../sys/errno.js';
import type { DestinationStats, FlowDropReason } from '../common/counters.js';

/** Slots of a flow's counter array. */
export const F = {
  packetsIn: 0,
  bytesIn: 1,
  packetsOut: 2,
  bytesOut: 3,
  sourceNotAllowed: 4,
  malformed: 5,
  tooLarge: 6,
  sendError: 7,
  queueFull: 8,
  /** Engine detail (not a FlowStats field): GSO messages sent, segments they carried. */
  gsoMessages: 9,
  gsoSegments: 10,
  /** Receive calls and datagrams they returned, and GRO super-buffers seen. */
  recvCalls: 11,
  groBuffers: 12,
  sendCalls: 13,
  relayLoop: 14,
  unreachable: 15,
  suspended: 16,
  /** ICMP errors read that name no current destination (a removed subscriber, or a stale one). */
  icmpUnmatched: 17,
} as const;
export const FLOW_SLOTS = 24;

/** Slots of a destination's counter array. */
export const D = {
  packetsOut: 0,
  bytesOut: 1,
  sendError: 2,
  queueFull: 3,
  /** errno of the last failed copy, 0 if none. */
  lastErrno: 4,
  /** 1 once GSO was switched off for this destination after EIO/EINVAL/EMSGSIZE. */
  gsoOff: 5,
  /** ICMP errors naming this destination (drops.unreachable). */
  unreachable: 6,
  /** Copies skipped while suspended. */
  suspended: 7,
  /** When a suspended destination is tried again, ms since the epoch; 0 while active. */
  suspendedUntil: 8,
} as const;
export const DEST_SLOTS = 12;

export function newFlowCounters(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(FLOW_SLOTS * 8));
}

export function newDestinationCounters(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(DEST_SLOTS * 8));
}

export function flowDrops(f: Float64Array): Record<FlowDropReason, number> {
  return {
    sourceNotAllowed: f[F.sourceNotAllowed]!,
    malformed: f[F.malformed]!,
    tooLarge: f[F.tooLarge]!,
    sendError: f[F.sendError]!,
    queueFull: f[F.queueFull]!,
    relayLoop: f[F.relayLoop]!,
    unreachable: f[F.unreachable]!,
    suspended: f[F.suspended]!,
  };
}

export function destinationSnapshot(to: string, d: Float64Array): DestinationStats {
  const drops = { sendError: d[D.sendError]!, queueFull: d[D.queueFull]!, unreachable: d[D.unreachable]!, suspended: d[D.suspended]! };
  const errno = d[D.lastErrno]!;
  const until = d[D.suspendedUntil]!;
  return {
    to,
    packetsOut: d[D.packetsOut]!,
    bytesOut: d[D.bytesOut]!,
    drops,
    ...(errno ? { lastError: errnoName(errno) } : {}),
    ...(until ? { suspendedUntil: until } : {}),
  };
}

/** counters[slot] += n (typed arrays are never sparse; the `!` only satisfies the index check). */
export function bump(counters: Float64Array, slot: number, n = 1): void {
  counters[slot] = counters[slot]! + n;
}
