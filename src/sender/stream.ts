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
 *
 * A stream paced by its own clock (`pace: 'pcr'` or `'rtp'`) has instead a
 * due time per datagram, computed once from the data (pace-pcr.ts,
 * pace-rtp.ts): datagram k of pass p is due at start + p × passMs +
 * dueMs[k], and a tick takes the datagrams due by then. The scheduler
 * wakes for the next one (nextDueAt), so such a stream keeps the spacing
 * of its own clock instead of the tick's.
 */
import type { EndpointInput } from '../wire/endpoint.js';
import { Histogram } from './histogram.js';
import { InvalidArgumentError } from '../errors.js';
import type { ClockSchedule, StreamPace } from './pace-types.js';
import { pcrSchedule } from './pace-pcr.js';
import { DEFAULT_RTP_CLOCK_RATE, rtpSchedule } from './pace-rtp.js';
import type { Percentiles } from './results.js';

export interface StreamInput {
  /** Unique among the scheduler's unfinished streams (1..64 characters). */
  id: string;
  /** Destination, `udp://host:port` or `{ host, port }`. */
  to: EndpointInput;
  /**
   * Bits per second of payload (UDP/IP headers not counted): the pace of a
   * `pace: 'bitrate'` stream. Optional for streams paced by their clock
   * (then only a hint for the tick rule; default: the clock's own average).
   */
  bitrate?: number;
  /**
   * What paces the stream (default 'bitrate'): a constant `bitrate`; or the
   * stream's own clock: 'pcr', the PCRs of MPEG-TS data (packetSize a
   * multiple of 188); 'rtp', the timestamps of RTP packets, the data being
   * RTP packets each after a 16-bit big-endian length (RFC 4571 framing).
   */
  pace?: StreamPace;
  /** RTP clock rate, Hz (pace 'rtp'; default 90000). */
  clockRate?: number;
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
  readonly pace: StreamPace;
  readonly loop: boolean;
  /** Bytes of the stream's data. */
  readonly size: number;
  /** Paced by its clock: one pass over the data by that clock, ms (a file's media duration). */
  readonly passMs?: number;
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

/**
 * Clock schedules by data buffer and how they were computed: the same
 * file sent to many destinations (sluice write, the demo's tiers) is read
 * once. Weak: a schedule goes with its buffer.
 */
const schedules = new WeakMap<Uint8Array, Map<string, ClockSchedule>>();

function clockSchedule(input: StreamInput, packetSize: number): ClockSchedule | undefined {
  const pace = input.pace ?? 'bitrate';
  if (pace === 'bitrate') return undefined;
  const clockRate = input.clockRate ?? DEFAULT_RTP_CLOCK_RATE;
  const key = `${pace}/${packetSize}/${clockRate}`;
  let byKey = schedules.get(input.data);
  const known = byKey?.get(key);
  if (known) return known;
  const made = pace === 'pcr' ? pcrSchedule(input.data, packetSize) : rtpSchedule(input.data, packetSize, clockRate);
  if (!byKey) schedules.set(input.data, (byKey = new Map()));
  byKey.set(key, made);
  return made;
}

export class Stream implements StreamHandle {
  readonly id: string;
  readonly to: string;
  readonly bitrate: number;
  readonly pace: StreamPace;
  readonly data: Uint8Array;
  readonly loop: boolean;
  readonly done: Promise<StreamStats>;
  /** Due times of a stream paced by its clock. */
  readonly #clock: ClockSchedule | undefined;
  /** Datagrams handed over, cumulative over loops (clock-paced streams). */
  #taken = 0;
  /** When the stream started: after its clock schedule was computed (that takes a while for a large file). */
  readonly startedAt: number;
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

  /** Throws InvalidArgumentError when a clock-paced stream's data cannot give its clock (see pace-pcr.ts, pace-rtp.ts). */
  constructor(owner: StreamOwner, input: StreamInput, to: string, packetSize: number) {
    this.#owner = owner;
    this.id = input.id;
    this.to = to;
    this.pace = input.pace ?? 'bitrate';
    this.data = input.data;
    this.loop = input.loop === true;
    try {
      this.#clock = clockSchedule(input, packetSize);
    } catch (err) {
      throw err instanceof InvalidArgumentError ? new InvalidArgumentError(`stream '${input.id}': ${err.message}`) : err;
    }
    const own = this.#clock && this.#clock.passMs > 0 ? (input.data.byteLength * 8000) / this.#clock.passMs : undefined;
    this.bitrate = input.bitrate ?? own ?? 0;
    this.#bytesPerMs = this.bitrate / 8000;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.startedAt = performance.now();
  }

  /** One pass over the data by the stream's clock, ms (undefined: paced by bitrate). */
  get passMs(): number | undefined {
    return this.#clock?.passMs;
  }

  /** Datagrams in one pass (clock-paced streams; undefined: paced by bitrate). */
  get datagrams(): number | undefined {
    return this.#clock?.dueMs.length;
  }

  /** Paced by its own clock (per-datagram due times) rather than by its bitrate. */
  get clockPaced(): boolean {
    return this.#clock !== undefined;
  }

  /** All data handed over (never, for a looping stream). */
  get exhausted(): boolean {
    if (this.loop) return false;
    return this.#clock ? this.#taken >= this.#clock.dueMs.length : this.issued >= this.data.byteLength;
  }

  /** When the next datagram of a clock-paced stream is due (performance.now() time), or undefined. */
  nextDueAt(): number | undefined {
    const c = this.#clock;
    if (!c || this.exhausted) return undefined;
    const n = c.dueMs.length;
    const pass = Math.floor(this.#taken / n);
    return this.startedAt + pass * c.passMs + c.dueMs[this.#taken - pass * n]!;
  }

  /**
   * The datagrams due at `now` not handed over yet, as views of the data
   * (pushed to `out`), at most `budget` bytes and never across the end of
   * a pass, and at most `maxViews` views; returns the bytes taken. Bitrate
   * streams give one view (take), TS ones one view of contiguous
   * datagrams, RTP ones a view per packet.
   */
  takeInto(now: number, packetSize: number, budget: number, out: Uint8Array[], maxViews = Infinity): number {
    const c = this.#clock;
    if (!c) {
      const view = this.take(now, packetSize, budget);
      if (view) out.push(view);
      return view?.byteLength ?? 0;
    }
    const n = c.dueMs.length;
    let bytes = 0;
    for (;;) {
      const pass = Math.floor(this.#taken / n);
      const k = this.#taken - pass * n;
      if (!this.loop && pass > 0) break;
      // A write interleaves its entries: a pass's tail and the next one's head go in separate writes.
      if (k === 0 && bytes > 0 && !c.framed) break;
      const due = this.startedAt + pass * c.passMs + c.dueMs[k]!;
      if (due > now) break;
      const from = c.framed ? c.framed.offsets[k]! : k * packetSize;
      const len = c.framed ? c.framed.lengths[k]! : Math.min(packetSize, this.data.byteLength - from);
      if (bytes + len > budget || (c.framed && out.length >= maxViews)) break;
      this.lateness.record(now - due);
      // Cut datagrams (TS) run on in the data: one view grows; framed ones (RTP) are each their own entry.
      if (!c.framed && bytes > 0) out[out.length - 1] = this.data.subarray(from - bytes, from + len);
      else out.push(this.data.subarray(from, from + len));
      bytes += len;
      this.#taken++;
      this.issued += len;
    }
    return bytes;
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
      pace: this.pace,
      loop: this.loop,
      size: this.data.byteLength,
      ...(this.#clock ? { passMs: this.#clock.passMs } : {}),
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
