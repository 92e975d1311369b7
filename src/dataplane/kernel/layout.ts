/**
 * The kernel tier's map layout, mirrored from bpf/sluice.c, and the pure
 * encoders that turn a flow plan into map keys and values. A policy becomes
 * map entries here and nowhere else; test/kernel/layout.test.ts checks these
 * sizes against the map definitions in the committed object.
 *
 * Addresses are 16 bytes everywhere, IPv4 written as ::ffff:a.b.c.d, so one
 * key shape serves both families. Ports and addresses are in network order
 * (the program compares and writes them as they are on the wire).
 */
import { isIPv4 } from 'node:net';
import { ipv6Bytes, ipv4ToInt, isMulticastAddress } from '../../wire/ip-address.js';
import { isWildcard, type Endpoint } from '../../wire/endpoint.js';
import type { SourceFilter } from '../../policy/source-filter.js';
import type { PayloadFormat } from '../../wire/payload-format.js';

/** Subscribers per flow copied in the kernel (more are spilled to the batched tier). */
export const MAX_SUBS = 512;
/** Subscribers per program run; a longer list continues through tail calls. */
export const CHUNK = 32;
export const MAX_FLOWS = 1024;
export const MAX_DESTS = 16384;
export const MAX_ALLOW = 16384;
export const MAX_LOCAL = 1024;
export const MAX_IFACES = 4096;
/** skb->mark of the program's copies (SLUICE_MARK): the spill socket takes only these. */
export const SLUICE_MARK = 0x51ce0001;

export const FLOW_KEY_SIZE = 20;
export const SUB_SIZE = 24;
export const FLOW_VALUE_HEADER = 40;
export const FLOW_VALUE_SIZE = FLOW_VALUE_HEADER + SUB_SIZE * MAX_SUBS;
export const ALLOW_KEY_SIZE = 24;
/** struct hop: per-CPU next-hop cache entry, by destination slot. */
export const HOP_SIZE = 64;

export const FLAG = { anySource: 1, mpegts: 2, spill: 4, srcWildcard: 8, rtp: 16, group: 32 } as const;

/** Copies per program run when a list at ingress goes on through the input queue (SLUICE_RUN; counter `resumed`). */
export const RESUME_RUN = 8;

/** struct flow_counters, u64 each, in order. */
export const FLOW_COUNTERS = [
  'packetsIn',
  'bytesIn',
  'packetsOut',
  'bytesOut',
  'sourceNotAllowed',
  'malformed',
  'tooLarge',
  'sendError',
  'toStackPackets',
  'toStackBytes',
  'puntFragment',
  'puntIpOptions',
  'puntGso',
  'puntNoNeighbour',
  'spilled',
  'spillError',
  // Punted for the stack's own checks, which drop or trim such datagrams:
  'puntLength',
  'puntChecksum',
  'puntSource',
  'puntOtherHost',
  // A long list's packet sent back through its interface's input queue between chunks (bpf/sluice.c, yield_to_backlog).
  'resumed',
] as const;
export type FlowCounterName = (typeof FLOW_COUNTERS)[number];
export const FLOW_COUNTERS_SIZE = FLOW_COUNTERS.length * 8;

/** struct dest_counters. */
export const DEST_COUNTERS = ['packetsOut', 'bytesOut', 'sendError', 'lastErrno'] as const;
export const DEST_COUNTERS_SIZE = DEST_COUNTERS.length * 8;

/** struct ifcfg: per hooked interface, what the stack's source checks depend on. */
export const IFCFG_SIZE = 4;
export const IF_FLAG = {
  /** The interface has an IPv4 address (loose rp_filter needs one to accept a source routed elsewhere). */
  hasV4: 1,
  /** src_valid_mark, or enslaved to a bridge, bond or VRF: the program leaves source checks to the stack. */
  unsure: 2,
} as const;

export interface InterfaceConfig {
  /** Effective rp_filter: max(conf/all, conf/<dev>); 0 off, 1 strict, 2 loose. */
  readonly rpFilter: number;
  readonly hasV4: boolean;
  readonly unsure: boolean;
}

/** Key of an array map entry (flow_stats, dest_stats, hops): the slot, u32 in host (little-endian) order. */
export function slotKey(slot: number): Uint8Array {
  const k = new Uint8Array(4);
  new DataView(k.buffer).setUint32(0, slot, true);
  return k;
}

export function ifcfgKey(ifindex: number): Uint8Array {
  const k = new Uint8Array(4);
  new DataView(k.buffer).setUint32(0, ifindex, true);
  return k;
}

export function ifcfgValue(c: InterfaceConfig): Uint8Array {
  const v = new Uint8Array(IFCFG_SIZE);
  v[0] = Math.min(2, Math.max(0, c.rpFilter));
  v[1] = (c.hasV4 ? IF_FLAG.hasV4 : 0) | (c.unsure ? IF_FLAG.unsure : 0);
  return v;
}

/** 16-byte form of an address: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
export function addr16(address: string): Uint8Array {
  const out = new Uint8Array(16);
  if (isIPv4(address)) {
    out[10] = 0xff;
    out[11] = 0xff;
    new DataView(out.buffer).setUint32(12, ipv4ToInt(address));
  } else {
    out.set(ipv6Bytes(address.replace(/%.*$/, '')));
  }
  return out;
}

export function flowKey(listen: Endpoint): Uint8Array {
  const k = new Uint8Array(FLOW_KEY_SIZE);
  k.set(addr16(listen.address), 0);
  new DataView(k.buffer).setUint16(16, listen.port);
  return k;
}

export interface KernelSub {
  readonly endpoint: Endpoint;
  readonly destSlot: number;
  /**
   * Index in the flow's subscriber array. Stable for the subscriber's
   * lifetime (a removal leaves a hole, an addition fills the first one):
   * a packet handled across several program runs while the list changes
   * must not skip or repeat anyone else.
   */
  readonly pos: number;
  /** One of this host's addresses: the copy goes up through lo. */
  readonly local: boolean;
}

