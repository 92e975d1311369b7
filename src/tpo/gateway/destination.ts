/**
 * Which destinations a gateway never opens a flow to, whatever
 * `deliver.allow` says (issue #16): a peer message names the destination
 * as bytes, so it can name anything, and some of them are no endpoint at
 * all. Port 0 cannot be sent to (node:dgram throws), the unspecified
 * addresses mean "this host" to Linux (a way round the allow list to the
 * gateway's own local services), and broadcast and multicast would make
 * one carried datagram reach many hosts. Such flows are refused with a
 * reset and counted; the same check keeps the source side from carrying
 * them.
 */
import { BlockList, isIP } from 'node:net';

const NEVER = new BlockList();
// IPv4: "this network" (0.0.0.0 is this host), multicast, and class E with the limited broadcast.
NEVER.addSubnet('0.0.0.0', 8, 'ipv4');
NEVER.addSubnet('224.0.0.0', 4, 'ipv4');
NEVER.addSubnet('240.0.0.0', 4, 'ipv4');
// IPv6: unspecified and multicast (BlockList matches IPv4-mapped IPv6 addresses against the IPv4 rules).
NEVER.addAddress('::', 'ipv6');
NEVER.addSubnet('ff00::', 8, 'ipv6');

/** Why `address:port` cannot be a flow's endpoint, or undefined when it can. */
export function undeliverable(address: string, port: number): string | undefined {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${port}`;
  const family = isIP(address);
  if (family === 0) return `'${address}' is not an IP address`;
  if (NEVER.check(address, family === 4 ? 'ipv4' : 'ipv6')) return `${address} is an unspecified, broadcast or multicast address`;
  return undefined;
}
