/**
 * The PCR checks of TR 101 290 priority 2, per PCR_PID a PMT names:
 *
 * - 2.3a PCR_repetition_error: more than 40 ms between consecutive PCRs,
 *   counted at most once per gap. A PCR that arrives counts when the gap
 *   exceeds 40 ms both on the PCR values (the stream's own clock; a value
 *   gap over 100 ms is a discontinuity, below) and on the monitor clock, so
 *   neither a burst of network or host jitter (the monitor runs on an event
 *   loop that can stall) nor a PCR clock that runs ahead of delivery alone
 *   raises it. PCRs that do not arrive while other data does are counted by
 *   `tick` on the monitor clock alone, judged as of the last datagram.
 * - 2.3b PCR_discontinuity_indicator_error: a PCR more than 100 ms after,
 *   or before, the previous one without discontinuity_indicator.
 * - 2.4 PCR_accuracy_error: a PCR more than ±500 ns from where the
 *   stream's constant rate puts it. In a constant-bitrate multiplex each
 *   byte lasts the same time, so the PCR of the packet at index i should
 *   be a + b·i: the line is fitted (least squares) on the PCRs of one
 *   second and extrapolated over the next, and each PCR is compared with
 *   it (this is the PCR_AC part of TR 101 290 5.3.2's PCR_OJ model, with
 *   the rate measured from the stream rather than configured). The check
 *   runs only while two consecutive one-second fits agree on the rate
 *   within 0.1 %, and a PCR off the line by more than 1 % of its spacing
 *   (at least 100 µs) is read as a change of rate, not an inaccuracy: it
 *   stops the check until the rate is steady again. So a VBR stream, whose
 *   bytes do not follow the clock, is never checked (its accuracy cannot
 *   be judged from arrival bytes), and a CBR stream whose PCRs are off by
 *   more than that bound is not reported as inaccurate either.
 *   Lost bytes break the premise, so any CC error or sync error (the
 *   monitor's `epoch`) restarts the fit; a lost datagram of null packets
 *   only is invisible and is read as a rate change.
 */

import { PCR_CLOCK_HZ, PCR_MODULUS, pcrDelta } from '../wire/mpegts/pcr.js';
import type { AlarmBook } from './ts-alarms.js';

const TICKS_PER_MS = PCR_CLOCK_HZ / 1000;
const HALF_MODULUS = Number(PCR_MODULUS) / 2;
/** 2.3a: PCRs at least every 40 ms. */
export const PCR_REPETITION_MS = 40;
/** 2.3b: consecutive PCRs at most 100 ms apart (and never backwards) without discontinuity_indicator. */
export const PCR_DISCONTINUITY_MS = 100;
/** 2.4: ±500 ns, in 27 MHz ticks. */
const ACCURACY_TICKS = 500e-9 * PCR_CLOCK_HZ;
/** A fit window closes after this much PCR time (1 s). */
const WINDOW_TICKS = PCR_CLOCK_HZ;
/** Two consecutive windows agree on the rate within this fraction: the stream is CBR. */
const STEADY_RATE = 1e-3;
/** A PCR off the line by more than this fraction of its spacing (or VARIABLE_MIN_TICKS) means the rate changed. */
const VARIABLE_FRACTION = 0.01;
const VARIABLE_MIN_TICKS = 100e-6 * PCR_CLOCK_HZ;

/** One PCR PID's state. */
class PcrTrack {
  lastPcr = -1;
  lastPkt = 0;
  lastArrivalMs: number;
  /** The monitor-clock gap since the last PCR was already counted (by tick). */
  gapCounted = false;
  epoch = 0;
  // The window being accumulated: x = packets since its anchor, y = ticks since its anchor.
  winPcr = 0;
  winPkt = 0;
  n = 0;
  sx = 0;
  sy = 0;
  sxx = 0;
  sxy = 0;
  // The last closed window's fit: y = a + b·x from (fitPcr, fitPkt).
  hasFit = false;
  steady = false;
  fitPcr = 0;
  fitPkt = 0;
  a = 0;
  b = 0;

  constructor(nowMs: number) {
    this.lastArrivalMs = nowMs;
  }

  /** Starts a new window at this PCR (it is the window's first point). */
  openWindow(pcr: number, pkt: number): void {
    this.winPcr = pcr;
    this.winPkt = pkt;
    this.n = 1;
    this.sx = this.sy = this.sxx = this.sxy = 0;
  }

  /** Forgets the rate: checks resume after two agreeing windows. */
  forget(pcr: number, pkt: number): void {
    this.hasFit = false;
    this.steady = false;
    this.openWindow(pcr, pkt);
  }
}

export interface PcrCounts {
  pcrRepetitionError: number;
  pcrDiscontinuityError: number;
  pcrAccuracyError: number;
}

export class PcrChecker {
  readonly counts: PcrCounts = { pcrRepetitionError: 0, pcrDiscontinuityError: 0, pcrAccuracyError: 0 };
  readonly #tracks = new Map<number, PcrTrack>();
  readonly #alarms: AlarmBook;