export interface FlowValueInput {
  readonly slot: number;
  readonly listen: Endpoint;
  readonly sources: SourceFilter;
  readonly maxDatagramSize: number;
  readonly payload: PayloadFormat;
  /** In-kernel subscribers, positions below MAX_SUBS, same family as listen. */
  readonly subs: readonly KernelSub[];
  /** Port of the spill socket, or 0 when every subscriber is in the kernel. */
  readonly spillPort: number;
  readonly generation: number;
  /** A group listen: the interface it was joined on (0 or absent: unknown, the program leaves the group to the stack). */
  readonly groupIfindex?: number;
}

export function flowValue(input: FlowValueInput): Uint8Array {
  const used = input.subs.reduce((n, s) => Math.max(n, s.pos + 1), 0);
  if (used > MAX_SUBS) throw new RangeError(`in-kernel subscriber positions must be below ${MAX_SUBS}`);
  const b = new Uint8Array(FLOW_VALUE_SIZE);
  const v = new DataView(b.buffer);
  let flags = 0;
  if (input.sources.any) flags |= FLAG.anySource;
  if (input.payload === 'mpegts') flags |= FLAG.mpegts;
  if (input.payload === 'rtp' || input.payload === 'rtp-mpegts') flags |= FLAG.rtp;
  if (input.spillPort) flags |= FLAG.spill;
  const group = isMulticastAddress(input.listen.address);
  // Copies of a group's datagrams leave from the outgoing interface's address, as from a wildcard.
  if (isWildcard(input.listen) || group) flags |= FLAG.srcWildcard;
  if (group) flags |= FLAG.group;
  v.setUint32(0, input.slot, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, input.maxDatagramSize, true);
  v.setUint16(12, used, true);
  v.setUint16(14, input.spillPort);
  if (!isWildcard(input.listen) && !group) b.set(addr16(input.listen.address), 16);
  v.setUint16(32, input.listen.port);
  const ifindex = input.groupIfindex ?? 0;
  // in_ifindex is 16 bits: an interface numbered beyond leaves the group to the stack.
  if (group && ifindex > 0 && ifindex <= 0xffff) v.setUint16(34, ifindex, true);
  v.setUint32(36, input.generation, true);
  input.subs.forEach((s) => {
    if (s.endpoint.port === 0) throw new RangeError('port 0 marks a hole: not a subscriber');
    const o = FLOW_VALUE_HEADER + s.pos * SUB_SIZE;
    b.set(addr16(s.endpoint.address), o);
    v.setUint16(o + 16, s.endpoint.port);
    v.setUint16(o + 18, s.local ? 1 : 0, true);
    v.setUint32(o + 20, s.destSlot, true);
  });
  return b;
}

/** What a pinned flow entry holds, for adoption after a restart. */
export interface DecodedFlowValue {
  readonly slot: number;
  readonly flags: number;
  readonly generation: number;
  readonly subs: readonly { readonly addr: Uint8Array; readonly port: number; readonly destSlot: number; readonly pos: number }[];
}

export function decodeFlowValue(b: Uint8Array): DecodedFlowValue {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = Math.min(v.getUint16(12, true), MAX_SUBS);
  const subs = [];
  for (let pos = 0; pos < n; pos++) {
    const o = FLOW_VALUE_HEADER + pos * SUB_SIZE;
    const port = v.getUint16(o + 16);
    if (port !== 0) subs.push({ addr: b.slice(o, o + 16), port, destSlot: v.getUint32(o + 20, true), pos });
  }
  return { slot: v.getUint32(0, true), flags: v.getUint32(4, true), generation: v.getUint32(36, true), subs };
}

/** LPM-trie keys of a flow's allow list (empty for `any`). */
export function allowKeys(slot: number, sources: SourceFilter): Uint8Array[] {
  if (sources.any) return [];
  return sources.rules.map((r) => {
    const k = new Uint8Array(ALLOW_KEY_SIZE);
    const v = new DataView(k.buffer);
    const bits = r.family === 4 ? 96 + r.prefix : r.prefix;
    v.setUint32(0, 32 + bits, true);
    v.setUint32(4, slot); // big-endian: the trie matches bytes in order
    k.set(addr16(r.address), 8);
    return k;
  });
}

/** Sums a per-CPU counter array value (one `size`-byte struct per CPU, 8-aligned). */
export function sumPerCpu<N extends string>(value: Uint8Array, names: readonly N[], cpus: number): Record<N, number> {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const size = names.length * 8;
  const out = {} as Record<N, number>;
  for (let i = 0; i < names.length; i++) {
    let total = 0;
    // Two 32-bit halves: no BigInt per read (exact below 2^53, as Number() of a u64 is anyway).
    for (let c = 0; c < cpus; c++) total += u64At(v, c * size + i * 8);
    out[names[i]!] = total;
  }
  return out;
}

/** Per-CPU `lastErrno`: the largest non-zero value wins (any CPU's latest error). */
export function lastErrno(value: Uint8Array, cpus: number): number {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  let e = 0;
  for (let c = 0; c < cpus; c++) e = Math.max(e, u64At(v, c * DEST_COUNTERS_SIZE + 24));
  return e;
}

/** A little-endian u64 as a number. */
function u64At(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;
}
