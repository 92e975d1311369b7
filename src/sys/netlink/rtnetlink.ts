/**
 * A minimal rtnetlink client: one request, RTM_GETQDISC with NLM_F_DUMP,
 * which lists every qdisc of every interface in the caller's network
 * namespace (what `tc qdisc show` prints). Used to learn whether the root
 * qdisc honours SO_TXTIME (src/sys/txtime.ts).
 *
 * The wire format (include/uapi/linux/netlink.h, rtnetlink.h, pkt_sched.h),
 * all in host byte order, every item padded to 4 bytes:
 *
 *   struct nlmsghdr { u32 nlmsg_len; u16 nlmsg_type; u16 nlmsg_flags; u32 nlmsg_seq; u32 nlmsg_pid; }   16 bytes
 *   struct tcmsg    { u8 tcm_family; u8 pad1; u16 pad2; s32 tcm_ifindex; u32 tcm_handle;
 *                     u32 tcm_parent; u32 tcm_info; }                                                  20 bytes
 *   struct rtattr   { u16 rta_len; u16 rta_type; } followed by the value                              4 bytes
 *
 * A reply is a run of messages, possibly over several reads (NLM_F_MULTI),
 * ended by NLMSG_DONE; failures come as NLMSG_ERROR {s32 error (-errno); ...}.
 *
 * `parseNetlinkDump` / `parseQdiscDump` are pure: whatever the bytes, they
 * never read out of bounds, never throw and always terminate (each step
 * consumes at least one 16-byte header); a malformed message stops the
 * parse and is reported in `malformed`.
 */
import { libc } from '../ffi.js';
import { EINTR, EAGAIN, syscallError } from '../errno.js';
import { AF_NETLINK, MSG_TRUNC, NETLINK_ROUTE, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, SO_RCVTIMEO } from '../constants.js';

// netlink.h
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
/** NLM_F_ROOT | NLM_F_MATCH. */
export const NLM_F_DUMP = 0x300;
export const SIZEOF_NLMSGHDR = 16;
// rtnetlink.h
export const RTM_NEWQDISC = 36;
export const RTM_GETQDISC = 38;
export const SIZEOF_TCMSG = 20;
export const SIZEOF_RTATTR = 4;
/** TCA_KIND: the qdisc's name, a NUL-terminated string ("fq", "pfifo_fast", ...). */
export const TCA_KIND = 1;
/** rta_type carries NLA_F_NESTED / NLA_F_NET_BYTEORDER in its top bits. */
const NLA_TYPE_MASK = 0x3fff;
// pkt_sched.h
/** tcm_parent of a root qdisc. */
export const TC_H_ROOT = 0xffffffff;
/** tcm_parent of the ingress/clsact qdisc. */
export const TC_H_INGRESS = 0xfffffff1;
/** Major part of a handle ("8001:" of 8001:1). */
export const tcMajor = (h: number): number => (h & 0xffff0000) >>> 0;

/** NLMSG_ALIGN / RTA_ALIGN. */
const align4 = (n: number): number => (n + 3) & ~3;
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface QdiscInfo {
  ifindex: number;
  /** tcm_handle, e.g. 0x80010000 for "8001:"; 0 for a default qdisc. */
  handle: number;
  /** tcm_parent: TC_H_ROOT for the root qdisc, TC_H_INGRESS for ingress, else the parent class. */
  parent: number;
  /** TCA_KIND; '' if the message carried none. */
  kind: string;
}

/** What one buffer of netlink messages said. */
export interface DumpChunk {
  qdiscs: QdiscInfo[];
  /** NLMSG_DONE seen: the dump is complete. */
  done: boolean;
  /** Positive errno from an NLMSG_ERROR (or a negative NLMSG_DONE status). */
  errno?: number;
  /** Why the parse stopped before the end of the buffer; undefined when every byte parsed. */
  malformed?: string;
}

/**
 * Parses one read's worth of netlink messages. Messages of another `seq`
 * (when given) and types other than RTM_NEWQDISC / DONE / ERROR are skipped.
 * Parsing stops at NLMSG_DONE, an error, or the first malformed message;
 * the qdiscs before it are kept, the malformed one is not.
 */
