/**
 * A lossy-link emulator at UDP level, for the TPO tests and bench (#6): the
 * kernel here has no netem, so the impairments live in user space.
 *
 *     A ──► [a-side socket] ─ aToB: queue, loss, dup, delay ─► [b-side socket] ──► B
 *     A ◄── [a-side socket] ◄─ bToA: queue, loss, dup, delay ─ [b-side socket] ◄── B
 *
 * A sends to the a-side socket, B to the b-side socket. Each peer is
 * configured or learned from the first datagram on its side; datagrams from
 * any other source are dropped and counted, so the emulator is never an open
 * relay or amplifier. Sources are compared literally (address string and
 * port as node:dgram reports them), so configure `127.0.0.1`, not `localhost`.
 *
 * Per direction, in this order (every stage changeable at run time with set()):
 *  1. `down`: an outage drops everything, at ingress and also datagrams still
 *     in flight when their delivery time comes (nothing crosses a cut link).
 *  2. `rateBps`: a bottleneck serializing at that rate behind a FIFO of
 *     `queueBytes`, tail-drop when full (counted as droppedQueue). Queue delay
 *     is what a congestion controller sees building up.
 *  3. Loss, random (`loss`) and Gilbert-Elliott (`burst`). Loss is applied
 *     after the bottleneck, as on a lossy last hop: lost datagrams still used
 *     link capacity.
 *  4. `delayMs` + uniform [0, `jitterMs`]. Jitter never reorders: an in-order
 *     datagram never leaves before the previous in-order one.
 *  5. `reorder`: with that probability a datagram is held `reorderDelayMs`
 *     longer, outside the in-order chain, so later datagrams overtake it.
 *  6. `duplicate`: with that probability a second copy is delivered (after
 *     the bottleneck, so copies take no capacity), with its own jitter draw.
 *
 * Determinism: each direction has its own PRNG (from `seed`) and every
 * received datagram consumes exactly the same number of draws whatever
 * happens to it, so the k-th datagram received in a direction gets the same
 * loss / burst / duplicate / reorder / jitter decision for a given seed,
 * independently of timing and of the other direction. What is NOT
 * deterministic: timing (real time), hence queue (tail) drops, drops while
 * `down` (they depend on when set() is called), the order in which the kernel
 * delivers concurrent senders' datagrams, and interleaving of delivery times.
 *
 * Pieces: the bottleneck and burst loss are the model the IP emulator also
 * uses (model.ts); the delay line (delay-line.ts) holds datagrams until due,
 * with one timer per direction. Node timers have 1 ms granularity, so a
 * datagram leaves 0 to ~2 ms after its due time on an idle loop (more on a
 * busy one), never before. Sub-millisecond spacing (e.g. 0.19 ms per
 * 1200-byte datagram at 50 Mbit/s) comes out as small bursts per timer
 * firing; the average rate is exact.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { DelayLine } from './delay-line.js';
import { Bottleneck, FRONT_ENDS, GilbertElliott, QUEUE_FULL, checkImpairment, queueLimitBytes, type BurstLoss, type ImpairmentParams } from './model.js';
import { Rng } from './rng.js';

export type { BurstLoss } from './model.js';

export type Direction = 'aToB' | 'bToA';
export type Side = 'a' | 'b';

export interface Peer {
  address: string;
  port: number;
}

/** The shared model's parameters (model.ts), and what only this front end has. */
export interface LinkParams extends ImpairmentParams {
  /** One-way propagation delay, ms (a floor: jitter only adds). */
  delayMs: number;
  /**
   * Extra per-datagram delay, uniform in [0, jitterMs]; never reorders, because
   * a datagram is held until the previous in-order one has left. The price:
   * when datagrams are much closer together than jitterMs the clamp pushes
   * most of them towards the top of the range (at 20 datagrams/ms with 20 ms
   * of jitter, one-way delay is nearly delayMs + jitterMs for all).
   */
  jitterMs: number;
  /** Burst loss, or null. */
  burst: BurstLoss | null;
  /** Probability a datagram is held back by reorderDelayMs (false = 0). */
  reorder: number | false;
  reorderDelayMs: number;
  /** Probability a datagram is delivered twice. */
  duplicate: number;
  /** Bottleneck buffer; undefined = 100 ms at rateBps, at least 64 KiB (FRONT_ENDS.udp). */
  queueBytes: number | undefined;
  /** Bytes added to each datagram's size at the bottleneck (28 for IPv4+UDP headers; default 0 = payload only). */
  overheadBytes: number;
  /** Link outage: everything is dropped while true. */
  down: boolean;
}

export interface DirectionCounters {
  received: number;
  receivedBytes: number;
  /** Datagrams sent on, duplicate copies included. */
  forwarded: number;
  forwardedBytes: number;
  droppedRandom: number;
  droppedBurst: number;
  droppedQueue: number;
  droppedDown: number;
  /** Due for delivery before the far peer was known (not configured, not yet learned). */
  droppedNoPeer: number;
  /** Extra copies created. */
  duplicated: number;
  /** Datagrams held back by `reorder` (whether or not anything overtook them). */
  reordered: number;
  /** Arrived on this direction's ingress socket from neither the configured nor the learned peer. */
  unknownSource: number;
  sendErrors: number;
}

