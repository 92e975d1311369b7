/**
 * Multicast socket options through setsockopt: group joins (any-source and
 * source-specific, with the protocol-independent MCAST_JOIN_GROUP /
 * MCAST_JOIN_SOURCE_GROUP, which take an interface index and a
 * sockaddr_storage for both families, so one encoder serves IPv4 and
 * IPv6), and the output settings (TTL / hop limit, interface, loopback).
 * Every failing call throws a SyscallError naming the option, errno and
 * the group or interface.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import { SOL_IP, SOL_IPV6 } from './constants.js';
import { writeSockaddr } from './sockaddr.js';
import { canonicalAddress } from '../wire/endpoint.js';
import { SyscallError } from '../errors.js';

/** linux/in.h, the same numbers at SOL_IP and SOL_IPV6 (MCAST_*). */
export const IP_MULTICAST_IF = 32;
export const IP_MULTICAST_TTL = 33;
export const IP_MULTICAST_LOOP = 34;
export const MCAST_JOIN_GROUP = 42;
export const MCAST_JOIN_SOURCE_GROUP = 46;
/** 0: a socket bound to a group hears it only on the interfaces it joined (default 1: whatever the host joined). */
export const IP_MULTICAST_ALL = 49;
/** linux/in6.h */
export const IPV6_MULTICAST_IF = 17;
export const IPV6_MULTICAST_HOPS = 18;
export const IPV6_MULTICAST_LOOP = 19;
export const IPV6_MULTICAST_ALL = 29;
/** struct group_req: u32 interface, 4 bytes padding (sockaddr_storage is 8-aligned), sockaddr_storage (128). */
const SIZEOF_GROUP_REQ = 136;
/** struct group_source_req: u32 interface, padding, group and source sockaddr_storage. */
const SIZEOF_GROUP_SOURCE_REQ = 264;
const SIZEOF_SOCKADDR_STORAGE = 128;
/** struct ip_mreqn: in_addr multiaddr, in_addr address, int ifindex. */
const SIZEOF_IP_MREQN = 12;

/**
 * The index of an interface given by name or by one of its addresses
 * (policy `multicast.interface`, `multicastOut.interface`), in the current
 * network namespace. Throws SyscallError (ENODEV) when there is none.
 */
export function interfaceIndex(spec: string): number {
  let name = spec;
  if (isIP(spec) !== 0) {
    const want = canonicalAddress(spec);
    const found = Object.entries(networkInterfaces()).find(([, list]) => list?.some((i) => canonicalAddress(i.address.split('%')[0]!) === want));
    if (!found) throw new SyscallError('multicast interface', 'EADDRNOTAVAIL', `${spec} is not an address of this host`);
    name = found[0];
  }
  const index = libc().if_nametoindex(name);
  if (index === 0) throw new SyscallError('if_nametoindex', 'ENODEV', `no interface '${name}'`);
  return index;
}

function setsockopt(fd: number, level: number, name: number, value: ArrayBufferView, op: string, detail: string): void {
  const c = libc();
  if (c.setsockopt(fd, level, name, value, value.byteLength) < 0) throw syscallError(`setsockopt(${op})`, c.errno(), detail);
}

/**
 * Joins `group` on socket `fd` of `family`: on interface `ifindex` (0: the
 * one the route to the group picks), from every source, or with
 * `sources` from each of them only (IGMPv3/MLDv2 INCLUDE mode).
 */
export function joinGroup(fd: number, family: 4 | 6, group: string, ifindex: number, sources: readonly string[]): void {
  const level = family === 4 ? SOL_IP : SOL_IPV6;
  if (sources.length === 0) {
    const req = new Uint8Array(SIZEOF_GROUP_REQ);
    new DataView(req.buffer).setUint32(0, ifindex, true);
    writeSockaddr(req, 8, family, group, 0);
    setsockopt(fd, level, MCAST_JOIN_GROUP, req, 'MCAST_JOIN_GROUP', `group ${group}`);
    return;
  }
  for (const source of sources) {
    const req = new Uint8Array(SIZEOF_GROUP_SOURCE_REQ);
    new DataView(req.buffer).setUint32(0, ifindex, true);
    writeSockaddr(req, 8, family, group, 0);
    writeSockaddr(req, 8 + SIZEOF_SOCKADDR_STORAGE, family, source, 0);
    setsockopt(fd, level, MCAST_JOIN_SOURCE_GROUP, req, 'MCAST_JOIN_SOURCE_GROUP', `group ${group} source ${source}`);
  }
}

/** IP_MULTICAST_ALL / IPV6_MULTICAST_ALL: whether the socket hears groups it did not join itself. */
export function setMulticastAll(fd: number, family: 4 | 6, on: boolean): void {
  const v = new Int32Array([on ? 1 : 0]);
  if (family === 4) setsockopt(fd, SOL_IP, IP_MULTICAST_ALL, v, 'IP_MULTICAST_ALL', '');
  else setsockopt(fd, SOL_IPV6, IPV6_MULTICAST_ALL, v, 'IPV6_MULTICAST_ALL', '');
}

/**
 * How datagrams this socket sends to groups leave: TTL (hop limit),
 * interface (0: by route), and whether this host's own members get them
 * too. On a dual-stack IPv6 socket the IPv4 settings are made as well
 * (IPv4 groups are sent to as IPv4-mapped, under the IPv4 options).
 */
export function setMulticastOutput(fd: number, family: 4 | 6, out: { ttl: number; ifindex: number; loop: boolean }, dualStack = false): void {
  if (family === 4 || dualStack) {
    setsockopt(fd, SOL_IP, IP_MULTICAST_TTL, new Int32Array([out.ttl]), 'IP_MULTICAST_TTL', `ttl ${out.ttl}`);
    setsockopt(fd, SOL_IP, IP_MULTICAST_LOOP, new Int32Array([out.loop ? 1 : 0]), 'IP_MULTICAST_LOOP', '');
    if (out.ifindex) {
      const mreqn = new Uint8Array(SIZEOF_IP_MREQN);
      new DataView(mreqn.buffer).setInt32(8, out.ifindex, true);
      setsockopt(fd, SOL_IP, IP_MULTICAST_IF, mreqn, 'IP_MULTICAST_IF', `ifindex ${out.ifindex}`);
    }
  }
  if (family === 6) {
    setsockopt(fd, SOL_IPV6, IPV6_MULTICAST_HOPS, new Int32Array([out.ttl]), 'IPV6_MULTICAST_HOPS', `hops ${out.ttl}`);
    setsockopt(fd, SOL_IPV6, IPV6_MULTICAST_LOOP, new Int32Array([out.loop ? 1 : 0]), 'IPV6_MULTICAST_LOOP', '');
    if (out.ifindex) setsockopt(fd, SOL_IPV6, IPV6_MULTICAST_IF, new Int32Array([out.ifindex]), 'IPV6_MULTICAST_IF', `ifindex ${out.ifindex}`);
  }
}

/**
 * The host's multicast limits per socket, for `sluice doctor`: a flow's
 * join takes one membership, and one source filter entry per SSM source
 * (more than igmp_max_msf make the join fail with ENOBUFS).
 */
export function multicastNote(): string | undefined {
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const v4 = read('/proc/sys/net/ipv4/igmp_max_msf');
  const v6 = read('/proc/sys/net/ipv6/mld_max_msf');
  if (v4 === undefined && v6 === undefined) return undefined;
  return `multicast: a group listen joins with one socket per flow; SSM sources per flow at most net.ipv4.igmp_max_msf=${v4 ?? '?'} (IPv4), net.ipv6.mld_max_msf=${v6 ?? '?'} (IPv6)`;
}
