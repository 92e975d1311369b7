/**
 * One stream of the stream scheduler (stream-scheduler.ts): a piece of
 * content sent to one destination at its own bitrate, and its counters.
 *
 * Pacing. Each stream has its own start (when it was added) and its own
 * ideal schedule: packet k, which ends at byte offset e_k of the data, is
 * due at start + e_k × 8 / bitrate (a packet is due once its last byte is,
 * so a stream never gets ahead of its bitrate). At every tick the
 * scheduler takes, per stream, the whole packets due by then that have not
 * been handed over yet: the amount is computed from the stream's start
 * and the current time, never from the previous tick, so fractions carry
 * over, the long-run rate is exact, and a late tick catches up instead of
 * drifting. The data goes to the write as subarray views of the stream's
 * buffer (no copy); the caller must not change the buffer while the
 * stream runs.
 */
import type { EndpointInput } from '../wire/endpoint.js';
import { Histogram } from './histogram.js';
import type { Percentiles } from './results.js';

export interface StreamInput {
  /** Unique among the scheduler's unfinished streams (1..64 characters). */
  id: string;
  /** Destination, `udp://host:port` or `{ host, port }`. */
  to: EndpointInput;
  /** Bits per second of payload (UDP/IP headers not counted). */
  bitrate: number;
  /** The whole content, sent from offset 0. Must not change while the stream runs. */
  data: Uint8Array;
  /** Start over at offset 0 after the last byte, until removed (default false: the stream finishes). */
  loop?: boolean;
}

/** running; or how the stream ended: all data sent, remove(), close(), or a write that failed. */
export type StreamStatus = 'running' | 'finished' | 'removed' | 'closed' | 'failed';

export interface StreamStats {
  readonly id: string;
  readonly to: string;
  readonly bitrate: number;
  readonly loop: boolean;
  /** Bytes of the stream's data. */
  readonly size: number;
  readonly status: StreamStatus;
  /** Sent, as the writes reported. */
  readonly packets: number;
  readonly bytes: number;
  readonly errors: number;
  readonly lastError?: string;
  /** Behind the ideal schedule when handed to a write, ms. */
  readonly lateness: Percentiles;
  /** From the stream's start to now, or to its end. */
  readonly elapsedMs: number;
  /** bytes × 8 / elapsed, bits/s. */
  readonly achievedBitrate: number;
  /** Why the stream failed (status 'failed'). */
  readonly error?: string;
}

/** What add() returns. */
export interface StreamHandle {
  readonly id: string;
  /** Resolves once, with the final counters, when the stream ends (however it ends; never rejects). */
  readonly done: Promise<StreamStats>;
  stats(): StreamStats;
  /** Stops sending; `done` resolves once its in-flight data (if any) is reported. */
  remove(): void;
}

/** What a stream needs of its scheduler: its removal. */
export interface StreamOwner {
  remove(id: string, which?: StreamHandle): boolean;
}

export class Stream implements StreamHandle {
  readonly id: string;
  readonly to: string;
  readonly bitrate: number;
  readonly data: Uint8Array;
  readonly loop: boolean;
  readonly done: Promise<StreamStats>;
  readonly startedAt = performance.now();
  readonly #bytesPerMs: number;
  readonly #owner: StreamOwner;
  readonly lateness = new Histogram();
  /** Bytes handed to writes, cumulative over loops. */
  issued = 0;
  packets = 0;
  bytes = 0;
  errors = 0;
  lastError: string | undefined;
  error: string | undefined;
  inFlight = false;
  /** Set when the stream stops taking data; it ends with this once nothing is in flight. */
  ending: Exclude<StreamStatus, 'running'> | undefined;
  status: StreamStatus = 'running';
  endedAt: number | undefined;
  resolveDone!: (s: StreamStats) => void;

  constructor(owner: StreamOwner, input: StreamInput, to: string) {
    this.#owner = owner;
    this.id = input.id;
    this.to = to;
    this.bitrate = input.bitrate;
    this.data = input.data;
    this.loop = input.loop === true;
    this.#bytesPerMs = input.bitrate / 8000;
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /**
   * The whole packets due at `now` not handed over yet, as one view into
   * the data (at most `budget` bytes, and at most to the end of the
   * current pass of a looping stream, so that a write never carries a
   * stream's tail and head out of order), recording their lateness.
   */
  take(now: number, packetSize: number, budget: number): Uint8Array | undefined {
    const len = this.data.byteLength;
    const due = Math.floor((now - this.startedAt) * this.#bytesPerMs);
    if (due <= this.issued || len === 0) return undefined;
    const passStart = this.loop ? Math.floor(this.issued / len) * len : 0;
    const from = this.issued - passStart;
    let to = due - passStart >= len ? len : Math.floor((due - passStart) / packetSize) * packetSize;
    if (to - from > budget) to = from + Math.floor(budget / packetSize) * packetSize;
    if (to <= from) return undefined;
    for (let end = Math.min(from + packetSize, to); ; end = Math.min(end + packetSize, to)) {
      this.lateness.record(now - (this.startedAt + (passStart + end) / this.#bytesPerMs));
      if (end === to) break;
    }
    this.issued += to - from;
    return this.data.subarray(from, to);
  }

  stats(): StreamStats {
    const elapsedMs = (this.endedAt ?? performance.now()) - this.startedAt;
    return {
      id: this.id,
      to: this.to,
      bitrate: this.bitrate,
      loop: this.loop,
      size: this.data.byteLength,
      status: this.status,
      packets: this.packets,
      bytes: this.bytes,
      errors: this.errors,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      lateness: this.lateness.percentiles(),
      elapsedMs,
      achievedBitrate: elapsedMs > 0 ? (this.bytes * 8000) / elapsedMs : 0,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  remove(): void {
    this.#owner.remove(this.id, this);
  }
}
