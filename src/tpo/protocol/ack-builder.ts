/**
 * The receiving side of a data mover session's acknowledgements: which
 * physical numbers arrived (as ranges, highest first), the highest one and
 * when it came (for the ack delay), and the delivery rate to this side's
 * driver. It builds the ack field (wire/tpo/data-mover.ts) a datagram
 * carries; when acks leave is the mover's business.
 */
import { MAX_ACK_BITMAP_BYTES, MAX_ACK_RANGES, type Ack, type AckRange } from '../../wire/tpo/data-mover.js';
import type { Reassembler } from './segments.js';

/** How much of the ack a datagram has room for. */
export interface AckSize {
  readonly ranges: number;
  readonly bitmapBytes: number;
}

/**
 * Ranges reach back this many physical numbers below the highest received:
 * older ones were in earlier acks, and if those were lost the logical
 * cumulative point and bitmap still tell the sender what arrived.
 */
const RANGE_REACH = 512;

export class AckBuilder {
  #highestReceived = -1;
  #highestReceivedAt = 0;
  /** Physical numbers received, as ranges [lo, hi], highest first, at most MAX_ACK_RANGES. */
  readonly #ranges: [number, number][] = [];
  /** Delivery rate to this side's driver, for the ack. */
  #rateWindowStart: number;
  #rateWindowBytes = 0;
  #deliveryRate = 0;

  /** `now`: the session's start (the delivery rate's first window starts there). */
  constructor(now: number) {
    this.#rateWindowStart = now;
  }

  /** Segment bytes handed to this side's driver (the delivery rate the ack reports). */
  delivered(bytes: number): void {
    this.#rateWindowBytes += bytes;
  }

  /** An authentic datagram with this physical number arrived (and, if data, was not refused). */
  received(physical: number, now: number): void {
    if (physical > this.#highestReceived) {
      this.#highestReceived = physical;
      this.#highestReceivedAt = now;
    }
    // Merge into the ranges (highest first), keeping the newest MAX_ACK_RANGES.
    const r = this.#ranges;
    let i = 0;
    while (i < r.length && r[i]![0] > physical + 1) i++;
    if (i < r.length && physical >= r[i]![0] - 1 && physical <= r[i]![1] + 1) {
      r[i]![0] = Math.min(r[i]![0], physical);
      r[i]![1] = Math.max(r[i]![1], physical);
      if (i + 1 < r.length && r[i + 1]![1] + 1 >= r[i]![0]) {
        r[i]![0] = Math.min(r[i]![0], r[i + 1]![0]);
        r.splice(i + 1, 1);
      }
      if (i > 0 && r[i - 1]![0] - 1 <= r[i]![1]) {
        r[i - 1]![0] = Math.min(r[i - 1]![0], r[i]![0]);
        r.splice(i, 1);
      }
    } else {
      r.splice(i, 0, [physical, physical]);
    }
    if (r.length > MAX_ACK_RANGES) r.length = MAX_ACK_RANGES;
  }

  /**
   * The ack as of `now`, within `size`. `nextPhysical` is the physical
   * number this side sends next; the logical cumulative point and bitmap
   * come from the reassembler.
   */
  build(now: number, size: AckSize, nextPhysical: number, reassembler: Reassembler): Ack {
    if (now - this.#rateWindowStart >= 100) {
      this.#deliveryRate = Math.min(0xffffffff, Math.round((this.#rateWindowBytes * 1000) / (now - this.#rateWindowStart)));
      this.#rateWindowStart = now;
      this.#rateWindowBytes = 0;
    }
    return {
      highestSent: Math.max(0, nextPhysical - 1),
      highestReceived: Math.max(0, this.#highestReceived),
      ackDelayUs: Math.min(0xffffffff, Math.round((now - this.#highestReceivedAt) * 1000)),
      deliveryRate: this.#deliveryRate,
      cumulative: reassembler.cumulative,
      bitmap: reassembler.bitmap(Math.min(size.bitmapBytes, MAX_ACK_BITMAP_BYTES)),
      ranges: this.#rangesFor(size.ranges),
    };
  }

  /** The newest `max` ranges within RANGE_REACH of the highest received (built for every ack: no intermediate arrays). */
  #rangesFor(max: number): AckRange[] {
    const out: AckRange[] = [];
    const r = this.#ranges;
    const floor = this.#highestReceived - RANGE_REACH;
    for (let i = 0; i < r.length && i < max; i++) {
      const [lo, hi] = r[i]!;
      if (hi >= floor) out.push({ largest: hi, length: hi - lo + 1 });
    }
    return out;
  }
}
