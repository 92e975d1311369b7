/**
 * The lab's numbered datagram: magic `SLAB`, a u32 sequence number
 * (big-endian), zero padding to the chosen size. Shared by the source and
 * the receivers so both agree on the format.
 */
const MAGIC = 0x534c4142; // 'SLAB'
export const LAB_HEADER_BYTES = 8;

export function labDatagram(seq: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, LAB_HEADER_BYTES));
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(seq >>> 0, 4);
  return b;
}

/** The sequence number, or undefined for anything that is not a lab datagram. */
export function labSeq(b: Buffer): number | undefined {
  if (b.length < LAB_HEADER_BYTES || b.readUInt32BE(0) !== MAGIC) return undefined;
  return b.readUInt32BE(4);
}
