/**
 * Rates of the flows between two periodic lines of `relay`/`run`: packets
 * and bits per second in and out, drops per second. Counters are totals
 * since a flow started; a rate is the difference between two readings over
 * the time between them.
 */
import type { FlowStats } from '../dataplane/common/counters.js';
import { totalDrops } from './output.js';

export interface FlowRates {
  readonly packetsInPerSecond: number;
  /** Payload bits (UDP/IP headers not counted). */
  readonly bitsInPerSecond: number;
  readonly packetsOutPerSecond: number;
  readonly bitsOutPerSecond: number;
  readonly dropsPerSecond: number;
}

interface Reading {
  readonly packetsIn: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly drops: number;
}

const readingOf = (s: FlowStats): Reading => ({
  packetsIn: s.packetsIn,
  bytesIn: s.bytesIn,
  packetsOut: s.packetsOut,
  bytesOut: s.bytesOut,
  drops: totalDrops(s),
});

const ZERO: Reading = { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, drops: 0 };

export class RateTracker {
  /** The last reading of each flow, by name (names are unique within a Sluice). */
  #last = new Map<string, Reading>();
  #at: number;

  /** Starts from `initial` (a pinned flow adopted from an earlier run has counters already). */
  constructor(initial: readonly FlowStats[] = [], now: number = performance.now()) {
    for (const s of initial) this.#last.set(s.name, readingOf(s));
    this.#at = now;
  }

  /**
   * Rates of each flow in `stats` since the previous reading. A flow not
   * seen before (added by a reload) started within the interval: its
   * rates count from zero. A counter that went backwards belongs to a
   * flow restarted by a reload: it counts from zero too.
   */
  sample(stats: readonly FlowStats[], now: number = performance.now()): { intervalMs: number; rates: FlowRates[] } {
    const intervalMs = now - this.#at;
    const seconds = intervalMs / 1000;
    const next = new Map<string, Reading>();
    const rates = stats.map((s) => {
      const cur = readingOf(s);
      const prev = this.#last.get(s.name) ?? ZERO;
      next.set(s.name, cur);
      const d = (k: keyof Reading) => (cur[k] >= prev[k] ? cur[k] - prev[k] : cur[k]);
      const per = (n: number) => (seconds > 0 ? n / seconds : 0);
      return {
        packetsInPerSecond: per(d('packetsIn')),
        bitsInPerSecond: per(d('bytesIn') * 8),
        packetsOutPerSecond: per(d('packetsOut')),
        bitsOutPerSecond: per(d('bytesOut') * 8),
        dropsPerSecond: per(d('drops')),
      };
    });
    this.#last = next;
    this.#at = now;
    return { intervalMs, rates };
  }
}

/** `1234`, `12.5`, `0.2`: a per-second count, short. */
export function perSecondText(n: number): string {
  if (n >= 100) return Math.round(n).toString();
  // Trailing zeros dropped: `2.5`, `3`, `0`.
  return (n >= 10 ? n.toFixed(1) : n.toFixed(2)).replace(/\.0+$|(\.\d*?)0+$/, '$1');
}

/** Bits per second as Mbit/s with two decimals. */
export function mbitText(bps: number): string {
  return `${(bps / 1e6).toFixed(2)} Mbit/s`;
}

/**
 * One periodic line of a flow: its rates since the previous line, then
 * its totals.
 * `fan: in 1200 pkt/s 12.60 Mbit/s, out 2400 pkt/s 25.20 Mbit/s, drops 3/s; total in 6000 pkts / 7896000 B, out 12000 pkts / 15792000 B, dropped 15`
 */
export function rateLine(s: FlowStats, r: FlowRates): string {
  const drops = r.dropsPerSecond > 0 ? `, drops ${perSecondText(r.dropsPerSecond)}/s` : '';
  return (
    `${s.name}: in ${perSecondText(r.packetsInPerSecond)} pkt/s ${mbitText(r.bitsInPerSecond)}, ` +
    `out ${perSecondText(r.packetsOutPerSecond)} pkt/s ${mbitText(r.bitsOutPerSecond)}${drops}; ` +
    `total in ${s.packetsIn} pkts / ${s.bytesIn} B, out ${s.packetsOut} pkts / ${s.bytesOut} B, dropped ${totalDrops(s)}`
  );
}
