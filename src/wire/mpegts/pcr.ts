/**
 * PCR (program clock reference) arithmetic of the MPEG-TS codec: the 27 MHz
 * clock, its 2^33 × 300 wrap, and the 6-byte field an adaptation field carries
 * (ISO/IEC 13818-1, 2.4.3.5). Pure and allocation-free, so a relay or checker
 * can call it per packet.
 */

/** PCR (system clock) frequency in Hz. */
export const PCR_CLOCK_HZ = 27_000_000;
/**
 * PCR values wrap here: 2^33 base ticks × 300 extension ticks (27 MHz units,
 * about 26.5 hours). Valid PCRs are 0 ≤ pcr < PCR_MODULUS.
 */
export const PCR_MODULUS: bigint = (1n << 33n) * 300n;

const PCR_MODULUS_NUM = Number(PCR_MODULUS);

/** Writes the 6-byte PCR field (33-bit base, 6 reserved 1-bits, 9-bit extension) at `p`. */
export function writePcr(out: Uint8Array, p: number, pcr: number): void {
  const base = Math.floor(pcr / 300);
  const ext = pcr - base * 300;
  // base needs 33 bits, more than JS bit operators handle: split off bit 0.
  const hi = Math.floor(base / 2); // base bits 32..1
  out[p] = (hi >>> 24) & 0xff;
  out[p + 1] = (hi >>> 16) & 0xff;
  out[p + 2] = (hi >>> 8) & 0xff;
  out[p + 3] = hi & 0xff;
  out[p + 4] = ((base % 2) << 7) | 0x7e | ((ext >>> 8) & 1);
  out[p + 5] = ext & 0xff;
}

/**
 * Reads the 6-byte PCR field at `p` and returns it in 27 MHz units as a plain
 * number (exact: the maximum is below 2^53). Allocation-free; does not check
 * bounds, the caller has already checked the adaptation field length.
 */
export function readPcr(buf: Uint8Array, p: number): number {
  const hi = ((buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) >>> 0;
  const b4 = buf[p + 4]!;
  const base = hi * 2 + (b4 >>> 7);
  const ext = ((b4 & 1) << 8) | buf[p + 5]!;
  // An invalid extension (300..511) is read modulo the PCR's range, so the
  // result stays a PCR (decodeTsPacket refuses such a packet outright).
  const pcr = base * 300 + ext;
  return pcr < PCR_MODULUS_NUM ? pcr : pcr - PCR_MODULUS_NUM;
}

/** Wraps a PCR value (27 MHz units, any integer) into [0, PCR_MODULUS). */
export function wrapPcr(pcr: bigint): bigint {
  const r = pcr % PCR_MODULUS;
  return r < 0n ? r + PCR_MODULUS : r;
}

/**
 * Forward distance from PCR `a` to PCR `b` in 27 MHz ticks, modulo the PCR
 * wrap (so a wrap between them still yields a small positive delta). Inputs
 * are plain numbers in [0, PCR_MODULUS), e.g. from `readPcr`.
 */
export function pcrDelta(a: number, b: number): number {
  const d = b - a;
  return d < 0 ? d + PCR_MODULUS_NUM : d;
}
