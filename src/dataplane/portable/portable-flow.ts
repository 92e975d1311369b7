/**
 * One redirect/replicate flow on node:dgram: a socket bound to the listen
 * address; each accepted datagram is sent to every destination from that
 * same socket, so copies leave from the flow's listen port.
 */
import dgram from 'node:dgram';
import { checkTsDatagram } from '../../wire/mpegts.js';
import { createSourceMatcher } from '../../policy/source-filter.js';
import { endpointKey, formatEndpoint, isWildcard, type Endpoint } from '../../policy/endpoint.js';
import type { FlowPlan } from '../../policy/compile.js';
import { DestinationCounters, FlowCounters, type FlowStats } from '../../stats/counters.js';
import { fromNodeError } from '../../errors.js';
import type { OwnSockets } from '../own-sockets.js';

/** A destination with its counters and its preallocated send callback. */
interface Destination {
  readonly key: string;
  readonly text: string;
  readonly port: number;
  /** Address as the sending socket needs it (IPv4-mapped on a dual-stack socket). */
  readonly address: string;
  readonly socket: dgram.Socket;
  readonly counters: DestinationCounters;
  /** Created once per destination: no closure per packet on the hot path. */
  readonly onSent: (err: Error | null, bytes: number) => void;
}

export class PortableFlow {
  readonly #counters = new FlowCounters();
  readonly #socket: dgram.Socket;
  /** Lazily created sockets for destinations of the other IP family. */
  readonly #crossFamily = new Map<4 | 6, dgram.Socket>();
  readonly #bufferBytes: number | undefined;
  /** The plane's flow sockets: a datagram from one of them is a relay loop. */
  readonly #own: OwnSockets;
  readonly #disown: (() => void)[] = [];
  #plan: FlowPlan;
  #accept: (address: string) => boolean;
  /** Replaced, never mutated, so a datagram in flight always sees one consistent list. */
  #destinations: readonly Destination[] = [];
  #listen: Endpoint;
  #closed = false;

  private constructor(plan: FlowPlan, socket: dgram.Socket, bufferBytes: number | undefined, own: OwnSockets) {
    this.#own = own;
    this.#plan = plan;
    this.#listen = plan.listen;
    this.#socket = socket;
    this.#bufferBytes = bufferBytes;
    this.#accept = createSourceMatcher(plan.sources);
  }

  /** Binds the listen socket and starts relaying. */
  static async start(plan: FlowPlan, opts: { socketBufferBytes?: number; own: OwnSockets }): Promise<PortableFlow> {
    const socket = createSocket(plan.listen.family, opts.socketBufferBytes);
    const flow = new PortableFlow(plan, socket, opts.socketBufferBytes, opts.own);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        socket.close();
        reject(fromNodeError('bind', err, formatEndpoint(plan.listen)));
      };
      socket.once('error', onError);
      socket.bind({ address: plan.listen.address, port: plan.listen.port, exclusive: true }, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    // After bind, errors here are receive-side (rare on UDP); they must not
    // crash the process, and sends report their own errors to callbacks.
    socket.on('error', () => {});
    const bound = socket.address();
    flow.#listen = { ...plan.listen, port: bound.port };
    flow.#disown.push(flow.#own.add(flow.#listen));
    flow.#setDestinations(plan);
    socket.on('message', (msg, rinfo) => flow.#onMessage(msg, rinfo.address, rinfo.port));
    return flow;
  }

  get listen(): Endpoint {
    return this.#listen;
  }

  /** Swaps in a new plan; destinations in both keep counters and lose nothing. */
  update(plan: FlowPlan): void {
    this.#plan = plan;
    this.#accept = createSourceMatcher(plan.sources);
    this.#setDestinations(plan);
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
    if (plan.payload === 'mpegts' && !checkTsDatagram(msg).ok) {
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
    for (const d of dests) d.socket.send(msg, d.port, d.address, d.onSent);
  }

  #setDestinations(plan: FlowPlan): void {
    const old = new Map(this.#destinations.map((d) => [d.key, d]));
    this.#destinations = plan.destinations.map((ep) => old.get(endpointKey(ep)) ?? this.#makeDestination(ep));
  }

  #makeDestination(ep: Endpoint): Destination {
    const counters = new DestinationCounters();
    const flow = this.#counters;
    const { socket, address } = this.#route(ep);
    const onSent = (err: Error | null, bytes: number): void => {
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
    return { key: endpointKey(ep), text: formatEndpoint(ep), port: ep.port, address, socket, counters, onSent };
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
      s = createSocket(ep.family, this.#bufferBytes);
      const sock = s;
      s.on('error', () => {});
      // Bound by the first send: from then on its copies that come back to a flow are a loop.
      s.once('listening', () => {
        if (!this.#closed) this.#disown.push(this.#own.add({ family: ep.family, address: ep.family === 4 ? '0.0.0.0' : '::', port: sock.address().port }));
      });
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

function createSocket(family: 4 | 6, bufferBytes: number | undefined): dgram.Socket {
  return dgram.createSocket({
    type: family === 4 ? 'udp4' : 'udp6',
    ...(bufferBytes ? { recvBufferSize: bufferBytes, sendBufferSize: bufferBytes } : {}),
  });
}
