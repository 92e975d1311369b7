/**
 * The stream scheduler's (stream-scheduler.ts) tick rule and the shapes
 * of its options, writes, counters and events.
 */
import type { EndpointInput } from '../wire/endpoint.js';
import type { SegmentPolicy } from '../policy/schema.js';
import type { Percentiles, WriteResult } from './results.js';
import type { StreamStats } from './stream.js';

/** Packets one tick's write should carry at the aggregate rate of all streams. */
export const TICK_PACKETS = 64;
/** Shortest tick: Node timers (on the application's thread) cannot keep up below 1 ms. */
export const MIN_TICK_MS = 1;
/** Longest tick: beyond it a stream's per-tick burst strains receiver and switch buffers. */
export const MAX_TICK_MS = 10;

/**
 * The tick rule: the time `totalBitrate` (bits/s, all streams) takes to
 * produce TICK_PACKETS packets of `packetSize` bytes, clamped to
 * [MIN_TICK_MS, MAX_TICK_MS]. No rate (no stream) gives MAX_TICK_MS.
 */
export function streamTickMs(totalBitrate: number, packetSize: number): number {
  if (!(totalBitrate > 0)) return MAX_TICK_MS;
  const ms = (TICK_PACKETS * packetSize * 8 * 1000) / totalBitrate;
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, ms));
}

/** One entry of a write the scheduler issues: a subarray of a stream's data. */
export interface StreamWriteEntry {
  /** The stream's destination, `udp://host:port`. */
  readonly to: string;
  readonly data: Uint8Array;
}

/** Options of every write the scheduler issues. */
export type StreamWriteOptions = Omit<SegmentPolicy, 'type' | 'entries' | 'name'> & { packetSize: number; burst: number };

/** What the scheduler writes through: Sluice.write, or any function of that shape (a test fake, another engine). */
export type StreamWriteFn = (entries: StreamWriteEntry[], options: StreamWriteOptions) => Promise<WriteResult>;

export interface StreamSchedulerOptions {
  /** Largest datagram payload, bytes (1..65507; 1316 = 7 MPEG-TS packets, 1472 fills a 1500-byte IPv4 MTU). */
  packetSize: number;
  /** Packets to one destination before the next within a write (1..64, default 1: strict interleave). */
  burst?: number;
  /** Fixed tick, ms (1..1000), instead of the tick rule. */
  tickMs?: number;
  /** Passed to every write (docs/POLICY.md, segment). */
  gso?: 'auto' | 'never';
  zeroCopy?: 'auto' | 'never';
  from?: EndpointInput;
}

export interface SchedulerStats {
  /** The tick in force (the rule's, or the override). */
  readonly tickMs: number;
  /** Unfinished streams. */
  readonly streams: number;
  readonly ticks: number;
  readonly writes: number;
  /** Ticks that found the previous write still running (their data went with the next write). */
  readonly overruns: number;
  readonly packets: number;
  readonly bytes: number;
  readonly errors: number;
  /** How long the writes took, ms. */
  readonly writeMs: Percentiles;
}

export interface StreamSchedulerEvents {
  /** A stream ended (finished, removed, closed or failed), with its final counters. */
  end: [stats: StreamStats];
  /** A write rejected: the scheduler stopped and every stream ended as 'failed'. Emitted only when listened to. */
  error: [err: Error];
}
