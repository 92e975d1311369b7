/**
 * Lists the nf_tables tables of the caller's network namespace (what
 * `nft list tables` prints), over NETLINK_NETFILTER: one NFT_MSG_GETTABLE
 * request with NLM_F_DUMP. Every chain, rule, set and flowtable lives in a
 * table, so "no table" is "empty ruleset". Lets the tests (and later
 * `sluice doctor`) see what interception left behind without the nft(8)
 * tool, which a fresh host does not have.
 *
 * Reply: NFT_MSG_NEWTABLE messages (nlmsghdr + nfgenmsg {u8 family; u8
 * version; be16 res_id} + attributes, integers big endian), possibly over
 * several reads (NLM_F_MULTI), ended by NLMSG_DONE. `parseNftTableDump` is
 * pure: whatever the bytes, it never reads out of bounds, never throws and
 * always terminates (each step consumes at least one 16-byte header).
 */
import { libc } from '../../src/sys/ffi.js';
import { EAGAIN, EINTR, syscallError } from '../../src/sys/errno.js';
import { AF_NETLINK, MSG_TRUNC, NETLINK_NETFILTER, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, SO_RCVTIMEO } from '../../src/sys/constants.js';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, NLM_F_DUMP, NLM_F_REQUEST, SIZEOF_NLMSGHDR } from '../../src/sys/netlink/rtnetlink.js';
import {
  NFNETLINK_V0,
  NFPROTO_INET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFPROTO_UNSPEC,
  NFTA_TABLE_FLAGS,
  NFTA_TABLE_NAME,
  NFT_MSG_NEWTABLE,
  nftType,
} from '../../src/sys/netlink/nftables.js';
import { nlmsg } from '../../src/sys/netlink/message.js';

/** NFT_MSG_GETTABLE (nf_tables.h). */
export const NFT_MSG_GETTABLE = 1;
/** Number of chains in the table (u32). */
export const NFTA_TABLE_USE = 3;
/** Netlink port id of the owning socket (u32), present with NFT_TABLE_F_OWNER. */
export const NFTA_TABLE_OWNER = 7;
const NFPROTO_ARP = 3;
const NFPROTO_NETDEV = 5;
const NFPROTO_BRIDGE = 7;
const SIZEOF_NFGENMSG = 4;
const NLA_TYPE_MASK = 0x3fff;
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const align4 = (n: number): number => (n + 3) & ~3;

/** nft(8)'s names of the nf_tables families. */
const FAMILY_NAMES: Record<number, string> = {
  [NFPROTO_INET]: 'inet',
  [NFPROTO_IPV4]: 'ip',
  [NFPROTO_ARP]: 'arp',
  [NFPROTO_NETDEV]: 'netdev',
  [NFPROTO_BRIDGE]: 'bridge',
  [NFPROTO_IPV6]: 'ip6',
};

export interface NftTableInfo {
  /** 'inet', 'ip', 'ip6', 'arp', 'bridge', 'netdev', or 'family <n>'. */
  family: string;
  name: string;
  /** NFTA_TABLE_FLAGS (NFT_TABLE_F_OWNER = 2, ...); 0 when absent. */
  flags: number;
  /** Chains in the table (NFTA_TABLE_USE); undefined when the kernel sent none. */
  chains?: number;
  /** Port id of the owning netlink socket (owner flag set); undefined otherwise. */
  owner?: number;
}

export interface NftTableDumpChunk {
  tables: NftTableInfo[];
  /** NLMSG_DONE seen: the dump is complete. */
  done: boolean;
  /** Positive errno from an NLMSG_ERROR or a negative NLMSG_DONE status. */
  errno?: number;
  /** Why the parse stopped before the end of the buffer; undefined when every byte parsed. */
  malformed?: string;
}

