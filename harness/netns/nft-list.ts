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
 * always terminates (the message walk of src/sys/netlink/message.ts). The
 * socket and its receive loop are src/sys/netlink/socket.ts.
 */
import { NETLINK_NETFILTER } from '../../src/sys/constants.js';
import { NLM_F_DUMP, NLM_F_REQUEST, cString, nlmsg, parseDump, walkAttrs, type NlMsgView } from '../../src/sys/netlink/message.js';
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
import { NetlinkSocket } from '../../src/sys/netlink/socket.js';

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

/** One NFT_MSG_NEWTABLE: nfgenmsg, then attributes (integers big endian) up to the end of the message. */
function decodeTable(buf: Uint8Array, v: DataView, m: NlMsgView): NftTableInfo | string {
  if (m.end - m.body < SIZEOF_NFGENMSG) return `NFT_MSG_NEWTABLE of ${m.len} bytes is shorter than nlmsghdr + nfgenmsg`;
  const familyNo = buf[m.body]!;
  const t: NftTableInfo = { family: FAMILY_NAMES[familyNo] ?? `family ${familyNo}`, name: '', flags: 0 };
  const malformed = walkAttrs(buf, v, m.body + SIZEOF_NFGENMSG, m.end, 'attribute', (type, value) => {
    // Short integer attributes are ignored rather than read past.
    const u32 = value.byteLength >= 4 ? new DataView(value.buffer, value.byteOffset, 4).getUint32(0, false) : undefined;
    if (type === NFTA_TABLE_NAME) t.name = cString(value);
    else if (type === NFTA_TABLE_FLAGS && u32 !== undefined) t.flags = u32;
    else if (type === NFTA_TABLE_USE && u32 !== undefined) t.chains = u32;
    else if (type === NFTA_TABLE_OWNER && u32 !== undefined) t.owner = u32;
  });
  return malformed ?? t;
}

const parseTableChunk = (buf: Uint8Array, seq?: number) => parseDump(buf, seq, nftType(NFT_MSG_NEWTABLE), decodeTable);

/**
 * Parses one read of the dump. Messages of another `seq` (when given) and
 * other types are skipped; parsing stops at NLMSG_DONE, an error, or the
 * first malformed message (the tables before it are kept).
 */
export function parseNftTableDump(buf: Uint8Array, seq?: number): NftTableDumpChunk {
  const { items, ...rest } = parseTableChunk(buf, seq);
  return { tables: items, ...rest };
}

/**
 * Every nf_tables table of the caller's network namespace. Throws
 * SyscallError (socket, setsockopt, write, recv, or NFT_MSG_GETTABLE for a
 * kernel-reported error) naming the call and errno, or an Error for a
 * malformed reply. Needs no privilege beyond what reading the ruleset needs
 * (CAP_NET_ADMIN in the namespace's user namespace).
 */
export function listNftTables(): NftTableInfo[] {
  const sock = NetlinkSocket.open(NETLINK_NETFILTER, 'NETLINK_NETFILTER');
  try {
    const seq = sock.nextSeq();
    return sock.dump(nftTableDumpRequest(seq), seq, 'NFT_MSG_GETTABLE', parseTableChunk);
  } finally {
    sock.close();
  }
}

/** One line per table, as `nft list tables` would print it (plus chains/owner); '' when there is none. */
export function formatNftTables(tables: readonly NftTableInfo[]): string {
  return tables
    .map((t) => `table ${t.family} ${t.name}${t.chains !== undefined ? ` (${t.chains} chains)` : ''}${t.owner !== undefined ? ` owner ${t.owner}` : ''}`)
    .join('\n');
}
