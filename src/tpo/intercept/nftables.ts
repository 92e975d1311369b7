/**
 * The nf_tables rules of transparent interception (issue #7): which chains
 * and rules a flow table becomes, encoded as one nf_tables batch, and the
 * install/remove calls. Sluice owns exactly one table, `inet
 * sluice_tpo_<instance>`, so removal is one DELTABLE.
 *
 * Chains (created only when some entry needs them):
 *   pre_tcp  nat    prerouting  -100  TCP entries: redirect to the entry's listener port
 *   out_tcp  nat    output      -100  the same for connections the gateway host opens
 *   pre_udp  filter prerouting  -150  UDP entries: tproxy to the entry's port, set the
 *                                     tproxy mark (policy routing delivers it locally)
 *   out_udp  route  output      -150  UDP from the gateway host: set the tproxy mark, which
 *                                     reroutes the packet over lo into pre_udp
 *
 * First match wins: each chain holds one protocol's entries in table order
 * and each entry's rule ends with a terminal verdict (redirect, accept, or
 * the drop below), so a packet never reaches a later entry's rule once an
 * earlier entry matched, whatever port the later entry sends to. Entries of
 * different protocols can never match the same packet (the protocol is
 * part of every entry), so splitting them into per-protocol chains keeps
 * the table's order. TPROXY is the one non-terminal case: when no
 * transparent socket listens on the port it ends the rule and evaluation
 * would fall through to later entries, so each UDP entry gets a second
 * rule with the same match that drops: a flow the table assigns to Sluice
 * is never taken by a later entry nor forwarded uninspected.
 *
 * Self-exclusion: every chain starts with `meta mark == <own mark> accept`
 * (Sluice's own sockets carry SO_MARK: the transport to the peer, the
 * connections the destination gateway opens, UDP replies sent from the
 * original destination) and `fib daddr type local accept` (traffic to the
 * gateway host itself, such as the peer's transport datagrams arriving, is
 * not "routed through" and is never intercepted).
 */
import { isIP } from 'node:net';
import type { InterceptRule, PortRange } from '../config/intercept-rules.js';
import type { SourceRule } from '../../policy/source-filter.js';
import { ipv4ToInt, ipv6Bytes } from '../../wire/ip-address.js';
import { concatBytes, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, be16, ne32, u8 } from '../../sys/netlink/message.js';
import {
  NFPROTO_INET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFT_CMP_EQ,
  NFT_CMP_GTE,
  NFT_CMP_LTE,
  NFT_META_L4PROTO,
  NFT_META_MARK,
  NFT_META_NFPROTO,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_TABLE_F_OWNER,
  NF_ACCEPT,
  NF_DROP,
  NF_INET_LOCAL_OUT,
  NF_INET_PRE_ROUTING,
  RTN_LOCAL,
  batchBegin,
  batchEnd,
  bitwise,
  cmp,
  delTable,
  fibDaddrType,
  immediateData,
  metaLoad,
  metaSet,
  newBaseChain,
  newRule,
  newTable,
  payloadLoad,
  redirLocal,
  redirPort,
  tproxyPort,
  verdict,
  type Expr,
} from '../../sys/netlink/nftables.js';
import type { PendingAck } from '../../sys/netlink/socket.js';

export const TABLE_PREFIX = 'sluice_tpo_';
const INSTANCE = /^[a-z0-9_]{1,32}$/;

/** The table of an instance; throws on a name nf_tables or our prefix scheme would not take. */
export function tableName(instance: string): string {
  if (!INSTANCE.test(instance)) throw new RangeError(`instance '${instance}' must be 1-32 characters of [a-z0-9_]`);
  return `${TABLE_PREFIX}${instance}`;
}

