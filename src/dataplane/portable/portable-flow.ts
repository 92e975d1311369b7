/**
 * One redirect/replicate flow on node:dgram: a socket bound to the listen
 * address; each accepted datagram is sent to every destination from that
 * same socket, so copies leave from the flow's listen port.
 */
import type dgram from 'node:dgram';
import { constants } from 'node:os';
import { payloadFormatOk } from '../../wire/payload-format.js';
import { createSourceMatcher } from '../../policy/source-filter.js';
import { canonicalAddress, endpointKey, formatEndpoint, isWildcard, unmapAddress, type Endpoint } from '../../wire/endpoint.js';
import type { FlowPlan } from '../../policy/compile.js';
import { DestinationCounters, FlowCounters, type FlowStats } from '../common/counters.js';
import type { OwnSockets } from '../common/own-sockets.js';
import { SubscriberHealth, healthClock, samePolicy } from '../common/subscriber-health.js';
import { STALE_SOCKET_ERRNOS, type ErrorQueueReader } from '../../sys/error-queue.js';
import { readSockaddr } from '../../sys/sockaddr.js';
import { errnoName } from '../../sys/errno.js';
import { openPortableSocket, type PortableSocket } from './dgram-socket.js';
import { joinDgramGroup, setDgramMulticastOutput } from './multicast.js';

const osErrno = constants.errno;

/** A destination with its counters and its send callback. */
interface Destination {
  readonly key: string;
  readonly text: string;
  readonly port: number;
  /** Address as the sending socket needs it (IPv4-mapped on a dual-stack socket). */
  readonly address: string;
  readonly socket: dgram.Socket;
  readonly counters: DestinationCounters;
  /** Suspension state (policy suspendAfterErrors); kept across updates while the policy is the same. */
  health: SubscriberHealth | undefined;
  /** Copies handed to node:dgram (packetsOut counts them when sent): numbers the datagrams for joinFlow. */
  sent: number;
  /**
   * Counts a send's outcome. `msg` is given for a first attempt: a failure
   * that may be a pending ICMP error of another copy is then sent again.
   */
  readonly onSent: (err: Error | null, bytes: number, msg: Buffer | undefined) => void;
}

/** How ICMP errors name a destination: address (IPv4 unmapped, canonical IPv6) and port. */
function nameKey(address: string, port: number): string {
  return `${canonicalAddress(unmapAddress(address))}|${port}`;
}

export class PortableFlow {
  readonly #counters = new FlowCounters();
  readonly #socket: dgram.Socket;
  /** Lazily created sockets for destinations of the other IP family. */
  readonly #crossFamily = new Map<4 | 6, dgram.Socket>();
  /** Error-queue readers of the sockets whose ICMP errors this tier can read (Linux with the FFI). */
  readonly #readers = new Map<dgram.Socket, ErrorQueueReader>();
  readonly #bufferBytes: number | undefined;
  /** The plane's flow sockets: a datagram from one of them is a relay loop. */
  readonly #own: OwnSockets;
  readonly #disown: (() => void)[] = [];
  #plan: FlowPlan;
  #accept: (address: string) => boolean;
  /** Replaced, never mutated, so a datagram in flight always sees one consistent list. */
  #destinations: readonly Destination[] = [];
  /** The same destinations by the address ICMP errors name them with. */
  #byName = new Map<string, Destination>();
  #listen: Endpoint;
  #closed = false;

  private constructor(plan: FlowPlan, sock: PortableSocket, bufferBytes: number | undefined, own: OwnSockets) {
    this.#own = own;
    this.#plan = plan;
    this.#listen = plan.listen;
    this.#socket = sock.socket;
    this.#bufferBytes = bufferBytes;
    this.#accept = createSourceMatcher(plan.sources);
    this.#watch(sock);
  }

