/** Numbers as an operator reads them: SI prefixes, rates per second, short times. */

const PREFIXES = ['', 'k', 'M', 'G', 'T', 'P'];

/**
 * Three significant digits and an SI prefix: 1234567 → ["1.23", "M"], 7.5 → ["7.5", ""].
 * @param {number} value
 * @returns {[string, string]}
 */
export function scale(value) {
  let v = Math.abs(value);
  let i = 0;
  while (v >= 999.5 && i < PREFIXES.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
  const fixed = v.toFixed(digits);
  // Trailing zeros of a fraction only ("1.50" → "1.5", "2.00" → "2"), never of an integer part ("370").
  const text = fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed;
  return [`${value < 0 ? '-' : ''}${text}`, PREFIXES[i] ?? ''];
}

/**
 * A quantity with a unit: (12.5e6, 'bit/s') → "12.5 Mbit/s".
 * @param {number | null | undefined} value
 * @param {string} unit
 */
export function withUnit(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  const [text, prefix] = scale(value);
  return `${text} ${prefix}${unit}`;
}

/** @param {number | null} bytesPerSecond */
export const bitRate = (bytesPerSecond) => withUnit(bytesPerSecond === null ? null : bytesPerSecond * 8, 'bit/s');

/** @param {number | null} perSecond */
export function packetRate(perSecond) {
  if (perSecond === null || !Number.isFinite(perSecond)) return '–';
  const [text, prefix] = scale(perSecond);
  return `${text}${prefix} pkt/s`;
}

/** @param {number | undefined} n */
export function count(n) {
  return n !== undefined && Number.isFinite(n) ? n.toLocaleString('en-US') : '–';
}

/** @param {number} n */
export const bytes = (n) => withUnit(n, 'B');

/**
 * Time of day, e.g. a suspension's end: "14:03:07".
 * @param {number} ms since the epoch
 */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
}

/**
 * "42 s", "2 min 5 s", "3 h 1 min", "2 d 4 h"
 * @param {number} seconds
 */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** @param {number | null | undefined} ratio 0..1 */
export function percent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '–';
  return `${(ratio * 100).toFixed(ratio < 0.01 ? 2 : 1)} %`;
}
