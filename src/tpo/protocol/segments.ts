/**
 * Driver buffers to segments and back (docs/WIRE.md 3.2). The data mover
 * cuts each driver buffer into segments of at most `segmentSize` bytes
 * with consecutive logical numbers, the first flagged buffer-start and the
 * last buffer-end; the receiver delivers segments in logical order and
 * rebuilds each buffer from its start to its end. Both halves are pure
 * state machines: no sockets, no timers.
 */
import { TD_BUFFER_END, TD_BUFFER_START } from '../../wire/tpo/data-mover.js';
import { MAX_DRIVER_BUFFER, ROUTING_HEADER_LENGTH } from '../../wire/tpo/driver-buffer.js';
import { uninitializedBytes } from '../../wire/bytes.js';

export interface Segment {
  readonly logical: number;
  /** TD_BUFFER_START / TD_BUFFER_END bits. */
  readonly flags: number;
  readonly bytes: Uint8Array;
  /** Protected by a parity datagram (or, alone, a second copy) one pacer tick after its first transmission (an urgent segment of a latency-sensitive flow; parity.ts). */
  readonly redundant?: boolean;
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

/** Limits on what a Reassembler holds for a peer (see the class). */
export interface ReassemblyLimits {
  /** Bytes of segments held beyond the cumulative point; default 24 MiB (a full window of MTU-sized segments fits). */
  readonly maxHeldBytes?: number;
  /** Largest buffer rebuilt; default a driver buffer's largest (routing header plus 1 MiB). */
  readonly maxBufferBytes?: number;
  /** Segments one buffer may span (bounds the search for a complete buffer per segment); default the window. */
  readonly maxSegmentsPerBuffer?: number;
}

/** A full receive window (16,384) of 1,500-byte segments. */
export const DEFAULT_MAX_HELD_BYTES = 24 << 20;
export const DEFAULT_MAX_BUFFER_BYTES = ROUTING_HEADER_LENGTH + MAX_DRIVER_BUFFER;

/**
 * The receiving half: accepts segments in any order, any number of times,
 * and hands out whole driver buffers in logical order — or, with
 * `ordered: false`, each buffer as soon as all its segments are in, so a
 * buffer waits only for its own lost segments, not for every earlier
 * buffer's (head-of-line blocking across flows; the gateway restores each
 * flow's order from its message sequence numbers). The cumulative point
 * and the bitmap of the ack come from here.
 *
 * Memory is bounded whatever the peer sends (segments are authenticated,
 * but a peer may be broken or hostile and lie about starts, ends, lengths
 * and numbers):
 * - at most `maxBufferedSegments` segments beyond the cumulative point
 *   (the receive window) and at most `maxHeldBytes` of their bytes: beyond
 *   either a segment is refused and counted (it is not acknowledged, so a
 *   real sender sends it again); the segment at the cumulative point is
 *   always taken, since it frees what it completes;
 * - a buffer being rebuilt that grows past `maxBufferBytes` (no driver
 *   buffer is larger) is dropped and counted (`oversized`), with the rest
 *   of its segments up to the next start (`malformed`): one that never
 *   sees its last segment cannot grow without bound;
 * so a session holds at most maxHeldBytes + maxBufferBytes of segment
 * bytes, plus per-segment bookkeeping for at most maxBufferedSegments.
 */
export class Reassembler {
  /** Every logical number below this has been received and passed on. */
  #next = 0;
  readonly #held = new Map<number, Segment>();
  /** Bytes of the segments in #held. */
  #heldBytes = 0;
  /**
   * The buffer being rebuilt (its segments already past #next, copied in as
   * they arrive: one copy per segment, whatever the segment's own buffer is)
   * and its bytes so far; it grows as needed from the size of the last
   * buffer rebuilt.
   */
  #partial: Uint8Array | undefined;
  #partBytes = 0;
  #lastBufferBytes = 0;
  #inBuffer = false;
  duplicates = 0;
  /** Segments refused: beyond the window, or over the held-bytes limit. */
  refused = 0;
  /** Segments that fit no buffer (a middle without a start, a start inside a buffer). */
  malformed = 0;
  /** Buffers dropped for growing past maxBufferBytes. */
  oversized = 0;
  readonly maxHeldBytes: number;
  readonly maxBufferBytes: number;
  readonly maxSegmentsPerBuffer: number;