export interface RulePlanOptions {
  readonly table: string;
  readonly hooks: { readonly prerouting: boolean; readonly output: boolean };
  /** SO_MARK of Sluice's own sockets: packets carrying it are never intercepted. */
  readonly ownMark: number;
  /** Mark TPROXY'd (and output-rerouted) UDP gets; the fwmark of the policy-routing rule. */
  readonly tproxyMark: number;
  /** Listener port of each TCP/UDP entry, by entry index. */
  readonly ports: ReadonlyMap<number, number>;
  /** ICMP entries: answer their echo requests from this host (redirect), or leave them out. */
  readonly icmp?: 'answer' | 'skip';
}

export interface ChainPlan {
  readonly name: 'pre_tcp' | 'out_tcp' | 'pre_udp' | 'out_udp' | 'pre_icmp';
  readonly type: 'nat' | 'filter' | 'route';
  readonly hook: number;
  readonly priority: number;
  /** Each rule's expressions, and a human label for errors. */
  readonly rules: readonly { readonly label: string; readonly exprs: readonly Expr[] }[];
}

const PROTO = { tcp: 6, udp: 17 } as const;

/** meta l4proto, prefixes, ports: the match part of an entry's rule. */
export function entryMatch(e: InterceptRule): Expr[] {
  if (e.protocol === 'icmp') throw new RangeError(`entry ${e.name}: ICMP has no transparent rule`);
  const out: Expr[] = [metaLoad(NFT_META_L4PROTO), cmp(NFT_CMP_EQ, u8(PROTO[e.protocol]))];
  const family = e.src?.family ?? e.dst?.family;
  if (family !== undefined) out.push(metaLoad(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, u8(family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6)));
  if (e.src) out.push(...prefixMatch(e.src, 'src'));
  if (e.dst) out.push(...prefixMatch(e.dst, 'dst'));
  if (e.srcPorts) out.push(...portMatch(e.srcPorts, 0));
  if (e.dstPorts) out.push(...portMatch(e.dstPorts, 2));
  return out;
}

function addressBytes(r: SourceRule): Uint8Array {
  if (r.family === 4) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, ipv4ToInt(r.address) >>> 0, false);
    return b;
  }
  return ipv6Bytes(r.address);
}

/**
 * Address prefix as nft encodes it: a byte-aligned prefix loads just its
 * bytes and compares; any other loads the whole address, masks and compares.
 */
export function prefixMatch(r: SourceRule, which: 'src' | 'dst'): Expr[] {
  if (isIP(r.address) !== r.family) throw new RangeError(`'${r.address}' is not an IPv${r.family} address`);
  const size = r.family === 4 ? 4 : 16;
  const offset = r.family === 4 ? (which === 'src' ? 12 : 16) : which === 'src' ? 8 : 24;
  if (r.prefix <= 0) return []; // /0: the nfproto check already says all there is
  const addr = addressBytes(r);
  if (r.prefix % 8 === 0) {
    const n = r.prefix / 8;
    return [payloadLoad(NFT_PAYLOAD_NETWORK_HEADER, offset, n), cmp(NFT_CMP_EQ, addr.subarray(0, n))];
  }
  const mask = new Uint8Array(size);
  for (let bit = 0; bit < r.prefix; bit++) mask[bit >> 3]! |= 0x80 >> (bit & 7);
  const masked = addr.map((b, i) => b & mask[i]!);
  return [payloadLoad(NFT_PAYLOAD_NETWORK_HEADER, offset, size), bitwise(mask, new Uint8Array(size)), cmp(NFT_CMP_EQ, masked)];
}

/** Port range at transport offset 0 (source) or 2 (destination); big-endian compares order numerically. */
export function portMatch(p: PortRange, offset: 0 | 2): Expr[] {
  if (p.lo === 0 && p.hi === 65535) return [];
  const load = payloadLoad(NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2);
  if (p.lo === p.hi) return [load, cmp(NFT_CMP_EQ, be16(p.lo))];
  return [load, cmp(NFT_CMP_GTE, be16(p.lo)), cmp(NFT_CMP_LTE, be16(p.hi))];
}

