/**
 * The receiver state of one RTP synchronization source: RFC 3550 A.1
 * sequence validation (probation, MAX_DROPOUT, MAX_MISORDER, cycles), A.3
 * expected and lost, A.8 interarrival jitter, plus a bitmap of the last 1024
 * sequence numbers so duplicates are told from reordered packets and never
 * counted as received (A.3 lets duplicates make "lost" negative; here lost is
 * exactly the number of sequence numbers never seen).
 *
 * Allocation-free per packet: fixed fields and one Uint32Array.
 */

import { RTP_SEQ_MOD } from '../wire/rtp.js';

/** A.1: a forward jump of this many or more is a restart candidate, not loss. */
export const MAX_DROPOUT = 3000;
/** A.1: a packet up to this many behind the highest is reordered; further behind, a restart candidate. */
export const MAX_MISORDER = 100;
/** A.1: sequential packets a new source needs before it is valid. */
export const MIN_SEQUENTIAL = 2;
/** Sequence numbers remembered for duplicate detection. */
export const SEQ_WINDOW = 1024;

/** What one packet was to its source (`RtpSource.update`). */
export const SEQ_IN_ORDER = 0;
/** Below the highest, within MAX_MISORDER, not seen before: counted as received. */
export const SEQ_REORDERED = 1;
/** Below the highest by more than MAX_MISORDER: A.1 does not count it (it stays lost). */
export const SEQ_LATE = 2;
export const SEQ_DUPLICATE = 3;
/** The source is still on probation (not counted). */
export const SEQ_PROBATION = 4;
/** The packet ended probation: the source is now valid and this packet is its first. */
export const SEQ_VALIDATED = 5;
/** A jump beyond MAX_DROPOUT (or a late packet): remembered; a restart if the next one follows it. */
export const SEQ_JUMP = 6;
/** Two sequential packets after a jump: the sender restarted its numbering (A.1); counts start again. */
export const SEQ_RESTART = 7;

const SEQ_MASK = RTP_SEQ_MOD - 1;
const SLOT_MASK = SEQ_WINDOW - 1;

export class RtpSource {
  readonly ssrc: number;
  #probation = MIN_SEQUENTIAL;
  #maxSeq: number;
  #baseSeq: number;
  #cycles = 0;
  #badSeq = RTP_SEQ_MOD + 1;
  #received = 0;
  /** Expected and received of numbering epochs ended by a restart. */
  #foldedExpected = 0;
  #foldedLost = 0;
  /** Extended highest sequence number at the last `settledLost` call. */
  #mark = 0;
  readonly #seen = new Uint32Array(SEQ_WINDOW / 32);
  // A.8, in RTP timestamp units; arrival times as floats.
  #hasTransit = false;
  #lastArrival = 0;
  #lastTimestamp = 0;
  #jitterUnits = 0;

  constructor(ssrc: number, firstSeq: number) {
    this.ssrc = ssrc;
    this.#baseSeq = firstSeq;
    this.#maxSeq = (firstSeq - 1) & SEQ_MASK;
  }

  /** Whether the source has passed probation. */
  get valid(): boolean {
    return this.#probation === 0;
  }