export function parseNetlinkDump(buf: Uint8Array, seq?: number): DumpChunk {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: DumpChunk = { qdiscs: [], done: false };
  let off = 0;
  while (off < buf.byteLength) {
    const left = buf.byteLength - off;
    if (left < SIZEOF_NLMSGHDR) return { ...out, malformed: `truncated nlmsghdr at byte ${off}: ${left} of 16 bytes` };
    const len = v.getUint32(off, LE);
    const type = v.getUint16(off + 4, LE);
    const msgSeq = v.getUint32(off + 8, LE);
    if (len < SIZEOF_NLMSGHDR) return { ...out, malformed: `nlmsg_len ${len} < 16 at byte ${off}` };
    if (len > left) return { ...out, malformed: `nlmsg_len ${len} at byte ${off} runs past the ${left} bytes left` };
    const body = off + SIZEOF_NLMSGHDR;
    const end = off + len;
    // Always >= 16 bytes forward: the loop terminates.
    off += Math.min(align4(len), left);
    if (seq !== undefined && msgSeq !== seq) continue;
    if (type === NLMSG_DONE) {
      // Carries an int status; negative when the dump itself failed.
      const status = end - body >= 4 ? v.getInt32(body, LE) : 0;
      return status < 0 ? { ...out, done: true, errno: -status } : { ...out, done: true };
    }
    if (type === NLMSG_ERROR) {
      if (end - body < 4) return { ...out, malformed: `NLMSG_ERROR of ${len} bytes has no error code` };
      const error = v.getInt32(body, LE);
      if (error === 0) continue; // an ACK, not a failure
      return { ...out, errno: -error };
    }
    if (type === NLMSG_OVERRUN) return { ...out, malformed: 'NLMSG_OVERRUN: the kernel dropped part of the reply' };
    if (type !== RTM_NEWQDISC) continue; // NLMSG_NOOP and anything unexpected
    if (end - body < SIZEOF_TCMSG) return { ...out, malformed: `RTM_NEWQDISC of ${len} bytes is shorter than nlmsghdr + tcmsg` };
    const q: QdiscInfo = {
      ifindex: v.getInt32(body + 4, LE),
      handle: v.getUint32(body + 8, LE),
      parent: v.getUint32(body + 12, LE),
      kind: '',
    };
    // Attributes: rtattr headers up to the end of this message.
    let a = body + SIZEOF_TCMSG;
    while (end - a >= SIZEOF_RTATTR) {
      const alen = v.getUint16(a, LE);
      const atype = v.getUint16(a + 2, LE) & NLA_TYPE_MASK;
      if (alen < SIZEOF_RTATTR || alen > end - a) {
        return { ...out, malformed: `rtattr of length ${alen} at byte ${a} does not fit its message (${end - a} bytes left)` };
      }
      if (atype === TCA_KIND) q.kind = cString(buf.subarray(a + SIZEOF_RTATTR, a + alen));
      a += Math.min(align4(alen), end - a);
    }
    out.qdiscs.push(q);
  }
  return out;
}

/** Only the qdiscs of a dump buffer (see `parseNetlinkDump` for DONE/errors/malformed). Never throws. */
export function parseQdiscDump(buf: Uint8Array): QdiscInfo[] {
  return parseNetlinkDump(buf).qdiscs;
}

function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
}

/** Builds the request: nlmsghdr + a zeroed tcmsg (ifindex 0: all interfaces). */
export function qdiscDumpRequest(seq: number): Uint8Array {
  const req = new Uint8Array(SIZEOF_NLMSGHDR + SIZEOF_TCMSG);
  const v = new DataView(req.buffer);
  v.setUint32(0, req.byteLength, LE);
  v.setUint16(4, RTM_GETQDISC, LE);
  v.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, LE);
  v.setUint32(8, seq, LE);
  v.setUint32(12, 0, LE); // nlmsg_pid: the kernel fills in our port id
  // tcm_family AF_UNSPEC and the rest zero.
  return req;
}

/** Bigger than any dump skb the kernel builds (it caps them near 32 KiB). */
const RECV_BUFFER = 64 * 1024;
/** Bounds the read loop even if the kernel never sent NLMSG_DONE. */
const MAX_READS = 4096;
const RECV_TIMEOUT_S = 2;

/**
 * Dumps the qdiscs of the caller's network namespace. Throws SyscallError
 * (socket, setsockopt, write, recv, or "RTM_GETQDISC" for a kernel-reported
 * error) naming the call and errno, or an Error for a malformed reply.
 */
export function dumpQdiscs(): QdiscInfo[] {
  const c = libc();
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw syscallError('socket(AF_NETLINK)', c.errno());
  try {
    // A read never blocks for longer than this, so a silent kernel cannot hang a probe.
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new BigInt64Array([BigInt(RECV_TIMEOUT_S), 0n]), 16) < 0) {
      throw syscallError('setsockopt(SO_RCVTIMEO)', c.errno());
    }
    const seq = Date.now() >>> 0 || 1;
    const req = qdiscDumpRequest(seq);
    // An unconnected netlink socket sends to the kernel (port id 0) and autobinds.
    if (c.write(fd, req, req.byteLength) !== req.byteLength) throw syscallError('write(RTM_GETQDISC)', c.errno());
    const buf = new Uint8Array(RECV_BUFFER);
    const qdiscs: QdiscInfo[] = [];
    for (let reads = 0; reads < MAX_READS; reads++) {
      // MSG_TRUNC: returns the message's real length, so a cut reply is detected, not half-parsed.
      const n = Number(c.recv(fd, buf, buf.byteLength, MSG_TRUNC));
      if (n < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        throw syscallError('recv(RTM_GETQDISC)', e, e === EAGAIN ? `no NLMSG_DONE within ${RECV_TIMEOUT_S} s` : undefined);
      }
      if (n > buf.byteLength) throw new Error(`RTM_GETQDISC reply of ${n} bytes exceeds the ${buf.byteLength}-byte buffer`);
      if (n === 0) throw new Error('RTM_GETQDISC: netlink socket returned end of file before NLMSG_DONE');
      const chunk = parseNetlinkDump(buf.subarray(0, n), seq);
      qdiscs.push(...chunk.qdiscs);
      if (chunk.errno !== undefined) throw syscallError('RTM_GETQDISC', chunk.errno, 'reported by the kernel');
      if (chunk.malformed) throw new Error(`RTM_GETQDISC: malformed reply: ${chunk.malformed}`);
      if (chunk.done) return qdiscs;
    }
    throw new Error(`RTM_GETQDISC: no NLMSG_DONE after ${MAX_READS} reads`);
  } finally {
    c.close(fd);
  }
}