export interface DirectionStats extends DirectionCounters {
  /** Datagrams (copies included) waiting for their delivery time. */
  inFlight: number;
  /** Bytes in the bottleneck queue now. */
  queuedBytes: number;
}

export interface LinkEmulatorOptions {
  /** Seed of both directions' PRNGs (default 1). */
  seed?: number;
  /** Where the a-side (A-facing) socket binds; default 127.0.0.1, any port. */
  bindA?: Partial<Peer>;
  bindB?: Partial<Peer>;
  /** A's address; if absent, learned from the first datagram on the a side. */
  peerA?: Peer;
  peerB?: Peer;
  aToB?: Partial<LinkParams>;
  bToA?: Partial<LinkParams>;
  /** SO_RCVBUF / SO_SNDBUF of both sockets (default 4 MiB, capped by the kernel's rmem_max / wmem_max). */
  socketBufferBytes?: number;
}

const DEFAULTS: LinkParams = {
  delayMs: 0,
  jitterMs: 0,
  loss: 0,
  burst: null,
  reorder: 0,
  reorderDelayMs: 10,
  duplicate: 0,
  rateBps: 0,
  queueBytes: undefined,
  overheadBytes: 0,
  down: false,
};

function checkParams(p: LinkParams): void {
  checkImpairment(p, 'link emulator', {
    nonNeg: { jitterMs: p.jitterMs, reorderDelayMs: p.reorderDelayMs, overheadBytes: p.overheadBytes },
    prob: { duplicate: p.duplicate, reorder: p.reorder === false ? 0 : p.reorder },
  });
}

/** One direction: ingress decisions, the bottleneck, and the delay line. */
class Lane {
  params: LinkParams = { ...DEFAULTS };
  readonly counters: DirectionCounters = {
    received: 0,
    receivedBytes: 0,
    forwarded: 0,
    forwardedBytes: 0,
    droppedRandom: 0,
    droppedBurst: 0,
    droppedQueue: 0,
    droppedDown: 0,
    droppedNoPeer: 0,
    duplicated: 0,
    reordered: 0,
    unknownSource: 0,
    sendErrors: 0,
  };
  readonly #burst = new GilbertElliott(null);
  readonly #link = new Bottleneck(0, FRONT_ENDS.udp.queueFloorBytes);
  readonly #line = new DelayLine<Buffer>((buf) => this.#deliver(buf));
  readonly #rng: Rng;
  readonly #out: dgram.Socket;
  readonly #peer: () => Peer | null;

  constructor(rng: Rng, out: dgram.Socket, peer: () => Peer | null) {
    this.#rng = rng;
    this.#out = out;
    this.#peer = peer;
  }

  set(p: Partial<LinkParams>): void {
    const next = { ...this.params, ...p };
    checkParams(next);
    this.#burst.configure(next.burst);
    this.#link.configure(next.rateBps, queueLimitBytes(next, FRONT_ENDS.udp.queueFloorBytes));
    this.params = next;
  }

  stats(): DirectionStats {
    return { ...this.counters, inFlight: this.#line.size, queuedBytes: this.#link.queuedBytes(performance.now()) };
  }

  ingress(buf: Buffer): void {
    const c = this.counters;
    const p = this.params;
    const rng = this.#rng;
    c.received++;
    c.receivedBytes += buf.length;
    // A fixed number of draws per datagram (FRONT_ENDS.udp), used or not:
    // decisions for the k-th datagram then depend only on the seed and k (see the header).
    const uBurstLoss = rng.next();
    const uBurstStep = rng.next();
    const uLoss = rng.next();
    const uDup = rng.next();
    const uReorder = rng.next();
    const uJitter = rng.next();
    const uDupJitter = rng.next();

    const burstLost = this.#burst.step(uBurstLoss, uBurstStep);
    if (p.down) {
      c.droppedDown++;
      return;
    }
    const now = performance.now();
    const departed = this.#link.admit(now, buf.length + p.overheadBytes);
    if (departed === QUEUE_FULL) {
      c.droppedQueue++;
      return;
    }
    if (burstLost) {
      c.droppedBurst++;
      return;
    }
    if (uLoss < p.loss) {
      c.droppedRandom++;
      return;
    }
    const base = departed + p.delayMs;
    const due = base + uJitter * p.jitterMs;
    if (p.reorder !== false && uReorder < p.reorder) {
      c.reordered++;
      this.#line.outOfOrder(due + p.reorderDelayMs, buf);
    } else {
      this.#line.inOrder(due, buf);
    }
    if (uDup < p.duplicate) {
      c.duplicated++;
      this.#line.outOfOrder(base + uDupJitter * p.jitterMs, buf);
    }
    this.#line.flush(now);
  }

  #deliver(buf: Buffer): void {
    const c = this.counters;
    if (this.params.down) {
      c.droppedDown++;
      return;
    }
    const to = this.#peer();
    if (!to) {
      c.droppedNoPeer++;
      return;
    }
    // No callback: a per-datagram closure costs more than it tells; errors
    // surface as the socket's 'error' event and are counted there. What
    // node:dgram refuses outright (a learned peer's port 0, say) throws at
    // once — here, from the delivery timer — so it is counted the same way.
    try {
      this.#out.send(buf, to.port, to.address);
    } catch {
      c.sendErrors++;
      return;
    }
    c.forwarded++;
    c.forwardedBytes += buf.length;
  }

