/**
 * Rates from consecutive counter snapshots: the daemon sends totals (stats
 * events once a second), the page turns two of them into per-second rates.
 */

/**
 * An event's time in ms since the epoch; `t` may be ms or s since the epoch or
 * an ISO string. Missing: now.
 * @param {unknown} t
 */
export function eventTimeMs(t) {
  if (typeof t === 'number' && Number.isFinite(t)) return t > 1e11 ? t : t * 1000;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  }
  return Date.now();
}

/**
 * (cur - prev) per second, or null when there is no earlier sample or the
 * counter went back (the flow was replaced and counts from zero again).
 * @param {number | undefined} prev
 * @param {number | undefined} cur
 * @param {number} dtS
 * @returns {number | null}
 */
export function perSecond(prev, cur, dtS) {
  if (prev === undefined || cur === undefined || !(dtS > 0) || cur < prev) return null;
  return (cur - prev) / dtS;
}

/** Sum of a drops record's values. @param {Record<string, number> | undefined} drops */
export function dropTotal(drops) {
  let n = 0;
  if (drops) for (const v of Object.values(drops)) if (typeof v === 'number') n += v;
  return n;
}

/**
 * Non-zero drop reasons as "queueFull 3, unreachable 12" (largest first), or ''.
 * @param {Record<string, number> | undefined} drops
 */
export function dropText(drops) {
  if (!drops) return '';
  return Object.entries(drops)
    .filter(([, v]) => typeof v === 'number' && v > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, v]) => `${reason} ${v.toLocaleString('en-US')}`)
    .join(', ');
}

/**
 * The share of datagrams lost between two peer snapshots (Δlost / ΔdatagramsSent),
 * or null without both counters, with nothing sent, or when a counter went back
 * (a new session).
 * @param {{ lost?: number, datagramsSent?: number }} prev
 * @param {{ lost?: number, datagramsSent?: number }} cur
 * @returns {number | null}
 */
export function intervalLoss(prev, cur) {
  const { lost: l0, datagramsSent: s0 } = prev;
  const { lost: l1, datagramsSent: s1 } = cur;
  if (l0 === undefined || l1 === undefined || s0 === undefined || s1 === undefined) return null;
  if (l1 < l0 || s1 <= s0) return null;
  return Math.min(1, (l1 - l0) / (s1 - s0));
}
