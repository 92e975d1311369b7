/**
 * A portable flow's multicast, with node:dgram's own calls: the listen
 * socket (bound to the group address, so unicast datagrams to the port
 * stay out) joins the group, from any source (addMembership) or from the
 * listed ones (addSourceSpecificMembership); sockets that send to groups
 * get the TTL, interface and loopback of `multicastOut`. node:dgram names
 * an interface by address (IPv4) or by `::%NAME` (IPv6): a policy's
 * interface name or address is turned into that form here.
 */
import type dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { canonicalAddress } from '../../wire/endpoint.js';
import type { MulticastJoin, MulticastOut } from '../../policy/multicast.js';
import { SyscallError, fromNodeError } from '../../errors.js';
import { ffiAvailable } from '../../sys/probe.js';
import { interfaceIndex, setMulticastAll, setMulticastOutput } from '../../sys/multicast.js';
import { dgramSocketFd } from '../../sys/socket-options.js';

/** The interface `spec` (a name or a local address) as node:dgram takes it for `family`. */
export function dgramInterface(spec: string, family: 4 | 6): string {
  const interfaces = networkInterfaces();
  let name = spec;
  if (isIP(spec) !== 0) {
    if (family === 4 && isIP(spec) === 4) return spec;
    const want = canonicalAddress(spec);
    const found = Object.entries(interfaces).find(([, list]) => list?.some((i) => canonicalAddress(i.address.split('%')[0]!) === want));
    if (!found) throw new SyscallError('multicast interface', 'EADDRNOTAVAIL', `${spec} is not an address of this host`);
    name = found[0];
  }
  if (family === 6) return `::%${name}`;
  const v4 = interfaces[name]?.find((i) => i.family === 'IPv4');
  if (!v4) throw new SyscallError('multicast interface', 'ENODEV', `no interface '${name}' with an IPv4 address`);
  return v4.address;
}

/**
 * Joins the group on the bound listen socket. Where the FFI loads (Linux),
 * IP_MULTICAST_ALL goes off first, as on the batched tier: the socket then
 * hears the group only on the interface it joined.
 */
export function joinDgramGroup(socket: dgram.Socket, family: 4 | 6, join: MulticastJoin): void {
  if (ffiAvailable().ok) setMulticastAll(dgramSocketFd(socket), family, false);
  const iface = join.interface === undefined ? undefined : dgramInterface(join.interface, family);
  try {
    if (join.sources.length === 0) socket.addMembership(join.group, iface);
    else for (const source of join.sources) socket.addSourceSpecificMembership(source, join.group, iface);
  } catch (err) {
    throw fromNodeError(join.sources.length ? 'addSourceSpecificMembership' : 'addMembership', err, `group ${join.group}`);
  }
}

/**
 * TTL, interface and loopback of the socket's copies to groups; nothing
 * when the plan sends to none. An IPv6 socket that src/sys created and
 * node:dgram adopted (Linux, dgram-socket.ts) is not known to libuv as
 * IPv6, so its setMulticast* calls would set the IPv4 options: there the
 * IPv6 ones are set through src/sys instead.
 */
export function setDgramMulticastOutput(socket: dgram.Socket, family: 4 | 6, out: MulticastOut | undefined): void {
  if (!out) return;
  if (family === 6 && ffiAvailable().ok) {
    const ifindex = out.interface === undefined ? 0 : interfaceIndex(out.interface);
    setMulticastOutput(dgramSocketFd(socket), 6, { ttl: out.ttl, ifindex, loop: out.loop });
    return;
  }
  try {
    socket.setMulticastTTL(out.ttl);
    socket.setMulticastLoopback(out.loop);
    if (out.interface !== undefined) socket.setMulticastInterface(dgramInterface(out.interface, family));
  } catch (err) {
    throw fromNodeError('setMulticast', err, out.interface);
  }
}
