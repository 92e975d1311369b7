/**
 * Text units shared by the CLI and the config files. Pure: callers apply
 * their own bounds and error style (the TPO config throws with the field's
 * limits; the CLI reports an unparsable value as a usage error).
 */

/**
 * Reads a bit rate: "20M", "2.5m", "800k", "2500000", optionally with
 * "bit/s" or "bps" (k, M, G are powers of 1000). Returns bits/s (any
 * finite or infinite number the digits give), or undefined for text that
 * is not a bit rate.
 */
export function parseBitRateText(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bit\/s|bps)?$/.exec(text.trim());
  if (!m) return undefined;
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}