/**
 * An ICMP entry's echo requests, per family it can match (an entry
 * without prefixes matches both): meta l4proto icmp/icmpv6, the prefixes,
 * and the type byte (8 echo request, 128 for ICMPv6).
 */
export function icmpEchoMatches(e: InterceptRule): Expr[][] {
  const family = e.src?.family ?? e.dst?.family;
  const families: (4 | 6)[] = family ? [family] : [4, 6];
  return families.map((f) => [
    metaLoad(NFT_META_NFPROTO),
    cmp(NFT_CMP_EQ, u8(f === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6)),
    metaLoad(NFT_META_L4PROTO),
    cmp(NFT_CMP_EQ, u8(f === 4 ? 1 : 58)),
    ...(e.src ? prefixMatch(e.src, 'src') : []),
    ...(e.dst ? prefixMatch(e.dst, 'dst') : []),
    payloadLoad(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1),
    cmp(NFT_CMP_EQ, u8(f === 4 ? 8 : 128)),
  ]);
}

/** The two rules every chain starts with (see the module comment). */
function selfExclusion(ownMark: number): { label: string; exprs: Expr[] }[] {
  return [
    { label: 'skip own mark', exprs: [metaLoad(NFT_META_MARK), cmp(NFT_CMP_EQ, ne32(ownMark)), verdict(NF_ACCEPT)] },
    { label: 'skip local destinations', exprs: [fibDaddrType(), cmp(NFT_CMP_EQ, ne32(RTN_LOCAL)), verdict(NF_ACCEPT)] },
  ];
}

/** The chains and rules for `entries` (TCP and UDP only; ICMP entries are the caller's to refuse). */
export function planRules(entries: readonly InterceptRule[], o: RulePlanOptions): ChainPlan[] {
  if (o.ownMark === o.tproxyMark) throw new RangeError(`the own mark and the tproxy mark must differ (both ${o.ownMark})`);
  const port = (e: InterceptRule): number => {
    const p = o.ports.get(e.index);
    if (p === undefined || !(p > 0 && p < 65536)) throw new RangeError(`entry ${e.name}: no listener port`);
    return p;
  };
  const tcp = entries.filter((e) => e.protocol === 'tcp');
  const udp = entries.filter((e) => e.protocol === 'udp');
  const chains: ChainPlan[] = [];
  const redirectRules = tcp.map((e) => ({ label: `entry ${e.name}`, exprs: [...entryMatch(e), immediateData(be16(port(e))), redirPort()] }));
  if (tcp.length > 0 && o.hooks.prerouting)
    chains.push({ name: 'pre_tcp', type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100, rules: [...selfExclusion(o.ownMark), ...redirectRules] });
  if (tcp.length > 0 && o.hooks.output)
    chains.push({ name: 'out_tcp', type: 'nat', hook: NF_INET_LOCAL_OUT, priority: -100, rules: [...selfExclusion(o.ownMark), ...redirectRules] });
  if (udp.length > 0 && (o.hooks.prerouting || o.hooks.output)) {
    // With only the output hook, prerouting must still TPROXY the packets
    // out_udp rerouted over lo, and only those: they carry the tproxy mark.
    const onlyLooped = o.hooks.prerouting ? [] : [metaLoad(NFT_META_MARK), cmp(NFT_CMP_EQ, ne32(o.tproxyMark))];
    const rules = udp.flatMap((e) => {
      const match = [...onlyLooped, ...entryMatch(e)];
      return [
        {
          label: `entry ${e.name}`,
          exprs: [...match, immediateData(be16(port(e))), tproxyPort(), immediateData(ne32(o.tproxyMark)), metaSet(NFT_META_MARK), verdict(NF_ACCEPT)],
        },
        // Reached only when tproxy found no transparent socket on the port.
        { label: `entry ${e.name} (no listener: drop)`, exprs: [...match, verdict(NF_DROP)] },
      ];
    });
    chains.push({ name: 'pre_udp', type: 'filter', hook: NF_INET_PRE_ROUTING, priority: -150, rules: [...selfExclusion(o.ownMark), ...rules] });
  }
  const icmp = entries.filter((e) => e.protocol === 'icmp');
  if (icmp.length > 0 && o.icmp === 'answer' && o.hooks.prerouting) {
    // Echo requests routed through this host are redirected to it: the
    // kernel answers them, and conntrack's NAT makes the reply come from the
    // address the client pinged. The client sees the LAN round trip, as its
    // TCP does through the gateway.
    const rules = icmp.flatMap((e) => icmpEchoMatches(e).map((m) => ({ label: `entry ${e.name} (echo)`, exprs: [...m, redirLocal()] })));
    chains.push({ name: 'pre_icmp', type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100, rules: [...selfExclusion(o.ownMark), ...rules] });
  }
  if (udp.length > 0 && o.hooks.output) {
    const rules = udp.map((e) => ({
      label: `entry ${e.name}`,
      exprs: [...entryMatch(e), immediateData(ne32(o.tproxyMark)), metaSet(NFT_META_MARK), verdict(NF_ACCEPT)],
    }));
    chains.push({ name: 'out_udp', type: 'route', hook: NF_INET_LOCAL_OUT, priority: -150, rules: [...selfExclusion(o.ownMark), ...rules] });
  }
  return chains;
}

