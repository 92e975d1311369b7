/**
 * The payload of a parity datagram (docs/WIRE.md, "Parity"): the XOR of a
 * group of segments a latency-sensitive flow sent close together, and
 * what the receiver needs to rebuild any one of them from the others: each
 * member's logical number, its buffer flags and its length. Carried,
 * encrypted like any segment, in a datagram whose transport flags say
 * TD_PARITY. Pure codec; decode checks every length against the others and
 * the input, since the members' lengths decide how much is rebuilt.
 *
 *   count u8 (2..MAX_PARITY_MEMBERS)
 *   count x { logical u64, flags u8 (TD_BUFFER_START | TD_BUFFER_END), length u16 (> 0) }
 *   xor: max(length) bytes, each member zero-padded to that length
 */
import { WireError } from './errors.js';
import { Reader } from './cursor.js';
import { TD_BUFFER_END, TD_BUFFER_START } from './data-mover.js';

/**
 * At most this many members: the header (11 bytes each) rides on top of a
 * full segment, inside the room the MTU leaves beyond a data datagram's
 * field (data-mover.ts: 78 bytes over IPv4 and IPv6).
 */
export const MAX_PARITY_MEMBERS = 6;
const MEMBER_LENGTH = 11;

export interface ParityMember {
  readonly logical: number;
  /** TD_BUFFER_START / TD_BUFFER_END of the member's segment. */
  readonly flags: number;
  readonly length: number;
}

export interface Parity {
  readonly members: readonly ParityMember[];
  /** XOR of the members' bytes, each zero-padded to the longest (the longest's length). */
  readonly xor: Uint8Array;
}

/** Bytes the payload of `count` members whose longest is `longest` bytes takes. */
export function parityLength(count: number, longest: number): number {
  return 1 + count * MEMBER_LENGTH + longest;
}

/** The payload for `segments` (at least 2, at most MAX_PARITY_MEMBERS): header and XOR, in one new buffer. */
export function encodeParity(segments: readonly { readonly logical: number; readonly flags: number; readonly bytes: Uint8Array }[]): Uint8Array {
  const n = segments.length;
  if (n < 2 || n > MAX_PARITY_MEMBERS) throw new WireError('value', `parity: ${n} members (2..${MAX_PARITY_MEMBERS})`, 'count');
  let longest = 0;
  for (const s of segments) {
    if (s.bytes.length === 0 || s.bytes.length > 0xffff) throw new WireError('length', `parity: a member of ${s.bytes.length} bytes`, 'length');
    longest = Math.max(longest, s.bytes.length);
  }
  const out = new Uint8Array(parityLength(n, longest));
  const view = new DataView(out.buffer);
  out[0] = n;
  let at = 1;
  for (const s of segments) {
    if (!Number.isSafeInteger(s.logical) || s.logical < 0) throw new WireError('value', `parity: logical ${s.logical}`, 'member.logical');
    view.setUint32(at, Math.floor(s.logical / 0x1_0000_0000));
    view.setUint32(at + 4, s.logical >>> 0);
    out[at + 8] = s.flags & (TD_BUFFER_START | TD_BUFFER_END);
    view.setUint16(at + 9, s.bytes.length);
    at += MEMBER_LENGTH;
  }
  const xor = out.subarray(at);
  for (const s of segments) for (let i = 0; i < s.bytes.length; i++) xor[i]! ^= s.bytes[i]!;
  return out;
}

/** Decodes a parity payload (the XOR a view into `bytes`); a WireError for anything inconsistent. */
export function decodeParity(bytes: Uint8Array): Parity {
  const r = new Reader(bytes, 'parity');
  const n = r.u8('count');
  if (n < 2 || n > MAX_PARITY_MEMBERS) throw new WireError('value', `parity: ${n} members (2..${MAX_PARITY_MEMBERS})`, 'count');
  const members: ParityMember[] = [];
  let longest = 0;
  for (let i = 0; i < n; i++) {
    const logical = r.u64('member.logical');
    const flags = r.u8('member.flags');
    const length = r.u16('member.length');
    if (flags & ~(TD_BUFFER_START | TD_BUFFER_END)) throw new WireError('value', `parity: member flags 0x${flags.toString(16)}`, 'member.flags');
    if (length === 0) throw new WireError('length', 'parity: an empty member', 'member.length');
    if (members.some((m) => m.logical === logical)) throw new WireError('value', `parity: logical ${logical} twice`, 'member.logical');
    members.push({ logical, flags, length });
    longest = Math.max(longest, length);
  }
  if (r.left !== longest) throw new WireError('length', `parity: ${r.left} XOR bytes for a longest member of ${longest}`, 'xor');
  return { members, xor: r.bytesOf(longest, 'xor') };
}
