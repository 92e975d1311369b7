/**
 * What the lab's receivers recorded, and the questions the failover tests
 * and the bench ask of it: which node fed a subscriber when, sequence gaps,
 * duplicates, overlap of two feeders, first arrival after an instant.
 * Pure: arrays in, numbers out.
 */

export interface Arrival {
  seq: number;
  /** Wall-clock ms (performance.timeOrigin + now) at the receiver. */
  t: number;
  /** Source address: the node that sent it. */
  from: string;
}

/** Per subscriber port, its arrivals in arrival order. */
export type Recording = Map<number, Arrival[]>;

/** Parses lab-receiver.ts's dump (columnar JSON). */
export function parseDump(text: string): Recording {
  const raw = JSON.parse(text) as Record<string, { seq: number[]; t: number[]; from: string[] }>;
  const rec: Recording = new Map();
  for (const [port, cols] of Object.entries(raw)) {
    rec.set(
      Number(port),
      cols.seq.map((seq, i) => ({ seq, t: cols.t[i]!, from: cols.from[i]! })),
    );
  }
  return rec;
}

/** Arrivals with from <= t < to. */
export function between(arrivals: readonly Arrival[], from: number, to: number): Arrival[] {
  return arrivals.filter((a) => a.t >= from && a.t < to);
}

export interface FeederStat {
  count: number;
  first: number;
  last: number;
}

/** Who fed these arrivals: per source address, how many and when first and last. */
export function feeders(arrivals: readonly Arrival[]): Map<string, FeederStat> {
  const m = new Map<string, FeederStat>();
  for (const a of arrivals) {
    const f = m.get(a.from);
    if (f) {
      f.count++;
      f.last = a.t;
    } else m.set(a.from, { count: 1, first: a.t, last: a.t });
  }
  return m;
}

/** The one source that fed all of these, or undefined if none or several did. */
export function soleFeeder(arrivals: readonly Arrival[]): string | undefined {
  const f = [...feeders(arrivals).keys()];
  return f.length === 1 ? f[0] : undefined;
}

export interface SeqStats {
  /** Distinct sequence numbers seen. */
  unique: number;
  /** Sequence numbers between the smallest and largest seen that never arrived. */
  missing: number;
  /** The first few missing ranges `[first, last]`, for messages. */
  missingRanges: [number, number][];
  /** Arrivals beyond the first of their sequence number. */
  duplicates: number;
  min: number;
  max: number;
}

/** Gaps and duplicates of a run of arrivals (over the span it covers). */
export function seqStats(arrivals: readonly Arrival[]): SeqStats {
  const seen = new Set<number>();
  let duplicates = 0;
  for (const a of arrivals) {
    if (seen.has(a.seq)) duplicates++;
    else seen.add(a.seq);
  }
  const sorted = [...seen].sort((x, y) => x - y);
  const missingRanges: [number, number][] = [];
  let missing = 0;
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i]! - sorted[i - 1]! - 1;
    if (gap <= 0) continue;
    missing += gap;
    if (missingRanges.length < 5) missingRanges.push([sorted[i - 1]! + 1, sorted[i]! - 1]);
  }
  return { unique: seen.size, missing, missingRanges, duplicates, min: sorted[0] ?? -1, max: sorted.at(-1) ?? -1 };
}

/** The first arrival at or after `t` (from `from` only, if given). */
export function firstAfter(arrivals: readonly Arrival[], t: number, from?: string): Arrival | undefined {
  return arrivals.find((a) => a.t >= t && (from === undefined || a.from === from));
}

export interface Overlap {
  /** Ms during which both sources fed the subscriber (0 if they never overlapped). */
  ms: number;
  /** Sequence numbers that arrived from both. */
  duplicateSeqs: number;
}

/** How long and how much two sources fed the same subscriber at once. */
export function overlap(arrivals: readonly Arrival[], a: string, b: string): Overlap {
  const fa = feeders(arrivals).get(a);
  const fb = feeders(arrivals).get(b);
  if (!fa || !fb) return { ms: 0, duplicateSeqs: 0 };
  const ms = Math.max(0, Math.min(fa.last, fb.last) - Math.max(fa.first, fb.first));
  const fromA = new Set(arrivals.filter((x) => x.from === a).map((x) => x.seq));
  const duplicateSeqs = new Set(arrivals.filter((x) => x.from === b && fromA.has(x.seq)).map((x) => x.seq)).size;
  return { ms, duplicateSeqs };
}

/** The longest time without an arrival inside [from, to] (edges count as arrivals). */
export function longestSilence(arrivals: readonly Arrival[], from: number, to: number): number {
  let prev = from;
  let worst = 0;
  for (const a of arrivals) {
    if (a.t < from || a.t > to) continue;
    worst = Math.max(worst, a.t - prev);
    prev = a.t;
  }
  return Math.max(worst, to - prev);
}

/** p-quantile (0..1) of numbers, nearest rank; NaN for none. */
export function quantile(values: readonly number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}
