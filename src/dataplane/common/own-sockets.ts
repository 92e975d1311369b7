/**
 * The sockets a data plane's flows send from, so that a datagram coming
 * from one of them is recognised as a relay loop (flows feeding each other
 * or themselves) and dropped instead of circulating forever. Validation
 * refuses the loops it can see in a policy; this is the run-time guard for
 * whatever gets past it (docs/POLICY.md, "Relay loops").
 *
 * A datagram is "from one of our sockets" when its source port is the port
 * of one of them and its source address is that socket's address, or, for
 * a wildcard-bound socket (`0.0.0.0`, `::`), any address of this host: a
 * copy sent from a wildcard socket carries the outgoing interface's
 * address. Only a port match (one bitmap read) costs anything more; the
 * host's addresses are read at most once a second, and only then.
 */
import { networkInterfaces } from 'node:os';
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalAddress, isWildcard, type Endpoint } from '../../wire/endpoint.js';
import { ipv6Bytes } from '../../wire/ip-address.js';
import { readSockaddr } from '../../sys/sockaddr.js';

/** How long the host's address list is trusted before it is read again. */
const LOCAL_ADDRESSES_TTL_MS = 1000;

interface Entry {
  /** Canonical, IPv4-mapped form unmapped; undefined for a wildcard bind. */
  readonly address: string | undefined;
  /** A wildcard `::` socket is dual-stack: it sends IPv4 too. */
  readonly family: 4 | 6;
}

export class OwnSockets {
  /** Sockets per port; the bitmap below answers "none" without a lookup. */
  readonly #byPort = new Map<number, Entry[]>();
  readonly #ports = new Uint16Array(65536);
  #local = new Set<string>();
  #localReadAt = -Infinity;

  /** Registers a bound socket; returns the function that unregisters it. */
  add(bound: Endpoint): () => void {
    const entry: Entry = { address: isWildcard(bound) ? undefined : normalize(bound.address), family: bound.family };
    const list = this.#byPort.get(bound.port) ?? [];
    list.push(entry);
    this.#byPort.set(bound.port, list);
    this.#ports[bound.port]!++;
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      const l = this.#byPort.get(bound.port);
      const i = l?.indexOf(entry) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
      if (l?.length === 0) this.#byPort.delete(bound.port);
      this.#ports[bound.port]!--;
    };
  }

  /** True when `address:port` (as node:dgram reports a sender) is one of the registered sockets. */
  isOwn(address: string, port: number): boolean {
    if (this.#ports[port] === 0) return false;
    const a = normalize(address);
    const v4 = isIPv4(a);
    for (const e of this.#byPort.get(port) ?? []) {
      if (e.address !== undefined) {
        if (e.address === a) return true;
      } else if ((e.family === 6 || v4) && this.#isLocal(a)) return true;
    }
    return false;
  }

  /** The same for a sockaddr the kernel wrote (the batched tier's receive ring). */
  isOwnSockaddr(bytes: Uint8Array, offset: number): boolean {
    // sin_port / sin6_port: bytes 2-3, network order, same place in both.
    const port = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    if (this.#ports[port] === 0) return false;
    let ep: Endpoint;
    try {
      ep = readSockaddr(bytes, offset);
    } catch {
      return false;
    }
    return this.isOwn(ep.address, ep.port);
  }

  #isLocal(address: string): boolean {
    if (isIPv4(address) ? address.startsWith('127.') : address === '::1') return true;
    const now = performance.now();
    if (now - this.#localReadAt > LOCAL_ADDRESSES_TTL_MS) {
      this.#localReadAt = now;
      const local = new Set<string>();
      for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) local.add(normalize(i.address));
      this.#local = local;
    }
    return this.#local.has(address);
  }
}

/** One text form per address: IPv4 (also when written IPv4-mapped, in any notation), canonical IPv6, no zone. */
function normalize(address: string): string {
  const a = address.split('%')[0]!;
  if (isIPv4(a) || !isIPv6(a)) return a;
  const b = ipv6Bytes(a);
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return canonicalAddress(a);
}
