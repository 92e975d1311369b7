/**
 * Netlink message and attribute encoding, and the ACK/error reader, shared
 * by the request-style netlink users (nf_tables in src/sys/netlink/nftables.ts,
 * policy routing in src/sys/netlink/policy-routing.ts). Pure: bytes in, bytes out.
 *
 *   struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   16 bytes
 *   struct nlattr   { u16 len; u16 type; } + value, padded to 4 bytes
 *
 * Attribute values are whatever the family wants: rtnetlink integers are
 * host order, nf_tables integers are big endian (NLA_BE32). The helpers
 * below name the order so callers never guess.
 */
import { NLMSG_ERROR, NLMSG_DONE, SIZEOF_NLMSGHDR } from './rtnetlink.js';

export const NLM_F_ACK = 0x4;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** nla_type bit: the value is itself a list of attributes. The kernel's nf_tables parser does not require it, but nft sets it and so do we. */
export const NLA_F_NESTED = 0x8000;

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const align4 = (n: number): number => (n + 3) & ~3;

/** An attribute: raw bytes, or nested attributes. */
export type NlAttr = { readonly type: number; readonly value: Uint8Array } | { readonly type: number; readonly nested: readonly NlAttr[] };

export const attr = (type: number, value: Uint8Array): NlAttr => ({ type, value });
export const nest = (type: number, ...nested: NlAttr[]): NlAttr => ({ type, nested });

/** NUL-terminated string value (NLA_STRING / NLA_NUL_STRING). */
export const strz = (s: string): Uint8Array => {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
};
export const u8 = (n: number): Uint8Array => Uint8Array.of(n & 0xff);
export const be16 = (n: number): Uint8Array => Uint8Array.of((n >>> 8) & 0xff, n & 0xff);
export const be32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, false);
  return b;
};
/** Signed big-endian 32 (nf_tables verdict codes are negative for jump/return/continue). */
export const be32s = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, false);
  return b;
};
export const ne32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, LE);
  return b;
};

function attrLength(a: NlAttr): number {
  if ('value' in a) return 4 + a.value.length;
  return 4 + a.nested.reduce((n, c) => n + align4(attrLength(c)), 0);
}

/** Writes `a` at `off`; returns the offset after it (padded). */
function writeAttr(out: Uint8Array, v: DataView, off: number, a: NlAttr): number {
  const len = attrLength(a);
  if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type} is ${len} bytes, more than nla_len can hold`);
  v.setUint16(off, len, LE);
  if ('value' in a) {
    v.setUint16(off + 2, a.type, LE);
    out.set(a.value, off + 4);
  } else {
    v.setUint16(off + 2, a.type | NLA_F_NESTED, LE);
    let o = off + 4;
    for (const c of a.nested) o = writeAttr(out, v, o, c);
  }
  return off + align4(len);
}

/**
 * One netlink message: header, the family's fixed header (`fixed`, e.g.
 * nfgenmsg or rtmsg; its length must be a multiple of 4), then `attrs`.
 */
export function nlmsg(type: number, flags: number, seq: number, fixed: Uint8Array, attrs: readonly NlAttr[] = []): Uint8Array {
  const len = SIZEOF_NLMSGHDR + align4(fixed.length) + attrs.reduce((n, a) => n + align4(attrLength(a)), 0);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, LE);
  v.setUint16(4, type, LE);
  v.setUint16(6, flags, LE);
  v.setUint32(8, seq >>> 0, LE);
  v.setUint32(12, 0, LE); // the kernel fills in our port id
  out.set(fixed, SIZEOF_NLMSGHDR);
  let o = SIZEOF_NLMSGHDR + align4(fixed.length);
  for (const a of attrs) o = writeAttr(out, v, o, a);
  return out;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** What one read of replies said about the requests we wait for. */
export interface AckChunk {
  /** Sequence numbers acknowledged with error 0. */
  acked: number[];
  /** First failure: the request's seq and the positive errno. */
  error?: { seq: number; errno: number };
  /** Why parsing stopped early; undefined when every byte parsed. */
  malformed?: string;
}

/**
 * Reads NLMSG_ERROR messages (ACKs when error is 0) out of one receive
 * buffer. The failing request's seq is the one in the echoed header inside
 * the error message (offset 4 + 8 of the body), which is the same as the
 * reply's own seq; we read the reply's. Never throws; always terminates
 * (each step consumes at least 16 bytes).
 */
export function parseAcks(buf: Uint8Array): AckChunk {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: AckChunk = { acked: [] };
  let off = 0;
  while (off < buf.byteLength) {
    const left = buf.byteLength - off;
    if (left < SIZEOF_NLMSGHDR) return { ...out, malformed: `truncated nlmsghdr at byte ${off}` };
    const len = v.getUint32(off, LE);
    const type = v.getUint16(off + 4, LE);
    const seq = v.getUint32(off + 8, LE);
    if (len < SIZEOF_NLMSGHDR || len > left) return { ...out, malformed: `bad nlmsg_len ${len} at byte ${off} (${left} left)` };
    const body = off + SIZEOF_NLMSGHDR;
    off += Math.min(align4(len), left);
    if (type === NLMSG_ERROR) {
      if (len - SIZEOF_NLMSGHDR < 4) return { ...out, malformed: 'NLMSG_ERROR without an error code' };
      const error = v.getInt32(body, LE);
      if (error === 0) out.acked.push(seq);
      else if (!out.error) out.error = { seq, errno: -error };
    } else if (type === NLMSG_DONE) {
      continue;
    }
    // Anything else (a notification echo) is not ours to interpret.
  }
  return out;
}
