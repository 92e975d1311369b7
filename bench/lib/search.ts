/**
 * Highest input rate with at most LOSS_LIMIT loss.
 *
 * Without a hint: exponential ramp (x2) from `start` until a trial fails,
 * then geometric bisection until the failing rate is within `precision` of
 * the passing one. With a hint (this peer's result from an earlier repeat
 * or pattern): the first trial is at the hint and the step grows
 * (1+precision), squared, ... until a pass and a fail bracket the limit, then the same
 * bisection. Either way the result is a rate that passed with a failing
 * rate at most `precision` above it; the hint only saves trials.
 *
 * A generator-limited trial is neither pass nor fail: it caps the search
 * (the result is then a lower bound, flagged). The input rate is capped so
 * that input x fanout <= maxDeliveredPps.
 */
import type { TrialResult } from './trial.js';

export interface SearchOptions {
  fanout: number;
  /** Input rate of the first trial without a hint. */
  start: number;
  hint?: number;
  precision: number;
  maxDeliveredPps: number;
  minRate: number;
  maxTrials: number;
}

export interface SearchResult {
  /** Highest passing input rate (0 if none passed). */
  maxInputPps: number;
  /** Delivered packets/s measured in the trial at that rate. */
  deliveredPps: number;
  /** Lowest failing input rate, if one was found. */
  failedAt?: number;
  /** The search was stopped by the generator, not by relay loss: maxInputPps is a lower bound. */
  generatorLimited: boolean;
  /** Stopped by the maxDeliveredPps cap. */
  capped: boolean;
  trials: TrialResult[];
}

export async function searchMaxLossless(opts: SearchOptions, trial: (rate: number) => Promise<TrialResult>): Promise<SearchResult> {
  const cap = Math.floor(opts.maxDeliveredPps / opts.fanout);
  const clamp = (r: number): number => Math.round(Math.min(cap, Math.max(opts.minRate, r)));
  const trials: TrialResult[] = [];
  let lo: TrialResult | undefined;
  let hi: number | undefined;
  let ceiling: number | undefined; // lowest generator-limited rate
  let factor = opts.hint ? 1 + Math.max(0.05, opts.precision) : 2;
  const grow = (): void => {
    if (opts.hint) factor *= factor;
  };
  let rate = clamp(opts.hint ?? opts.start);

  while (trials.length < opts.maxTrials) {
    const t = await trial(rate);
    trials.push(t);
    if (t.genLimited) ceiling = Math.min(ceiling ?? Infinity, rate);
    else if (t.pass) {
      if (!lo || rate > lo.rate) lo = t;
    } else hi = Math.min(hi ?? Infinity, rate);

    const top = Math.min(hi ?? Infinity, ceiling ?? Infinity);
    let next: number;
    if (lo && Number.isFinite(top)) {
      if (top / lo.rate <= (1 + opts.precision) * 1.002) break; // tolerance for rates rounded to integers
      next = Math.sqrt(lo.rate * top);
    } else if (lo) {
      if (lo.rate >= cap) break;
      next = lo.rate * factor;
      grow();
    } else {
      if (top <= opts.minRate) break;
      next = top / factor;
      grow();
    }
    const r = clamp(next);
    if (r === rate || (lo && r <= lo.rate) || r >= top) break; // rounding: nothing new to learn
    rate = r;
  }
  return {
    maxInputPps: lo?.rate ?? 0,
    deliveredPps: lo?.deliveredPps ?? 0,
    ...(hi !== undefined ? { failedAt: hi } : {}),
    generatorLimited: ceiling !== undefined && (hi === undefined || ceiling < hi),
    capped: lo !== undefined && lo.rate >= cap,
    trials,
  };
}
