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
 * never read out of bounds, never throw and always terminate (the walk of
 * ./message.ts); a malformed message stops the parse and is reported in
 * `malformed`. The socket and its receive loop are ./socket.ts.
 */
import { NETLINK_ROUTE } from '../constants.js';
import { LE, NLM_F_DUMP, NLM_F_REQUEST, cString, nlmsg, parseDump, walkAttrs, type NlMsgView } from './message.js';
import { NetlinkSocket } from './socket.js';

// rtnetlink.h
export const RTM_NEWQDISC = 36;
export const RTM_GETQDISC = 38;
export const SIZEOF_TCMSG = 20;
/** TCA_KIND: the qdisc's name, a NUL-terminated string ("fq", "pfifo_fast", ...). */
export const TCA_KIND = 1;
// pkt_sched.h
/** tcm_parent of a root qdisc. */
export const TC_H_ROOT = 0xffffffff;
/** tcm_parent of the ingress/clsact qdisc. */
export const TC_H_INGRESS = 0xfffffff1;
/** Major part of a handle ("8001:" of 8001:1). */
export const tcMajor = (h: number): number => (h & 0xffff0000) >>> 0;

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

/** One RTM_NEWQDISC: tcmsg, then rtattrs up to the end of the message. */
function decodeQdisc(buf: Uint8Array, v: DataView, m: NlMsgView): QdiscInfo | string {
  if (m.end - m.body < SIZEOF_TCMSG) return `RTM_NEWQDISC of ${m.len} bytes is shorter than nlmsghdr + tcmsg`;
  const q: QdiscInfo = {
    ifindex: v.getInt32(m.body + 4, LE),
    handle: v.getUint32(m.body + 8, LE),
    parent: v.getUint32(m.body + 12, LE),
    kind: '',
  };
  const malformed = walkAttrs(buf, v, m.body + SIZEOF_TCMSG, m.end, 'rtattr', (type, value) => {
    if (type === TCA_KIND) q.kind = cString(value);
  });
  return malformed ?? q;
}

const parseQdiscChunk = (buf: Uint8Array, seq?: number) => parseDump(buf, seq, RTM_NEWQDISC, decodeQdisc);

/**
 * Parses one read's worth of netlink messages. Messages of another `seq`
 * (when given) and types other than RTM_NEWQDISC / DONE / ERROR are skipped.
 * Parsing stops at NLMSG_DONE, an error, or the first malformed message;
 * the qdiscs before it are kept, the malformed one is not.
 */
export function parseNetlinkDump(buf: Uint8Array, seq?: number): DumpChunk {
  const { items, ...rest } = parseQdiscChunk(buf, seq);
  return { qdiscs: items, ...rest };
}

/** Only the qdiscs of a dump buffer (see `parseNetlinkDump` for DONE/errors/malformed). Never throws. */
export function parseQdiscDump(buf: Uint8Array): QdiscInfo[] {
  return parseQdiscChunk(buf).items;
}

/** Builds the request: nlmsghdr + a zeroed tcmsg (AF_UNSPEC, ifindex 0: all interfaces). */
export function qdiscDumpRequest(seq: number): Uint8Array {
  return nlmsg(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, seq, new Uint8Array(SIZEOF_TCMSG));
}

/**
 * Dumps the qdiscs of the caller's network namespace. Throws SyscallError
 * (socket, setsockopt, write, recv, or "RTM_GETQDISC" for a kernel-reported
 * error) naming the call and errno, or an Error for a malformed reply.
 */
export function dumpQdiscs(): QdiscInfo[] {
  const sock = NetlinkSocket.open(NETLINK_ROUTE);
  try {
    const seq = sock.nextSeq();
    return sock.dump(qdiscDumpRequest(seq), seq, 'RTM_GETQDISC', parseQdiscChunk);
  } finally {
    sock.close();
  }
}
