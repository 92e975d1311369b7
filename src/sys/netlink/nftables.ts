/**
 * nf_tables over NETLINK_NETFILTER: the message types, attributes and
 * expression encodings Sluice uses, from include/uapi/linux/netfilter/
 * nf_tables.h and nfnetlink.h, with the attribute order nft(8) itself sends
 * (checked against `nft --debug=netlink,mnl`, see test/unit/nftables-wire.test.ts).
 * Pure encoders; the socket is src/sys/netlink/socket.ts.
 *
 * Every nf_tables message is nlmsghdr + nfgenmsg {u8 family; u8 version;
 * be16 res_id} + attributes. Changes go in a batch: NFNL_MSG_BATCH_BEGIN,
 * the messages, NFNL_MSG_BATCH_END, in one write; the kernel applies the
 * whole batch or nothing. Integer attributes are big endian; register
 * contents (cmp/immediate data) are the packet's bytes as they are, and
 * host-order for meta values such as the mark.
 */
import { NLM_F_REQUEST, attr, be16, be32, be32s, nest, nlmsg, strz, type NlAttr } from './message.js';

export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;
export const NFNETLINK_V0 = 0;

export const NFT_MSG_NEWTABLE = 0;
export const NFT_MSG_DELTABLE = 2;
export const NFT_MSG_NEWCHAIN = 3;
export const NFT_MSG_NEWRULE = 6;
/** nlmsg_type of an nf_tables message. */
export const nftType = (msg: number): number => (NFNL_SUBSYS_NFTABLES << 8) | msg;

export const NFPROTO_UNSPEC = 0;
export const NFPROTO_INET = 1;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;

export const NFTA_TABLE_NAME = 1;
export const NFTA_TABLE_FLAGS = 2;
/** Table flag (Linux 5.12): the table belongs to the netlink socket that created it and is destroyed when that socket closes. */
export const NFT_TABLE_F_OWNER = 0x2;

export const NFTA_CHAIN_TABLE = 1;
export const NFTA_CHAIN_NAME = 3;
export const NFTA_CHAIN_HOOK = 4;
export const NFTA_CHAIN_POLICY = 5;
export const NFTA_CHAIN_TYPE = 7;
export const NFTA_HOOK_HOOKNUM = 1;
export const NFTA_HOOK_PRIORITY = 2;
export const NF_INET_PRE_ROUTING = 0;
export const NF_INET_LOCAL_OUT = 3;

export const NFTA_RULE_TABLE = 1;
export const NFTA_RULE_CHAIN = 2;
export const NFTA_RULE_EXPRESSIONS = 4;
export const NFTA_LIST_ELEM = 1;
export const NFTA_EXPR_NAME = 1;
export const NFTA_EXPR_DATA = 2;

export const NFT_REG_VERDICT = 0;
/** The first 16-byte data register (what nft uses for single loads). */
export const NFT_REG_1 = 1;

export const NF_DROP = 0;
export const NF_ACCEPT = 1;

export const NFT_META_MARK = 3;
export const NFT_META_NFPROTO = 15;
export const NFT_META_L4PROTO = 16;
export const NFT_PAYLOAD_NETWORK_HEADER = 1;
export const NFT_PAYLOAD_TRANSPORT_HEADER = 2;
export const NFT_CMP_EQ = 0;
export const NFT_CMP_LTE = 3;
export const NFT_CMP_GTE = 5;
export const NFT_FIB_RESULT_ADDRTYPE = 3;
export const NFTA_FIB_F_DADDR = 1 << 1;
/** rtm_type of a local address (what `fib daddr type local` compares with). */
export const RTN_LOCAL = 2;
/** nf_nat_range flag: the redirect carries a port. */
export const NF_NAT_RANGE_PROTO_SPECIFIED = 0x2;

// ---------------------------------------------------------------------------
// Messages

function nfgenmsg(family: number, resId = 0): Uint8Array {
  const b = new Uint8Array(4);
  b[0] = family;
  b[1] = NFNETLINK_V0;
  b.set(be16(resId), 2);
  return b;
}

/** BEGIN/END framing; res_id names the subsystem the batch is for. */
export const batchBegin = (seq: number): Uint8Array => nlmsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, nfgenmsg(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES));
export const batchEnd = (seq: number): Uint8Array => nlmsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, nfgenmsg(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES));

export function newTable(seq: number, flags: number, family: number, name: string, tableFlags: number): Uint8Array {
  return nlmsg(nftType(NFT_MSG_NEWTABLE), flags, seq, nfgenmsg(family), [attr(NFTA_TABLE_NAME, strz(name)), attr(NFTA_TABLE_FLAGS, be32(tableFlags))]);
}

export function delTable(seq: number, flags: number, family: number, name: string): Uint8Array {
  return nlmsg(nftType(NFT_MSG_DELTABLE), flags, seq, nfgenmsg(family), [attr(NFTA_TABLE_NAME, strz(name))]);
}

export interface BaseChainSpec {
  readonly table: string;
  readonly name: string;
  readonly hook: number;
  readonly priority: number;
  /** "filter", "nat" or "route". */
  readonly type: string;
}