  /** Binds the listen socket and starts relaying. */
  static async start(plan: FlowPlan, opts: { socketBufferBytes?: number; own: OwnSockets }): Promise<PortableFlow> {
    const { sock, listening } = openPortableSocket(plan.listen, opts.socketBufferBytes);
    await listening;
    try {
      if (plan.multicast) joinDgramGroup(sock.socket, plan.listen.family, plan.multicast);
      setDgramMulticastOutput(sock.socket, plan.listen.family, plan.multicastOut);
    } catch (err) {
      sock.socket.close();
      throw err;
    }
    const flow = new PortableFlow(plan, sock, opts.socketBufferBytes, opts.own);
    const bound = sock.socket.address();
    flow.#listen = { ...plan.listen, port: bound.port };
    // Copies from a socket bound to a group leave from an interface's address, as from a wildcard.
    const own = plan.multicast ? { ...flow.#listen, address: plan.listen.family === 4 ? '0.0.0.0' : '::' } : flow.#listen;
    flow.#disown.push(flow.#own.add(own));
    flow.#setDestinations(plan);
    sock.socket.on('message', (msg, rinfo) => flow.#onMessage(msg, rinfo.address, rinfo.port));
    return flow;
  }

  /**
   * After bind, a socket's 'error' events are receive-side: with IP_RECVERR
   * on, libuv's recvmsg reporting an ICMP error (ECONNREFUSED, ...), which
   * is read from the error queue here. They must never crash the process;
   * sends report their own errors to callbacks.
   */
  #watch(sock: PortableSocket): void {
    const { socket, errors } = sock;
    if (errors) this.#readers.set(socket, errors);
    socket.on('error', () => this.#readErrors(socket));
  }

  /**
   * Reads the ICMP errors queued on `socket` and charges them to the
   * destinations they name (drops.unreachable, lastError, suspension).
   * Draining matters beyond the counts: while the queue holds anything,
   * epoll reports the socket in error and libuv polls it without rest.
   */
  #readErrors(socket: dgram.Socket): void {
    const reader = this.#readers.get(socket);
    if (!reader || this.#closed) return;
    const now = healthClock();
    try {
      reader.drain((name, err) => {
        let d: Destination | undefined;
        try {
          const ep = readSockaddr(name, 0);
          d = this.#byName.get(nameKey(ep.address, ep.port));
        } catch {
          d = undefined;
        }
        if (!d) return;
        d.counters.unreachable++;
        d.counters.lastError = errnoName(err.errno);
        this.#counters.unreachable++;
        if (d.health?.onError(now)) d.counters.suspendedUntil = d.health.suspendedUntil;
      });
      reader.clearPendingError();
    } catch {
      // The socket went away under us (closing): nothing left to read.
    }
  }

  get listen(): Endpoint {
    return this.#listen;
  }

  /** Swaps in a new plan; destinations in both keep counters and lose nothing. */
  update(plan: FlowPlan): void {
    if (JSON.stringify(plan.multicastOut) !== JSON.stringify(this.#plan.multicastOut)) {
      setDgramMulticastOutput(this.#socket, this.#listen.family, plan.multicastOut);
      for (const [family, s] of this.#crossFamily) setDgramMulticastOutput(s, family, plan.multicastOut);
    }
    this.#plan = plan;
    this.#accept = createSourceMatcher(plan.sources);
    this.#setDestinations(plan);
  }

  /**
   * DataPlane.joinFlow: between two datagrams (this runs on the thread that
   * handles them), so the boundary is exact. The count is of copies handed
   * to node:dgram for `counter`; a copy that then fails to send is counted
   * here but never reaches the counter's socket.
   */
  join(plan: FlowPlan, counter: Endpoint, after: number, force: boolean): { applied: boolean; count: number; overlap: number } {
    const count = this.#destinations.find((d) => d.key === endpointKey(counter))?.sent ?? 0;
    if (count !== after && !force) return { applied: false, count, overlap: 0 };
    this.update(plan);
    return { applied: true, count, overlap: 0 };
  }

  #onMessage(msg: Buffer, from: string, fromPort: number): void {
    const c = this.#counters;
    const plan = this.#plan;
    c.packetsIn++;
    c.bytesIn += msg.length;
    if (this.#own.isOwn(from, fromPort)) {
      c.relayLoop++;
      return;
    }
    if (!this.#accept(from)) {
      c.sourceNotAllowed++;
      return;
    }
    if (msg.length > plan.maxDatagramSize) {
      c.tooLarge++;
      return;
    }
    if (!payloadFormatOk(plan.payload, msg, 0, msg.length)) {
      c.malformed++;
      return;
    }
    const dests = this.#destinations;
    // libuv queues a send it cannot write at once, without bound; past the
    // policy's limit we drop the copies here instead of growing memory.
    if (this.#socket.getSendQueueCount() + dests.length > plan.maxQueuedPackets) {
      for (const d of dests) d.counters.queueFull++;
      c.queueFull += dests.length;
      return;
    }
    const suspendable = plan.suspend !== undefined;
    const now = suspendable ? healthClock() : 0;
    for (const d of dests) {
      if (suspendable && d.health?.isSuspended()) {
        if (d.health.resumeIfDue(now)) d.counters.suspendedUntil = 0;
        else {
          d.counters.suspended++;
          c.suspended++;
          continue;
        }
      }
      d.sent++;
      // A closure per copy carries the datagram to a possible resend.
      d.socket.send(msg, d.port, d.address, (err, bytes) => d.onSent(err, bytes, msg));
    }
  }

  #setDestinations(plan: FlowPlan): void {
    const old = new Map(this.#destinations.map((d) => [d.key, d]));
    const policy = plan.suspend;
    this.#destinations = plan.destinations.map((ep) => {
      const d = old.get(endpointKey(ep)) ?? this.#makeDestination(ep);
      // A kept destination keeps its suspension state unless the policy changed.
      if (!policy) d.health = undefined;
      else if (!d.health || !samePolicy(d.health.policy, policy)) d.health = new SubscriberHealth(policy);
      if (!d.health?.isSuspended()) d.counters.suspendedUntil = 0;
      return d;
    });
    this.#byName = new Map(this.#destinations.map((d) => [nameKey(d.address, d.port), d]));
  }

  #makeDestination(ep: Endpoint): Destination {
    const counters = new DestinationCounters();
    const flow = this.#counters;
    const { socket, address } = this.#route(ep);
    const onSent = (err: Error | null, bytes: number, msg: Buffer | undefined): void => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      if (err && msg && code && STALE_SOCKET_ERRNOS.has(osErrno[code as keyof typeof osErrno] ?? -1) && this.#readers.has(socket) && !this.#closed) {
        // Maybe the pending ICMP error of another copy, handed to this send
        // instead (error-queue.ts): read the queue, then send once more;
        // a real refusal (no route) fails again and is counted then.
        this.#readErrors(socket);
        socket.send(msg, ep.port, address, (e, n) => onSent(e, n, undefined));
        return;
      }
      if (err) {
        counters.sendError++;
        counters.lastError = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
        flow.sendError++;
      } else {
        counters.packetsOut++;
        counters.bytesOut += bytes;
        flow.packetsOut++;
        flow.bytesOut += bytes;
      }
    };
    return { key: endpointKey(ep), text: formatEndpoint(ep), port: ep.port, address, socket, counters, health: undefined, sent: 0, onSent };
  }

