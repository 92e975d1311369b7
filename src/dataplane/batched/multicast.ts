/**
 * A batched flow's multicast: its listen socket joins the group the listen
 * address names (policy `multicast`), and its sockets send copies to groups
 * as `multicastOut` says. Both through src/sys (setsockopt); a failure is a
 * SyscallError naming the option and errno, and fails the flow's start.
 */
import type { RawUdpSocket } from '../../sys/udp-socket.js';
import { interfaceIndex, joinGroup, setMulticastAll, setMulticastOutput } from '../../sys/multicast.js';
import type { MulticastJoin, MulticastOut } from '../../policy/multicast.js';

/**
 * Joins the group the socket is bound to. The bind to the group address
 * keeps unicast datagrams to the same port out; IP_MULTICAST_ALL off keeps
 * out the group's datagrams arriving on interfaces this flow did not join
 * (by default a socket hears every interface the host joined the group on).
 */
export function joinListenGroup(socket: RawUdpSocket, join: MulticastJoin): void {
  setMulticastAll(socket.fd, socket.family, false);
  const ifindex = join.interface === undefined ? 0 : interfaceIndex(join.interface);
  joinGroup(socket.fd, socket.family, join.group, ifindex, join.sources);
}

/** Sets how the socket's copies to groups leave; nothing when the plan sends to none. */
export function setFlowMulticastOutput(socket: RawUdpSocket, out: MulticastOut | undefined, dualStack: boolean): void {
  if (!out) return;
  const ifindex = out.interface === undefined ? 0 : interfaceIndex(out.interface);
  setMulticastOutput(socket.fd, socket.family, { ttl: out.ttl, ifindex, loop: out.loop }, dualStack);
}