  /** A.1 update_seq, with duplicates told apart. Returns one of the SEQ_* outcomes. */
  update(seq: number): number {
    if (this.#probation > 0) {
      if (seq === ((this.#maxSeq + 1) & SEQ_MASK)) {
        this.#probation--;
        this.#maxSeq = seq;
        if (this.#probation === 0) {
          this.#init(seq);
          return SEQ_VALIDATED;
        }
      } else {
        this.#probation = MIN_SEQUENTIAL - 1;
        this.#maxSeq = seq;
      }
      return SEQ_PROBATION;
    }
    const udelta = (seq - this.#maxSeq) & SEQ_MASK;
    if (udelta === 0) return SEQ_DUPLICATE; // the highest was received, by definition
    if (udelta < MAX_DROPOUT) {
      if (seq < this.#maxSeq) this.#cycles += RTP_SEQ_MOD;
      this.#advance(seq, udelta);
      this.#received++;
      return SEQ_IN_ORDER;
    }
    if (udelta <= RTP_SEQ_MOD - SEQ_WINDOW) return this.#jump(seq);
    // Behind the highest by 1..SEQ_WINDOW-1: the bitmap knows whether it came before.
    const behind = RTP_SEQ_MOD - udelta;
    if (this.#isSeen(seq)) return SEQ_DUPLICATE;
    this.#setSeen(seq);
    if (behind > this.#cycles + this.#maxSeq - this.#baseSeq) return SEQ_LATE; // before the base: never expected
    if (behind <= MAX_MISORDER) {
      this.#received++;
      return SEQ_REORDERED;
    }
    return this.#jump(seq) === SEQ_RESTART ? SEQ_RESTART : SEQ_LATE;
  }

  /** A.8: updates the jitter with a packet's RTP timestamp and arrival (ms on the monitor clock). */
  updateJitter(timestamp: number, arrivalMs: number, clockRate: number): void {
    const arrival = (arrivalMs * clockRate) / 1000;
    if (this.#hasTransit) {
      // D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}); the timestamp difference is signed 32-bit (wraps).
      const d = arrival - this.#lastArrival - ((timestamp - this.#lastTimestamp) | 0);
      this.#jitterUnits += (Math.abs(d) - this.#jitterUnits) / 16;
    }
    this.#hasTransit = true;
    this.#lastArrival = arrival;
    this.#lastTimestamp = timestamp;
  }

  /** Interarrival jitter, RTP timestamp units. */
  get jitter(): number {
    return this.#jitterUnits;
  }

  /** A.3 expected over every numbering epoch of this source. */
  get expected(): number {
    return this.#foldedExpected + this.#epochExpected();
  }

  /** A.3 lost over every numbering epoch; never negative, since duplicates are not counted as received. */
  get lost(): number {
    return this.#foldedLost + this.#epochExpected() - this.#received;
  }

  /**
   * Lost packets that can no longer be a reordering in flight: every hole
   * except those above the highest sequence number of the previous call (so
   * a hole must survive one call, one monitor tick, to count) and within
   * the bitmap's window. Then remembers the current highest for next time.
   */
  settledLost(): number {
    if (this.#probation > 0) return this.#foldedLost;
    const top = this.#cycles + this.#maxSeq;
    const from = Math.max(this.#mark, top - (SEQ_WINDOW - 1), this.#baseSeq - 1) + 1;
    let holes = 0;
    for (let ext = from; ext <= top; ext++) if (!this.#isSeen(ext & SEQ_MASK)) holes++;
    this.#mark = top;
    return this.lost - holes;
  }

  #epochExpected(): number {
    return this.#probation > 0 ? 0 : this.#cycles + this.#maxSeq - this.#baseSeq + 1;
  }

  /** A.1 init_seq for a valid source, counting `seq` as its first packet received. */
  #init(seq: number): void {
    this.#baseSeq = seq;
    this.#maxSeq = seq;
    this.#badSeq = RTP_SEQ_MOD + 1;
    this.#cycles = 0;
    this.#received = 1;
    this.#mark = seq;
    this.#seen.fill(0);
    this.#setSeen(seq);
  }

  #jump(seq: number): number {
    if (seq === this.#badSeq) {
      // Two sequential packets after a very large jump: assume the sender restarted (A.1).
      this.#foldedExpected += this.#epochExpected();
      this.#foldedLost += this.#epochExpected() - this.#received;
      this.#init(seq);
      return SEQ_RESTART;
    }
    this.#badSeq = (seq + 1) & SEQ_MASK;
    return SEQ_JUMP;
  }

  /** Moves the highest to `seq`, `delta` ahead: the slots in between now stand for missing numbers. */
  #advance(seq: number, delta: number): void {
    if (delta >= SEQ_WINDOW) this.#seen.fill(0);
    else for (let s = this.#maxSeq + 1, n = 1; n < delta; s++, n++) this.#clearSeen(s & SEQ_MASK);
    this.#maxSeq = seq;
    this.#setSeen(seq);
  }

  #isSeen(seq: number): boolean {
    const slot = seq & SLOT_MASK;
    return (this.#seen[slot >>> 5]! & (1 << (slot & 31))) !== 0;
  }

  #setSeen(seq: number): void {
    const slot = seq & SLOT_MASK;
    this.#seen[slot >>> 5]! |= 1 << (slot & 31);
  }

  #clearSeen(seq: number): void {
    const slot = seq & SLOT_MASK;
    this.#seen[slot >>> 5]! &= ~(1 << (slot & 31));
  }
}