  /**
   * Picks the socket a destination is sent from. Same family: the listen
   * socket. IPv4 destination on a `::` listen: the dual-stack listen socket,
   * with the IPv4-mapped address. Otherwise a per-flow socket of the other
   * family on an ephemeral port (documented: such copies do not leave from
   * the listen port).
   */
  #route(ep: Endpoint): { socket: dgram.Socket; address: string } {
    if (ep.family === this.#listen.family) return { socket: this.#socket, address: ep.address };
    if (ep.family === 4 && isWildcard(this.#listen)) return { socket: this.#socket, address: `::ffff:${ep.address}` };
    let s = this.#crossFamily.get(ep.family);
    if (!s) {
      const wildcard: Endpoint = { family: ep.family, address: ep.family === 4 ? '0.0.0.0' : '::', port: 0 };
      const { sock, listening } = openPortableSocket(wildcard, this.#bufferBytes);
      s = sock.socket;
      this.#watch(sock);
      // Bound now: from then on its copies that come back to a flow are a loop.
      listening.then(
        () => {
          if (this.#closed) return;
          this.#disown.push(this.#own.add({ ...wildcard, port: sock.socket.address().port }));
          try {
            setDgramMulticastOutput(sock.socket, ep.family, this.#plan.multicastOut);
          } catch {
            // Group copies from this socket then leave with the system's defaults (TTL 1, by route).
          }
        },
        () => undefined, // sends report the failure to their callbacks
      );
      // Only ever sends; incoming datagrams on its ephemeral port are not relayed.
      s.on('message', () => {});
      this.#crossFamily.set(ep.family, s);
    }
    return { socket: s, address: ep.address };
  }

  stats(tier: string): FlowStats {
    const c = this.#counters;
    return {
      name: this.#plan.name,
      type: this.#plan.type,
      tier,
      listen: formatEndpoint(this.#listen),
      packetsIn: c.packetsIn,
      bytesIn: c.bytesIn,
      packetsOut: c.packetsOut,
      bytesOut: c.bytesOut,
      drops: c.drops(),
      destinations: this.#destinations.map((d) => d.counters.snapshot(d.text)),
    };
  }

  /**
   * Closes the sockets once queued copies have been handed to the kernel
   * (bounded wait), so removing a flow does not cut its last datagrams.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const disown of this.#disown.splice(0)) disown();
    this.#socket.removeAllListeners('message');
    const sockets = [this.#socket, ...this.#crossFamily.values()];
    const deadline = Date.now() + 200;
    while (sockets.some((s) => s.getSendQueueCount() > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