  constructor(alarms: AlarmBook) {
    this.#alarms = alarms;
  }

  /** Monitor clocks start again (first data, or data after the stream stopped): no gap is counted across. */
  restart(nowMs: number): void {
    for (const t of this.#tracks.values()) {
      t.lastArrivalMs = nowMs;
      t.gapCounted = false;
    }
  }

  /** Sync was lost: the next PCR of each PID starts afresh (its value is not compared across the loss). */
  lostSync(): void {
    for (const t of this.#tracks.values()) t.lastPcr = -1;
  }

  /**
   * PCRs that do not arrive, on the monitor clock, for each PCR PID the PMTs
   * name: judged as of `atMs` (the last datagram), flagged at `nowMs`.
   */
  tick(atMs: number, nowMs: number, pcrPids: readonly number[]): void {
    for (const pid of pcrPids) {
      let t = this.#tracks.get(pid);
      if (t === undefined) {
        t = new PcrTrack(atMs);
        this.#tracks.set(pid, t);
      }
      const gap = atMs - t.lastArrivalMs;
      if (gap <= PCR_REPETITION_MS) continue;
      if (!t.gapCounted) {
        this.counts.pcrRepetitionError++;
        t.gapCounted = true;
      }
      this.#alarms.flag('pcrRepetitionError', pid, nowMs, gap);
    }
  }

  /**
   * A PCR on a PCR PID: `pcr` in 27 MHz ticks, `pkt` the index of its packet
   * in the multiplex, `epoch` the monitor's count of byte-losing events.
   */
  pcr(pid: number, pcr: number, pkt: number, discontinuity: boolean, nowMs: number, epoch: number): void {
    let t = this.#tracks.get(pid);
    if (t === undefined) {
      t = new PcrTrack(nowMs);
      this.#tracks.set(pid, t);
    }
    const monitorGap = nowMs - t.lastArrivalMs;
    let valueLate = false;
    let jump = false;
    let delta = 0;
    if (t.lastPcr >= 0 && !discontinuity) {
      delta = pcrDelta(t.lastPcr, pcr);
      if (delta > HALF_MODULUS) delta -= Number(PCR_MODULUS); // backwards
      const ms = delta / TICKS_PER_MS;
      jump = delta < 0 || ms > PCR_DISCONTINUITY_MS;
      valueLate = !jump && ms > PCR_REPETITION_MS;
    }
    if (valueLate && monitorGap > PCR_REPETITION_MS && !t.gapCounted) {
      this.counts.pcrRepetitionError++;
      this.#alarms.flag('pcrRepetitionError', pid, nowMs, delta / TICKS_PER_MS);
    }
    if (jump) {
      this.counts.pcrDiscontinuityError++;
      this.#alarms.flag('pcrDiscontinuityError', pid, nowMs, delta / TICKS_PER_MS);
    }
    if (t.lastPcr < 0 || discontinuity || jump || t.epoch !== epoch) {
      t.epoch = epoch;
      t.forget(pcr, pkt);
    } else {
      this.#accuracy(t, pid, pcr, pkt, delta, nowMs);
    }
    t.lastPcr = pcr;
    t.lastPkt = pkt;
    t.lastArrivalMs = nowMs;
    t.gapCounted = false;
  }

  #accuracy(t: PcrTrack, pid: number, pcr: number, pkt: number, delta: number, nowMs: number): void {
    if (t.steady) {
      const err = pcrDelta(t.fitPcr, pcr) - (t.a + t.b * (pkt - t.fitPkt));
      const abs = Math.abs(err);
      if (abs > Math.max(VARIABLE_FRACTION * delta, VARIABLE_MIN_TICKS)) {
        // Too far off to be jitter: the rate changed (VBR, or bytes we did not see).
        t.forget(pcr, pkt);
        return;
      }
      if (abs > ACCURACY_TICKS) {
        this.counts.pcrAccuracyError++;
        this.#alarms.flag('pcrAccuracyError', pid, nowMs, (err * 1e9) / PCR_CLOCK_HZ);
      }
    }
    const x = pkt - t.winPkt;
    const y = pcrDelta(t.winPcr, pcr);
    t.n++;
    t.sx += x;
    t.sy += y;
    t.sxx += x * x;
    t.sxy += x * y;
    if (y < WINDOW_TICKS || t.n < 3) return;
    const den = t.n * t.sxx - t.sx * t.sx;
    if (den <= 0) {
      t.forget(pcr, pkt); // every PCR in one packet position: no rate to measure
      return;
    }
    const b = (t.n * t.sxy - t.sx * t.sy) / den;
    const a = (t.sy - b * t.sx) / t.n;
    t.steady = t.hasFit && b > 0 && Math.abs(b - t.b) <= STEADY_RATE * t.b;
    t.hasFit = true;
    t.a = a;
    t.b = b;
    t.fitPcr = t.winPcr;
    t.fitPkt = t.winPkt;
    t.openWindow(pcr, pkt);
  }
}
