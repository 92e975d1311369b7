/**
 * Driver buffers to segments and back (docs/WIRE.md 3.2). The data mover
 * cuts each driver buffer into segments of at most `segmentSize` bytes
 * with consecutive logical numbers, the first flagged buffer-start and the
 * last buffer-end; the receiver delivers segments in logical order and
 * rebuilds each buffer from its start to its end. Both halves are pure
 * state machines: no sockets, no timers.
 */
import { TD_BUFFER_END, TD_BUFFER_START } from '../wire/tpo/data-mover.js';

export interface Segment {
  readonly logical: number;
  /** TD_BUFFER_START / TD_BUFFER_END bits. */
  readonly flags: number;
  readonly bytes: Uint8Array;
}

/** Cuts `buffer` into segments numbered from `firstLogical` (views, no copy). */
export function segmentBuffer(buffer: Uint8Array, segmentSize: number, firstLogical: number): Segment[] {
  if (!Number.isInteger(segmentSize) || segmentSize < 1) throw new RangeError('segmentSize must be a positive integer');
  if (buffer.length === 0) throw new RangeError('an empty driver buffer has nothing to carry');
  const out: Segment[] = [];
  for (let at = 0, n = firstLogical; at < buffer.length; at += segmentSize, n++) {
    const end = Math.min(buffer.length, at + segmentSize);
    out.push({ logical: n, flags: (at === 0 ? TD_BUFFER_START : 0) | (end === buffer.length ? TD_BUFFER_END : 0), bytes: buffer.subarray(at, end) });
  }
  return out;
}

/**
 * The receiving half: accepts segments in any order, any number of times,
 * and hands out whole driver buffers in logical order — or, with
 * `ordered: false`, each buffer as soon as all its segments are in, so a
 * buffer waits only for its own lost segments, not for every earlier
 * buffer's (head-of-line blocking across flows; the gateway restores each
 * flow's order from its message sequence numbers). It holds at most
 * `maxBufferedSegments` out-of-order segments (the receive window; the
 * sender must not run further ahead): beyond that a segment is refused
 * (the sender will send it again), so a peer cannot make it grow without
 * bound. The cumulative point and the bitmap of the ack come from here.
 */
export class Reassembler {
  /** Every logical number below this has been received and passed on. */
  #next = 0;
  readonly #held = new Map<number, Segment>();
  /** Segments of the buffer being rebuilt, in order (already past #next). */
  #parts: Uint8Array[] = [];
  #inBuffer = false;
  duplicates = 0;
  refused = 0;
  malformed = 0;

  /** Logical numbers held whose buffer was already handed out (ordered: false). */
  readonly #early = new Set<number>();

  constructor(
    readonly maxBufferedSegments = 16_384,
    readonly ordered = true,
  ) {}

  /** The cumulative point: all logical numbers below it are received. */
  get cumulative(): number {
    return this.#next;
  }

  get held(): number {
    return this.#held.size;
  }

  /** Whether logical number `n` has been received. */
  has(n: number): boolean {
    return n < this.#next || this.#held.has(n);
  }

  /**
   * Takes a segment; returns the driver buffers it completes, in order
   * (usually none or one). A duplicate is counted and ignored.
   */
  push(seg: Segment): Uint8Array[] {
    if (seg.logical < this.#next || this.#held.has(seg.logical)) {
      this.duplicates++;
      return [];
    }
    if (seg.logical - this.#next >= this.maxBufferedSegments) {
      this.refused++;
      return [];
    }
    this.#held.set(seg.logical, seg);
    const done: Uint8Array[] = [];
    if (!this.ordered && seg.logical > this.#next) this.#deliverEarly(seg, done);
    for (let s = this.#held.get(this.#next); s; s = this.#held.get(this.#next)) {
      this.#held.delete(this.#next);
      if (this.#early.delete(this.#next)) {
        // Part of a buffer already handed out whole: only the cumulative point moves.
        this.#next++;
        continue;
      }
      this.#next++;
      if (s.flags & TD_BUFFER_START) {
        if (this.#inBuffer) this.malformed++; // a start inside a buffer: the sender broke the format; drop the partial one
        this.#parts = [];
        this.#inBuffer = true;
      }
      if (!this.#inBuffer) {
        this.malformed++; // a middle segment without a start: nothing to attach it to
        continue;
      }
      this.#parts.push(s.bytes);
      if (s.flags & TD_BUFFER_END) {
        done.push(this.#parts.length === 1 ? this.#parts[0]! : concat(this.#parts));
        this.#parts = [];
        this.#inBuffer = false;
      }
    }
    return done;
  }

  /** If `seg` completes a buffer beyond the cumulative point (start..end all held), hands it out now. */
  #deliverEarly(seg: Segment, done: Uint8Array[]): void {
    let first = seg.logical;
    // Back to the buffer's start (bounded: a buffer is at most MAX_DRIVER_BUFFER / segment size segments).
    for (;;) {
      const s = this.#held.get(first);
      if (!s || this.#early.has(first)) return;
      if (s.flags & TD_BUFFER_START) break;
      if (first - 1 < this.#next) return; // the start is at or below the cumulative point: the in-order path takes it
      first--;
    }
    let last = seg.logical;
    for (;;) {
      const s = this.#held.get(last);
      if (!s || this.#early.has(last)) return;
      if (s.flags & TD_BUFFER_END) break;
      last++;
    }
    const parts: Uint8Array[] = [];
    for (let n = first; n <= last; n++) {
      const s = this.#held.get(n)!;
      if (n > first && s.flags & TD_BUFFER_START) {
        this.malformed++;
        return;
      }
      parts.push(s.bytes);
    }
    for (let n = first; n <= last; n++) {
      this.#early.add(n);
      // Keep the number (for the bitmap and the cumulative point), drop the bytes.
      const s = this.#held.get(n)!;
      this.#held.set(n, { logical: n, flags: s.flags, bytes: EMPTY });
    }
    done.push(parts.length === 1 ? parts[0]! : concat(parts));
  }

  /**
   * The ack's bitmap: bit i set when segment cumulative + 1 + i is held,
   * for at most `maxBytes` bytes (trailing zero bytes dropped).
   */
  bitmap(maxBytes: number): Uint8Array {
    const out = new Uint8Array(maxBytes);
    let used = 0;
    for (const n of this.#held.keys()) {
      const i = n - this.#next - 1;
      if (i < 0 || i >= maxBytes * 8) continue;
      out[i >> 3]! |= 1 << (i & 7);
      used = Math.max(used, (i >> 3) + 1);
    }
    return out.subarray(0, used);
  }
}

const EMPTY = new Uint8Array(0);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
