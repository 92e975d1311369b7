/**
 * The netlink message codec every netlink user shares: the netlink.h
 * constants, message and attribute encoding, and the readers of what the
 * kernel sends back (the header walk, dump chunks, ACKs). Pure: bytes in,
 * bytes out; the socket that carries them is ./socket.ts.
 *
 *   struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   16 bytes
 *   struct nlattr   { u16 len; u16 type; } + value, padded to 4 bytes
 *
 * Headers are host order. Attribute values are whatever the family wants:
 * rtnetlink integers are host order, nf_tables integers are big endian
 * (NLA_BE32). The helpers below name the order so callers never guess.
 *
 * The readers never read out of bounds, never throw and always terminate,
 * whatever the bytes: a message whose nlmsg_len is below the header size or
 * runs past the buffer stops the walk and is reported as `malformed`.
 */

// netlink.h
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** NLM_F_ROOT | NLM_F_MATCH. */
export const NLM_F_DUMP = 0x300;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
export const SIZEOF_NLMSGHDR = 16;
/** nla_type bit: the value is itself a list of attributes. The kernel's nf_tables parser does not require it, but nft sets it and so do we. */
export const NLA_F_NESTED = 0x8000;
/** nla_type carries NLA_F_NESTED / NLA_F_NET_BYTEORDER in its top bits. */
const NLA_TYPE_MASK = 0x3fff;
const SIZEOF_NLATTR = 4;

/** Host byte order: netlink headers (and rtnetlink values) are in it. */
export const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** NLMSG_ALIGN / NLA_ALIGN / RTA_ALIGN. */
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
 * nfgenmsg, rtmsg or tcmsg; its length must be a multiple of 4), then `attrs`.
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

// ---------------------------------------------------------------------------
// Reading what the kernel sends

/** One message found in a receive buffer: its header and where its payload lies. */
export interface NlMsgView {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  /** nlmsg_len as sent (at least 16, never past the buffer). */
  readonly len: number;
  /** Offset of the payload (just after the header) in the buffer. */
  readonly body: number;
  /** Offset just past this message. */
  readonly end: number;
  /** Offset of the next message: past the padding, at least 16 bytes on, at most the buffer's end. */
  readonly next: number;
}

/**
 * The message at `off` of a buffer of `v.byteLength` bytes, or why there is
 * none: a header cut short, or an nlmsg_len below the header size or past
 * the buffer's end (a lying length is an error, never a hang or an
 * out-of-bounds read). Callers walk a buffer with `off = m.next`.
 */
export function readNlmsg(v: DataView, off: number): NlMsgView | string {
  const left = v.byteLength - off;
  if (left < SIZEOF_NLMSGHDR) return `truncated nlmsghdr at byte ${off}: ${left} of 16 bytes`;
  const len = v.getUint32(off, LE);
  if (len < SIZEOF_NLMSGHDR) return `nlmsg_len ${len} < 16 at byte ${off}`;
  if (len > left) return `nlmsg_len ${len} at byte ${off} runs past the ${left} bytes left`;
  return {
    type: v.getUint16(off + 4, LE),
    flags: v.getUint16(off + 6, LE),
    seq: v.getUint32(off + 8, LE),
    len,
    body: off + SIZEOF_NLMSGHDR,
    end: off + len,
    next: off + Math.min(align4(len), left),
  };
}

/** The int an NLMSG_ERROR carries (0 for an ACK, else -errno), or undefined when the message is too short to hold it. */
function errorCode(v: DataView, m: NlMsgView): number | undefined {
  return m.end - m.body >= 4 ? v.getInt32(m.body, LE) : undefined;
}

const viewOf = (buf: Uint8Array): DataView => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

/**
 * Calls `visit(type, value)` for each attribute from `from` to `end` (the
 * type without its NLA_F_NESTED / NLA_F_NET_BYTEORDER bits); returns why
 * the walk stopped early, naming the attribute as `noun` ("rtattr" for
 * rtnetlink), or undefined when every attribute fitted.
 */