/** A batch ready to write, and the acknowledgements to wait for. */
export interface EncodedBatch {
  readonly bytes: Uint8Array;
  readonly pending: PendingAck[];
}

/**
 * NEWTABLE (owner flag: the kernel deletes the table when the creating
 * socket closes, so even a SIGKILLed Sluice leaves no rules), the chains,
 * the rules, in one batch. EXCL: a live instance of the same name makes
 * this fail (EEXIST) instead of silently sharing its table.
 */
export function encodeInstall(table: string, chains: readonly ChainPlan[], nextSeq: () => number): EncodedBatch {
  const parts: Uint8Array[] = [batchBegin(nextSeq())];
  const pending: PendingAck[] = [];
  const ack = NLM_F_REQUEST | NLM_F_ACK;
  const add = (what: string, make: (seq: number) => Uint8Array): void => {
    const seq = nextSeq();
    parts.push(make(seq));
    pending.push({ seq, what });
  };
  add(`NFT_MSG_NEWTABLE inet ${table}`, (s) => newTable(s, ack | NLM_F_CREATE | NLM_F_EXCL, NFPROTO_INET, table, NFT_TABLE_F_OWNER));
  for (const c of chains) {
    add(`NFT_MSG_NEWCHAIN ${table}/${c.name}`, (s) =>
      newBaseChain(s, ack | NLM_F_CREATE | NLM_F_EXCL, NFPROTO_INET, { table, name: c.name, hook: c.hook, priority: c.priority, type: c.type }),
    );
    c.rules.forEach((r, i) => {
      add(`NFT_MSG_NEWRULE ${table}/${c.name} #${i} (${r.label})`, (s) => newRule(s, ack | NLM_F_CREATE | NLM_F_APPEND, NFPROTO_INET, table, c.name, r.exprs));
    });
  }
  parts.push(batchEnd(nextSeq()));
  return { bytes: concatBytes(parts), pending };
}

/** One DELTABLE in a batch: removes the table with all its chains and rules. */
export function encodeDelete(table: string, nextSeq: () => number): EncodedBatch {
  const begin = batchBegin(nextSeq());
  const seq = nextSeq();
  const del = delTable(seq, NLM_F_REQUEST | NLM_F_ACK, NFPROTO_INET, table);
  return { bytes: concatBytes([begin, del, batchEnd(nextSeq())]), pending: [{ seq, what: `NFT_MSG_DELTABLE inet ${table}` }] };
}
