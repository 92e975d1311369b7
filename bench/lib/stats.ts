/** Small robust statistics for repeated measurements. */

export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
  /** Interquartile range (linear interpolation); 0 for fewer than 2 values. */
  iqr: number;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function spread(values: readonly number[]): Spread | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  return { n: v.length, median: quantile(v, 0.5), min: v[0]!, max: v[v.length - 1]!, iqr: quantile(v, 0.75) - quantile(v, 0.25) };
}

/** Median of per-repeat ratios a[i]/b[i] (pairs from the same repeat), with min and max. */
export function pairedRatio(a: readonly number[], b: readonly number[]): Spread | undefined {
  const r: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i]) && b[i]! > 0) r.push(a[i]! / b[i]!);
  }
  return spread(r);
}