export function walkAttrs(
  buf: Uint8Array,
  v: DataView,
  from: number,
  end: number,
  noun: string,
  visit: (type: number, value: Uint8Array) => void,
): string | undefined {
  let a = from;
  while (end - a >= SIZEOF_NLATTR) {
    const alen = v.getUint16(a, LE);
    const atype = v.getUint16(a + 2, LE) & NLA_TYPE_MASK;
    if (alen < SIZEOF_NLATTR || alen > end - a) return `${noun} of length ${alen} at byte ${a} does not fit its message (${end - a} bytes left)`;
    visit(atype, buf.subarray(a + SIZEOF_NLATTR, a + alen));
    a += Math.min(align4(alen), end - a);
  }
  return undefined;
}

/** A string attribute's value, up to its NUL (or all of it without one). */
export function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
}

/** What one read of a dump (NLM_F_DUMP) said. */
export interface DumpItems<T> {
  /** The decoded messages of the dumped type, in order. */
  items: T[];
  /** NLMSG_DONE seen: the dump is complete. */
  done: boolean;
  /** Positive errno from an NLMSG_ERROR (or a negative NLMSG_DONE status). */
  errno?: number;
  /** Why the parse stopped before the end of the buffer; undefined when every byte parsed. */
  malformed?: string;
}

/**
 * Decodes one message of the dumped type (its payload lies from `m.body`
 * to `m.end` of `buf`): the item, or why the message is malformed.
 */
export type DumpDecoder<T> = (buf: Uint8Array, v: DataView, m: NlMsgView) => T | string;

/**
 * Parses one read's worth of a dump reply. Messages of another `seq` (when
 * given) and types other than `itemType` / DONE / ERROR are skipped.
 * Parsing stops at NLMSG_DONE, an error, or the first malformed message;
 * the items before it are kept, the malformed one is not.
 */
export function parseDump<T>(buf: Uint8Array, seq: number | undefined, itemType: number, decode: DumpDecoder<T>): DumpItems<T> {
  const v = viewOf(buf);
  const out: DumpItems<T> = { items: [], done: false };
  for (let off = 0; off < buf.byteLength;) {
    const m = readNlmsg(v, off);
    if (typeof m === 'string') return { ...out, malformed: m };
    off = m.next;
    if (seq !== undefined && m.seq !== seq) continue;
    if (m.type === NLMSG_DONE) {
      // Carries an int status; negative when the dump itself failed. Old kernels send none.
      const status = errorCode(v, m) ?? 0;
      return status < 0 ? { ...out, done: true, errno: -status } : { ...out, done: true };
    }
    if (m.type === NLMSG_ERROR) {
      const error = errorCode(v, m);
      if (error === undefined) return { ...out, malformed: `NLMSG_ERROR of ${m.len} bytes has no error code` };
      if (error === 0) continue; // an ACK, not a failure
      return { ...out, errno: -error };
    }
    if (m.type === NLMSG_OVERRUN) return { ...out, malformed: 'NLMSG_OVERRUN: the kernel dropped part of the reply' };
    if (m.type !== itemType) continue; // NLMSG_NOOP and anything unexpected
    const item = decode(buf, v, m);
    if (typeof item === 'string') return { ...out, malformed: item };
    out.items.push(item);
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
 * reply's own seq; we read the reply's. Anything else (NLMSG_DONE, a
 * notification echo) is not ours to interpret.
 */
export function parseAcks(buf: Uint8Array): AckChunk {
  const v = viewOf(buf);
  const out: AckChunk = { acked: [] };
  for (let off = 0; off < buf.byteLength;) {
    const m = readNlmsg(v, off);
    if (typeof m === 'string') return { ...out, malformed: m };
    off = m.next;
    if (m.type !== NLMSG_ERROR) continue;
    const error = errorCode(v, m);
    if (error === undefined) return { ...out, malformed: `NLMSG_ERROR of ${m.len} bytes has no error code` };
    if (error === 0) out.acked.push(m.seq);
    else if (!out.error) out.error = { seq: m.seq, errno: -error };
  }
  return out;
}
