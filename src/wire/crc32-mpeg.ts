/**
 * CRC-32/MPEG-2, the checksum that ends every MPEG-TS PSI section (PAT, PMT,
 * ...): polynomial 0x04C11DB7, initial value 0xFFFFFFFF, MSB-first (no
 * reflection) and no final XOR. Because there is no reflection or final XOR,
 * running the CRC over a whole section *including* its trailing big-endian
 * CRC field yields 0, which is how decoders validate a section.
 */

const POLY = 0x04c11db7;

/** 256-entry lookup table, one entry per leading byte (MSB-first). */
const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let b = 0; b < 8; b++) c = c & 0x80000000 ? (c << 1) ^ POLY : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32/MPEG-2 of `data[start, end)`, as an unsigned 32-bit number.
 * Allocation-free. Throws RangeError when the range is not inside `data`.
 * Check value: ASCII "123456789" → 0x0376E6E7.
 */
export function crc32Mpeg(data: Uint8Array, start = 0, end: number = data.length): number {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > data.length || start > end) {
    throw new RangeError(`crc32Mpeg: range [${start}, ${end}) is outside 0..${data.length}`);
  }
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) {
    crc = (crc << 8) ^ TABLE[((crc >>> 24) ^ data[i]!) & 0xff]!;
  }
  return crc >>> 0;
}
