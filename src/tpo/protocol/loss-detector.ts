/**
 * The sending side of a data mover session's acknowledgements (RFC 9002
 * §6): the record of data datagrams in flight and what acks make of them.
 * An acknowledged datagram gives a delivery rate sample to the rate control,
 * and the one the ack names as highest received an RTT sample. A datagram
 * counts as lost when three later ones were acknowledged, or one was
 * acknowledged 9/8 RTT after it was sent; with nothing acknowledged for an
 * RTO, everything in flight counts as lost and the RTO backs off. Lost
 * datagrams go back to the mover by logical number (`onLost`), which sends
 * the segment again if it is still unacknowledged.
 */
import type { Ack } from '../../wire/tpo/data-mover.js';
import type { RttEstimator } from './rtt.js';
import type { RateControl } from './rate-control.js';

interface InFlight {
  readonly logical: number;
  readonly bytes: number;
  readonly sentAt: number;
  /** Delivered bytes and the time of the last delivery when this was sent (for the delivery rate). */
  readonly delivered: number;
  readonly deliveredAt: number;
  /** Send time of the datagram most recently acknowledged when this one was sent (the send side of the rate interval). */
  readonly firstSentAt: number;
  readonly appLimited: boolean;
}

const PACKET_THRESHOLD = 3;

export class LossDetector {
  readonly #rtt: RttEstimator;
  readonly #rate: RateControl;
  readonly #onLost: (logical: number) => void;
  /** Data datagrams in flight by physical number, ascending (a Map keeps insertion order). */
  readonly #inFlight = new Map<number, InFlight>();
  #bytesInFlight = 0;
  #largestAcked = -1;
  #lastAckAt = 0;
  #delivered = 0;
  #deliveredAt: number;
  #firstSentAt = 0;

  /** `now`: the session's start. */
  constructor(rtt: RttEstimator, rate: RateControl, onLost: (logical: number) => void, now: number) {
    this.#rtt = rtt;
    this.#rate = rate;
    this.#onLost = onLost;
    this.#deliveredAt = now;
  }

  get bytesInFlight(): number {
    return this.#bytesInFlight;
  }

  /** The highest physical number acknowledged so far (-1: none). */
  get largestAcked(): number {
    return this.#largestAcked;
  }

  /** A data datagram of `bytes` carrying segment `logical` left as `physical`. */
  onSent(physical: number, logical: number, bytes: number, appLimited: boolean, now: number): void {
    // Nothing in flight: a new flight starts, and its rate samples count from
    // now (Linux's tcp_rate_skb_sent does the same). Otherwise the idle time
    // since the last ack (a session that waited for its first flow, or a
    // pause between flows) would be part of every sample of the flight and
    // make the path look far slower than it is.
    if (this.#inFlight.size === 0) {
      this.#firstSentAt = now;
      this.#deliveredAt = now;
    }
    this.#inFlight.set(physical, {
      logical,
      bytes,
      sentAt: now,
      delivered: this.#delivered,
      deliveredAt: this.#deliveredAt,
      firstSentAt: this.#firstSentAt,
      appLimited,
    });
    this.#bytesInFlight += bytes;
  }

  /** The physical ranges of an ack: what they acknowledge leaves the flight. True when the ack gave an RTT sample. */
  onAck(ack: Ack, now: number): boolean {
    let newlyAckedLargest = -1;
    let ackedBytes = 0;
    let rttSampled = false;
    // In-flight numbers ascend (a Map keeps insertion order); ranges come highest first, so they are
    // walked from the last (lowest) one up.
    const ranges = ack.ranges;
    const top = ranges.length ? ranges[0]!.largest : -1;
    let j = ranges.length - 1;
    for (const [pn, p] of this.#inFlight) {
      if (pn > top) break;
      while (j >= 0 && ranges[j]!.largest < pn) j--;
      if (j < 0) break;
      const range = ranges[j]!;
      if (pn < range.largest - range.length + 1) continue;
      this.#inFlight.delete(pn);
      this.#bytesInFlight -= p.bytes;
      ackedBytes += p.bytes;
      this.#delivered += p.bytes;
      // The rate over the longer of the send and the ack intervals: acks that
      // arrive bunched up would otherwise suggest more bandwidth than there is.
      const interval = Math.max(p.sentAt - p.firstSentAt, now - p.deliveredAt);
      this.#firstSentAt = p.sentAt;
      if (interval > 0) this.#rate.onDelivery(((this.#delivered - p.delivered) * 1000) / interval, p.appLimited, p.bytes);
      if (pn > newlyAckedLargest) newlyAckedLargest = pn;
      if (pn === ack.highestReceived) {
        this.#rtt.sample(now - p.sentAt, ack.ackDelayUs / 1000, now);
        this.#rate.onMinRtt(this.#rtt.minRttMs);
        this.#rate.onRttSample(this.#rtt.latestMs, p.appLimited);
        rttSampled = true;
      }
    }
    if (ackedBytes > 0) {
      this.#deliveredAt = now;
      this.#lastAckAt = now;
    }
    if (newlyAckedLargest > this.#largestAcked) this.#largestAcked = newlyAckedLargest;
    return rttSampled;
  }

  /** Declares lost what the acks so far show lost (run after the mover took the ack's logical part). */
  detectLoss(now: number): void {
    const lossDelay = this.#rtt.lossDelayMs;
    for (const [pn, p] of this.#inFlight) {
      if (pn >= this.#largestAcked) break;
      if (this.#largestAcked - pn >= PACKET_THRESHOLD || now - p.sentAt > lossDelay) this.#declareLost(pn, p);
    }
  }

  /** Retransmission timeout: nothing acknowledged for an RTO while data is out. Then everything in flight is lost; true. */
  checkTimeout(now: number): boolean {
    if (this.#inFlight.size > 0 && now - Math.max(this.#lastAckAt, this.#lastSendAtOfOldest()) > this.#rtt.rtoMs) {
      this.#rtt.onTimeout();
      for (const [pn, p] of [...this.#inFlight]) this.#declareLost(pn, p);
      this.#lastAckAt = now;
      return true;
    }
    return false;
  }

  #lastSendAtOfOldest(): number {
    for (const p of this.#inFlight.values()) return p.sentAt;
    return 0;
  }

  #declareLost(pn: number, p: InFlight): void {
    this.#inFlight.delete(pn);
    this.#bytesInFlight -= p.bytes;
    this.#rate.onLoss(p.bytes);
    this.#onLost(p.logical);
  }
}