/** The request: nlmsghdr + nfgenmsg(AF_UNSPEC: every family), dump flag. */
export function nftTableDumpRequest(seq: number): Uint8Array {
  return nlmsg(nftType(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_DUMP, seq, Uint8Array.of(NFPROTO_UNSPEC, NFNETLINK_V0, 0, 0));
}

/**
 * Parses one read of the dump. Messages of another `seq` (when given) and
 * other types are skipped; parsing stops at NLMSG_DONE, an error, or the
 * first malformed message (the tables before it are kept).
 */
export function parseNftTableDump(buf: Uint8Array, seq?: number): NftTableDumpChunk {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: NftTableDumpChunk = { tables: [], done: false };
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
    off += Math.min(align4(len), left);
    if (seq !== undefined && msgSeq !== seq) continue;
    if (type === NLMSG_DONE) {
      const status = end - body >= 4 ? v.getInt32(body, LE) : 0;
      return status < 0 ? { ...out, done: true, errno: -status } : { ...out, done: true };
    }
    if (type === NLMSG_ERROR) {
      if (end - body < 4) return { ...out, malformed: `NLMSG_ERROR of ${len} bytes has no error code` };
      const error = v.getInt32(body, LE);
      if (error === 0) continue;
      return { ...out, errno: -error };
    }
    if (type === NLMSG_OVERRUN) return { ...out, malformed: 'NLMSG_OVERRUN: the kernel dropped part of the reply' };
    if (type !== nftType(NFT_MSG_NEWTABLE)) continue;
    if (end - body < SIZEOF_NFGENMSG) return { ...out, malformed: `NFT_MSG_NEWTABLE of ${len} bytes is shorter than nlmsghdr + nfgenmsg` };
    const familyNo = buf[body]!;
    const t: NftTableInfo = { family: FAMILY_NAMES[familyNo] ?? `family ${familyNo}`, name: '', flags: 0 };
    let a = body + SIZEOF_NFGENMSG;
    while (end - a >= 4) {
      const alen = v.getUint16(a, LE);
      const atype = v.getUint16(a + 2, LE) & NLA_TYPE_MASK;
      if (alen < 4 || alen > end - a) return { ...out, malformed: `attribute of length ${alen} at byte ${a} does not fit its message (${end - a} bytes left)` };
      const value = buf.subarray(a + 4, a + alen);
      const u32 = value.byteLength >= 4 ? new DataView(value.buffer, value.byteOffset, 4).getUint32(0, false) : undefined;
      if (atype === NFTA_TABLE_NAME) t.name = cString(value);
      else if (atype === NFTA_TABLE_FLAGS && u32 !== undefined) t.flags = u32;
      else if (atype === NFTA_TABLE_USE && u32 !== undefined) t.chains = u32;
      else if (atype === NFTA_TABLE_OWNER && u32 !== undefined) t.owner = u32;
      a += Math.min(align4(alen), end - a);
    }
    out.tables.push(t);
  }
  return out;
}

function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
}

const RECV_BUFFER = 64 * 1024;
const MAX_READS = 4096;
const RECV_TIMEOUT_S = 2;

/**
 * Every nf_tables table of the caller's network namespace. Throws
 * SyscallError (socket, setsockopt, write, recv, or NFT_MSG_GETTABLE for a
 * kernel-reported error) naming the call and errno, or an Error for a
 * malformed reply. Needs no privilege beyond what reading the ruleset needs
 * (CAP_NET_ADMIN in the namespace's user namespace).
 */
export function listNftTables(): NftTableInfo[] {
  const c = libc();
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) throw syscallError('socket(AF_NETLINK, NETLINK_NETFILTER)', c.errno());
  try {
    // Bounds every read, so a silent kernel cannot hang the caller.
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new BigInt64Array([BigInt(RECV_TIMEOUT_S), 0n]), 16) < 0) {
      throw syscallError('setsockopt(SO_RCVTIMEO)', c.errno());
    }
    const seq = Date.now() >>> 0 || 1;
    const req = nftTableDumpRequest(seq);
    if (c.write(fd, req, req.byteLength) !== req.byteLength) throw syscallError('write(NFT_MSG_GETTABLE)', c.errno());
    const buf = new Uint8Array(RECV_BUFFER);
    const tables: NftTableInfo[] = [];
    for (let reads = 0; reads < MAX_READS; reads++) {
      const n = Number(c.recv(fd, buf, buf.byteLength, MSG_TRUNC));
      if (n < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        throw syscallError('recv(NFT_MSG_GETTABLE)', e, e === EAGAIN ? `no NLMSG_DONE within ${RECV_TIMEOUT_S} s` : undefined);
      }
      if (n > buf.byteLength) throw new Error(`NFT_MSG_GETTABLE reply of ${n} bytes exceeds the ${buf.byteLength}-byte buffer`);
      if (n === 0) throw new Error('NFT_MSG_GETTABLE: netlink socket returned end of file before NLMSG_DONE');
      const chunk = parseNftTableDump(buf.subarray(0, n), seq);
      tables.push(...chunk.tables);
      if (chunk.errno !== undefined) throw syscallError('NFT_MSG_GETTABLE', chunk.errno, 'reported by the kernel');
      if (chunk.malformed) throw new Error(`NFT_MSG_GETTABLE: malformed reply: ${chunk.malformed}`);
      if (chunk.done) return tables;
    }
    throw new Error(`NFT_MSG_GETTABLE: no NLMSG_DONE after ${MAX_READS} reads`);
  } finally {
    c.close(fd);
  }
}

/** One line per table, as `nft list tables` would print it (plus chains/owner); '' when there is none. */
export function formatNftTables(tables: readonly NftTableInfo[]): string {
  return tables
    .map((t) => `table ${t.family} ${t.name}${t.chains !== undefined ? ` (${t.chains} chains)` : ''}${t.owner !== undefined ? ` owner ${t.owner}` : ''}`)
    .join('\n');
}