  stop(): void {
    this.#line.stop();
  }
}

async function bindSocket(bind: Partial<Peer> | undefined, bufferBytes: number): Promise<dgram.Socket> {
  const address = bind?.address ?? '127.0.0.1';
  const socket = dgram.createSocket({
    type: address.includes(':') ? 'udp6' : 'udp4',
    recvBufferSize: bufferBytes,
    sendBufferSize: bufferBytes,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(bind?.port ?? 0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

export class LinkEmulator {
  readonly #sockA: dgram.Socket;
  readonly #sockB: dgram.Socket;
  #peers: Record<Side, Peer | null>;
  readonly #lanes: Record<Direction, Lane>;
  #closed = false;

  /** Binds both sockets; resolves when they are ready. */
  static async create(options: LinkEmulatorOptions = {}): Promise<LinkEmulator> {
    const buf = options.socketBufferBytes ?? 4 << 20;
    const a = await bindSocket(options.bindA, buf);
    let b: dgram.Socket;
    try {
      b = await bindSocket(options.bindB, buf);
    } catch (err) {
      a.close();
      throw err;
    }
    return new LinkEmulator(a, b, options);
  }

  private constructor(sockA: dgram.Socket, sockB: dgram.Socket, options: LinkEmulatorOptions) {
    this.#sockA = sockA;
    this.#sockB = sockB;
    const seed = options.seed ?? 1;
    this.#peers = { a: options.peerA ? { ...options.peerA } : null, b: options.peerB ? { ...options.peerB } : null };
    this.#lanes = {
      aToB: new Lane(Rng.fromSeed(seed), sockB, () => this.#peers.b),
      bToA: new Lane(Rng.fromSeed(seed ^ 0x6a09e667), sockA, () => this.#peers.a),
    };
    if (options.aToB) this.#lanes.aToB.set(options.aToB);
    if (options.bToA) this.#lanes.bToA.set(options.bToA);
    // A socket sends only its outgoing direction, so its errors belong there.
    sockB.on('error', () => this.#lanes.aToB.counters.sendErrors++);
    sockA.on('error', () => this.#lanes.bToA.counters.sendErrors++);
    sockA.on('message', (msg, rinfo) => this.#ingress('a', msg, rinfo));
    sockB.on('message', (msg, rinfo) => this.#ingress('b', msg, rinfo));
  }

  /** Where A must send (the a-side socket's address). */
  get a(): Peer {
    const { address, port } = this.#sockA.address();
    return { address, port };
  }

  /** Where B must send (the b-side socket's address). */
  get b(): Peer {
    const { address, port } = this.#sockB.address();
    return { address, port };
  }

  /** Changes some parameters of one direction (or both); the rest stay as they are. */
  set(direction: Direction | 'both', params: Partial<LinkParams>): void {
    if (direction === 'both') {
      // Validate both before changing either, so a bad value changes nothing.
      checkParams({ ...this.#lanes.aToB.params, ...params });
      checkParams({ ...this.#lanes.bToA.params, ...params });
      this.#lanes.aToB.set(params);
      this.#lanes.bToA.set(params);
    } else {
      this.#lanes[direction].set(params);
    }
  }

  params(direction: Direction): Readonly<LinkParams> {
    return { ...this.#lanes[direction].params };
  }

  /** The peer on one side: configured, learned, or null (not yet learned). */
  peer(side: Side): Peer | null {
    const p = this.#peers[side];
    return p ? { ...p } : null;
  }

  /** Sets a side's peer, or forgets it (null) so the next datagram on that side is learned (an address change). */
  setPeer(side: Side, peer: Peer | null): void {
    this.#peers[side] = peer ? { ...peer } : null;
  }

  stats(direction: Direction): DirectionStats {
    return this.#lanes[direction].stats();
  }

  /** Closes both sockets and drops whatever is in flight. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lanes.aToB.stop();
    this.#lanes.bToA.stop();
    await Promise.all([this.#sockA, this.#sockB].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  #ingress(side: Side, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const lane = side === 'a' ? this.#lanes.aToB : this.#lanes.bToA;
    if (this.#closed) return;
    const known = this.#peers[side];
    if (!known) {
      this.#peers[side] = { address: rinfo.address, port: rinfo.port };
    } else if (known.port !== rinfo.port || known.address !== rinfo.address) {
      lane.counters.unknownSource++;
      return;
    }
    lane.ingress(msg);
  }
}
