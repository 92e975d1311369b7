/**
 * A bounded histogram of latencies for the stream scheduler's counters (a
 * stream's lateness, the writes' duration): a stream of hours costs no
 * memory per packet.
 */
import type { Percentiles } from './results.js';

/**
 * Log-bucketed histogram of non-negative values (ms): bucket 0 holds
 * values ≤ 10 µs, bucket i ≥ 1 values in (0.01 × 1.05^(i−1), 0.01 × 1.05^i];
 * percentiles are bucket upper bounds (≤ 5 % high), the max is exact.
 */
export class Histogram {
  static readonly #BASE = 0.01;
  static readonly #LN_STEP = Math.log(1.05);
  static readonly #BUCKETS = 420; // up to ~1 h
  #counts: Uint32Array | undefined;
  #n = 0;
  #max = 0;

  record(v: number): void {
    if (!(v > 0)) v = 0;
    const b = Histogram.#BUCKETS;
    const i = v <= Histogram.#BASE ? 0 : Math.min(b - 1, Math.ceil(Math.log(v / Histogram.#BASE) / Histogram.#LN_STEP));
    (this.#counts ??= new Uint32Array(b))[i]!++;
    this.#n++;
    if (v > this.#max) this.#max = v;
  }

  percentiles(): Percentiles {
    const c = this.#counts;
    if (!c || this.#n === 0) return { p50: 0, p99: 0, max: 0 };
    const at = (q: number) => {
      const rank = Math.max(1, Math.ceil(q * this.#n));
      let seen = 0;
      for (let i = 0; i < c.length; i++) {
        seen += c[i]!;
        if (seen >= rank) return Math.min(this.#max, i === 0 ? Histogram.#BASE : Histogram.#BASE * Math.exp(i * Histogram.#LN_STEP));
      }
      return this.#max;
    };
    return { p50: at(0.5), p99: at(0.99), max: this.#max };
  }
}