export function newBaseChain(seq: number, flags: number, family: number, c: BaseChainSpec): Uint8Array {
  return nlmsg(nftType(NFT_MSG_NEWCHAIN), flags, seq, nfgenmsg(family), [
    attr(NFTA_CHAIN_TABLE, strz(c.table)),
    attr(NFTA_CHAIN_NAME, strz(c.name)),
    nest(NFTA_CHAIN_HOOK, attr(NFTA_HOOK_HOOKNUM, be32(c.hook)), attr(NFTA_HOOK_PRIORITY, be32s(c.priority))),
    attr(NFTA_CHAIN_POLICY, be32(NF_ACCEPT)),
    attr(NFTA_CHAIN_TYPE, strz(c.type)),
  ]);
}

export function newRule(seq: number, flags: number, family: number, table: string, chain: string, exprs: readonly Expr[]): Uint8Array {
  return nlmsg(nftType(NFT_MSG_NEWRULE), flags, seq, nfgenmsg(family), [
    attr(NFTA_RULE_TABLE, strz(table)),
    attr(NFTA_RULE_CHAIN, strz(chain)),
    nest(NFTA_RULE_EXPRESSIONS, ...exprs.map(exprAttr)),
  ]);
}

// ---------------------------------------------------------------------------
// Expressions (each is the content of one NFTA_LIST_ELEM)

/** An expression as the two attributes NFTA_LIST_ELEM carries. */
export interface Expr {
  readonly name: string;
  readonly data: readonly NlAttr[];
}

export function exprAttr(e: Expr): NlAttr {
  return nest(NFTA_LIST_ELEM, attr(NFTA_EXPR_NAME, strz(e.name)), nest(NFTA_EXPR_DATA, ...e.data));
}

/** meta load KEY => reg. */
export const metaLoad = (key: number, dreg = NFT_REG_1): Expr => ({ name: 'meta', data: [attr(2, be32(key)), attr(1, be32(dreg))] });
/** meta set KEY with reg. */
export const metaSet = (key: number, sreg = NFT_REG_1): Expr => ({ name: 'meta', data: [attr(2, be32(key)), attr(3, be32(sreg))] });
/** payload load LEN bytes @ BASE + OFFSET => reg. */
export const payloadLoad = (base: number, offset: number, len: number, dreg = NFT_REG_1): Expr => ({
  name: 'payload',
  data: [attr(1, be32(dreg)), attr(2, be32(base)), attr(3, be32(offset)), attr(4, be32(len))],
});
/** cmp OP reg DATA (NFTA_DATA_VALUE = 1 inside NFTA_CMP_DATA). */
export const cmp = (op: number, data: Uint8Array, sreg = NFT_REG_1): Expr => ({
  name: 'cmp',
  data: [attr(1, be32(sreg)), attr(2, be32(op)), nest(3, attr(1, data))],
});
/** reg = (reg & MASK) ^ XOR over `mask.length` bytes. */
export const bitwise = (mask: Uint8Array, xor: Uint8Array, reg = NFT_REG_1): Expr => ({
  name: 'bitwise',
  data: [attr(1, be32(reg)), attr(2, be32(reg)), attr(3, be32(mask.length)), nest(4, attr(1, mask)), nest(5, attr(1, xor))],
});
/** immediate reg DATA. */
export const immediateData = (data: Uint8Array, dreg = NFT_REG_1): Expr => ({ name: 'immediate', data: [attr(1, be32(dreg)), nest(2, attr(1, data))] });
/** immediate reg 0 VERDICT (NFTA_DATA_VERDICT = 2, NFTA_VERDICT_CODE = 1). */
export const verdict = (code: number): Expr => ({
  name: 'immediate',
  data: [attr(1, be32(NFT_REG_VERDICT)), nest(2, nest(2, attr(1, be32s(code))))],
});
/** redir to this host, keeping the packet's ports/ids (no attributes: `redirect` in nft). Terminal. */
export const redirLocal = (): Expr => ({ name: 'redir', data: [] });
/** redir to the port in reg (NFTA_REDIR_REG_PROTO_MIN = 1, NFTA_REDIR_FLAGS = 3). Terminal: sets the verdict itself. */
export const redirPort = (reg = NFT_REG_1): Expr => ({ name: 'redir', data: [attr(1, be32(reg)), attr(3, be32(NF_NAT_RANGE_PROTO_SPECIFIED))] });
/**
 * tproxy to the port in reg, family UNSPEC (the packet's own: one rule for
 * IPv4 and IPv6 in an inet table). NFTA_TPROXY_FAMILY = 1, REG_PORT = 3.
 * Not terminal: on success the rule continues (mark, accept); with no
 * transparent socket on the port it ends the rule (NFT_BREAK).
 */
export const tproxyPort = (reg = NFT_REG_1): Expr => ({ name: 'tproxy', data: [attr(1, be32(NFPROTO_UNSPEC)), attr(3, be32(reg))] });
/** fib daddr type => reg (NFTA_FIB_DREG 1, RESULT 2, FLAGS 3). */
export const fibDaddrType = (dreg = NFT_REG_1): Expr => ({
  name: 'fib',
  // nft's order: flags, result, dreg.
  data: [attr(3, be32(NFTA_FIB_F_DADDR)), attr(2, be32(NFT_FIB_RESULT_ADDRTYPE)), attr(1, be32(dreg))],
});
