/**
 * CRC-32 (IEEE 802.3, as zlib and gzip compute it). node:zlib has it
 * natively from Node 20.15; on older Node 20 releases a table-driven
 * version gives the same values (slower, about a millisecond per MB).
 */
import * as zlib from 'node:zlib';

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

let table: Uint32Array | undefined;

function tableCrc32(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = ~value >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** CRC-32 of `data`, continuing from `value` (the CRC of what came before). */
export function crc32(data: Uint8Array, value = 0): number {
  return native ? native(data, value) : tableCrc32(data, value);
}

/** The portable version, exported so tests can check it against the native one. */
export const crc32Portable = tableCrc32;
