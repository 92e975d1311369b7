/**
 * Forward error correction for latency-sensitive flows (issue 18): their
 * urgent segments are protected by redundancy, so a single loss costs no
 * round trip. The sender groups the protected segments it sends within
 * one pacer tick (up to PARITY_GROUP of them); when the group closes it
 * sends one parity datagram, the XOR of the group (wire/tpo/parity.ts), or,
 * for a group of one, a second copy of that segment (a parity of one is a
 * copy). The receiver keeps a copy of each protected segment for a while;
 * when a parity datagram arrives with exactly one member missing and the
 * others kept, it rebuilds the missing one. So a burst of n thin segments
 * (a request of a few KB, a game tick, a voice frame with its signalling)
 * costs one datagram more rather than n, and a lone message two copies as
 * before.
 */
import type { Parity } from '../../wire/tpo/parity.js';
import type { Segment } from './segments.js';

/** Members of a parity group at most: 4 costs a quarter more datagrams and survives one loss in five. */
export const PARITY_GROUP = 4;

/** The sending side: the protected segments sent since the group opened. */
export class ParityGroup {
  #members: Segment[] = [];
  #dueAt = Infinity;

  /** A protected segment left now; the group closes `spanMs` after its first member. */
  add(seg: Segment, now: number, spanMs: number): void {
    if (this.#members.length === 0) this.#dueAt = now + spanMs;
    this.#members.push(seg);
  }

  /** The group is full, or its span has passed. */
  ready(now: number): boolean {
    return this.#members.length >= PARITY_GROUP || (this.#members.length > 0 && now >= this.#dueAt);
  }

  /** Closes the group: its members, in the order sent. */
  take(): Segment[] {
    const m = this.#members;
    this.#members = [];
    this.#dueAt = Infinity;
    return m;
  }
}

interface Kept {
  readonly flags: number;
  readonly bytes: Uint8Array;
  readonly at: number;
}

/**
 * The receiving side: copies of the protected segments received lately,
 * bounded in count, bytes and age (a parity datagram comes one pacer tick
 * after its group, so a second is plenty; the bounds hold whatever the
 * peer sends).
 */
export class ParityCache {
  readonly #kept = new Map<number, Kept>();
  #bytes = 0;

  constructor(
    readonly maxSegments = 256,
    readonly maxBytes = 512 * 1024,
    readonly maxAgeMs = 1000,
  ) {}

  get size(): number {
    return this.#kept.size;
  }

  /** Keeps a copy of a protected segment (`bytes` may be a view of a scratch buffer). */
  keep(logical: number, flags: number, bytes: Uint8Array, now: number): void {
    if (this.#kept.has(logical) || bytes.length > this.maxBytes) return;
    this.#kept.set(logical, { flags, bytes: Uint8Array.from(bytes), at: now });
    this.#bytes += bytes.length;
    // Oldest first (a Map keeps insertion order).
    for (const [n, k] of this.#kept) {
      if (this.#kept.size <= this.maxSegments && this.#bytes <= this.maxBytes && now - k.at <= this.maxAgeMs) break;
      this.#kept.delete(n);
      this.#bytes -= k.bytes.length;
    }
  }

  /**
   * The one member of `parity` the receiver lacks, rebuilt from the others'
   * kept copies; undefined when none or more than one is missing, or a copy
   * is gone or disagrees with the parity's length for it.
   */
  rebuild(parity: Parity, has: (logical: number) => boolean): Segment | undefined {
    let missing: Parity['members'][number] | undefined;
    for (const m of parity.members) {
      if (has(m.logical)) continue;
      if (missing) return undefined;
      missing = m;
    }
    if (!missing) return undefined;
    const out = parity.xor.slice(0, missing.length);
    for (const m of parity.members) {
      if (m === missing) continue;
      const k = this.#kept.get(m.logical);
      if (!k || k.bytes.length !== m.length) return undefined;
      const n = Math.min(k.bytes.length, out.length);
      for (let i = 0; i < n; i++) out[i]! ^= k.bytes[i]!;
    }
    return { logical: missing.logical, flags: missing.flags, bytes: out };
  }
}