  /** Logical numbers held whose buffer was already handed out (ordered: false). */
  readonly #early = new Set<number>();

  constructor(
    readonly maxBufferedSegments = 16_384,
    readonly ordered = true,
    limits: ReassemblyLimits = {},
  ) {
    this.maxHeldBytes = limits.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
    this.maxBufferBytes = limits.maxBufferBytes ?? DEFAULT_MAX_BUFFER_BYTES;
    this.maxSegmentsPerBuffer = limits.maxSegmentsPerBuffer ?? maxBufferedSegments;
  }

  /** Bytes held now: segments beyond the cumulative point and the buffer being rebuilt. */
  get heldBytes(): number {
    return this.#heldBytes + this.#partBytes;
  }

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
   * (usually none or one). A duplicate is counted and ignored. `transient`:
   * the segment's bytes are valid only during this call (a view of the
   * AEAD's scratch region); whatever is kept of them is copied.
   */
  push(seg: Segment, transient = false): readonly Uint8Array[] {
    if (seg.logical < this.#next || this.#held.has(seg.logical)) {
      this.duplicates++;
      return NONE;
    }
    if (seg.logical - this.#next >= this.maxBufferedSegments || (seg.logical !== this.#next && this.#heldBytes + seg.bytes.length > this.maxHeldBytes)) {
      this.refused++;
      return NONE;
    }
    // The next segment in order, and not a buffer's last: it only joins the buffer being rebuilt
    // (most segments of a bulk transfer), without passing through #held.
    if (seg.logical === this.#next && !(seg.flags & TD_BUFFER_END) && (this.#inBuffer || seg.flags & TD_BUFFER_START) && !this.#held.has(seg.logical + 1)) {
      this.#next++;
      if (seg.flags & TD_BUFFER_START) {
        if (this.#inBuffer) this.malformed++;
        this.#dropPartial();
        this.#inBuffer = true;
      }
      if (this.#partBytes + seg.bytes.length > this.maxBufferBytes) {
        this.oversized++;
        this.#dropPartial();
        this.#inBuffer = false;
        return NONE;
      }
      this.#append(seg.bytes);
      return NONE;
    }
    // A segment beyond the cumulative point waits in #held: a transient one as a copy. One at it is
    // taken (appended or dropped) in the loop below, before this call returns.
    this.#hold(transient && seg.logical !== this.#next ? { logical: seg.logical, flags: seg.flags, bytes: seg.bytes.slice() } : seg);
    const done: Uint8Array[] = [];
    if (!this.ordered && seg.logical > this.#next) this.#deliverEarly(seg, done);
    for (let s = this.#held.get(this.#next); s; s = this.#held.get(this.#next)) {
      this.#unhold(this.#next, s);
      if (this.#early.delete(this.#next)) {
        // Part of a buffer already handed out whole: only the cumulative point moves. That buffer
        // began with a start, so a partial one in progress had no end before it: drop it (as a
        // start inside a buffer is dropped below), never splice it to segments after the early one.
        if (this.#inBuffer) {
          this.malformed++;
          this.#dropPartial();
          this.#inBuffer = false;
        }
        this.#next++;
        continue;
      }
      this.#next++;
      if (s.flags & TD_BUFFER_START) {
        if (this.#inBuffer) this.malformed++; // a start inside a buffer: the sender broke the format; drop the partial one
        this.#dropPartial();
        this.#inBuffer = true;
      }
      if (!this.#inBuffer) {
        this.malformed++; // a middle segment without a start: nothing to attach it to
        continue;
      }
      if (this.#partBytes + s.bytes.length > this.maxBufferBytes) {
        // Larger than any driver buffer: drop it now, and what follows of it up to the next start.
        this.oversized++;
        this.#dropPartial();
        this.#inBuffer = false;
        continue;
      }
      this.#append(s.bytes);
      if (s.flags & TD_BUFFER_END) {
        done.push(this.#takePartial());
        this.#inBuffer = false;
      }
    }
    return done;
  }

  #hold(seg: Segment): void {
    this.#held.set(seg.logical, seg);
    this.#heldBytes += seg.bytes.length;
  }

  #unhold(n: number, seg: Segment): void {
    this.#held.delete(n);
    this.#heldBytes -= seg.bytes.length;
  }

  #dropPartial(): void {
    // The bytes are dropped; the buffer they were in is reused for the next one.
    this.#partBytes = 0;
  }

  /** Copies a segment's bytes to the end of the buffer being rebuilt (the caller checked maxBufferBytes). */
  #append(bytes: Uint8Array): void {
    const need = this.#partBytes + bytes.length;
    let p = this.#partial;
    if (!p || p.length < need) {
      const grown = uninitializedBytes(Math.min(this.maxBufferBytes, Math.max(need, MIN_PARTIAL_BYTES, this.#lastBufferBytes, 2 * (p?.length ?? 0))));
      if (p && this.#partBytes) grown.set(p.subarray(0, this.#partBytes));
      p = this.#partial = grown;
    }
    p.set(bytes, this.#partBytes);
    this.#partBytes = need;
  }

  /** The buffer rebuilt so far, handed out (a copy when most of its room went unused, so a held buffer holds no slack). */
  #takePartial(): Uint8Array {
    const p = this.#partial!;
    const n = this.#partBytes;
    this.#lastBufferBytes = n;
    this.#partial = undefined;
    this.#partBytes = 0;
    return 2 * n < p.length ? p.slice(0, n) : p.subarray(0, n);
  }

  /** If `seg` completes a buffer beyond the cumulative point (start..end all held), hands it out now. */
  #deliverEarly(seg: Segment, done: Uint8Array[]): void {
    // Both walks stop after maxSegmentsPerBuffer segments or maxBufferBytes bytes: no real buffer is
    // longer, and a peer must not make every segment cost a walk over the whole window. A buffer not
    // found here is still rebuilt by the in-order path once the gap before it fills.
    let steps = 0;
    let bytes = 0;
    let last = seg.logical;
    for (;;) {
      const s = this.#held.get(last);
      if (!s || this.#early.has(last)) return;
      bytes += s.bytes.length;
      if (++steps > this.maxSegmentsPerBuffer || bytes > this.maxBufferBytes) return;
      if (s.flags & TD_BUFFER_END) break;
      last++;
    }
    let first = seg.logical;
    for (;;) {
      const s = this.#held.get(first);
      if (!s || this.#early.has(first)) return;
      if (s.flags & TD_BUFFER_START) break;
      if (first - 1 < this.#next) return; // the start is at or below the cumulative point: the in-order path takes it
      first--;
      const p = this.#held.get(first);
      if (!p) return;
      bytes += p.bytes.length;
      if (++steps > this.maxSegmentsPerBuffer || bytes > this.maxBufferBytes) return;
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
      this.#unhold(n, s);
      this.#hold({ logical: n, flags: s.flags, bytes: EMPTY });
    }
    done.push(parts.length === 1 ? parts[0]! : concat(parts));
  }

  /**
   * The ack's bitmap: bit i set when segment cumulative + 1 + i is held,
   * for at most `maxBytes` bytes (trailing zero bytes dropped).
   */
  bitmap(maxBytes: number): Uint8Array {
    // Nothing held beyond the cumulative point (a path without loss): every ack's case, no bitmap.
    if (this.#held.size === 0) return EMPTY;
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
/** The smallest buffer a rebuild starts with. */
const MIN_PARTIAL_BYTES = 2048;
/** What push() returns when the segment completes no buffer (shared: callers only read it). */
const NONE: readonly Uint8Array[] = Object.freeze([]);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = uninitializedBytes(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
