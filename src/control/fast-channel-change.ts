/**
 * A flow's fast channel change (policy `fastChannelChange`): the cache of
 * the stream from its last random access point, fed by the flow's monitor
 * tap, and the joins in progress (fast-join.ts), which it hands every tap
 * datagram. Bursts leave from a socket of its own, one per address family.
 */
import dgram from 'node:dgram';
import { RapCache, type RapCachePayload } from '../media/rap-cache.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import type { FastChannelChangeStats } from '../dataplane/common/counters.js';
import type { JoinResult } from '../dataplane/common/types.js';
import { FastJoin, type FastJoinOutcome } from './fast-join.js';

/** What fast channel change needs of the monitor tap. */
export interface TapSource {
  /** The tap's destination in the flow's plan: its copies number the datagrams (DataPlane.joinFlow's counter). */
  readonly endpoint: Endpoint;
  /** Every datagram the tap receives, numbered from 1; returns the unsubscribe function. */
  onDatagram(listener: (datagram: Uint8Array, index: number, nowMs: number) => void): () => void;
}

export interface FastChannelChangeOptions {
  readonly payload: RapCachePayload;
  readonly burstRate: number;
  readonly maxCacheBytes: number;
}

export class FastChannelChange {
  readonly #tap: TapSource;
  readonly #cache: RapCache;
  readonly #unsubscribe: () => void;
  /** Joins in progress by subscriber (endpointKey). */
  readonly #active = new Map<string, FastJoin>();
  readonly #sockets = new Map<4 | 6, dgram.Socket>();
  #options: FastChannelChangeOptions;
  #lastIndex = 0;
  #joins = 0;
  #fastJoins = 0;
  #fallbacks = 0;
  #forced = 0;
  #closed = false;

  constructor(tap: TapSource, options: FastChannelChangeOptions) {
    this.#tap = tap;
    this.#options = options;
    this.#cache = new RapCache({ payload: options.payload, maxCacheBytes: options.maxCacheBytes });
    this.#unsubscribe = tap.onDatagram((datagram, index, nowMs) => {
      this.#lastIndex = index;
      this.#cache.push(datagram, index, nowMs);
      for (const join of this.#active.values()) join.onDatagram(datagram, index, nowMs);
    });
  }

  /** The tap's destination: the counter of every join. */
  get counter(): Endpoint {
    return this.#tap.endpoint;
  }

  get options(): FastChannelChangeOptions {
    return this.#options;
  }

  /** A new burst rate applies to later joins (the cache's payload and bound are fixed for its life). */
  set burstRate(rate: number) {
    this.#options = { ...this.#options, burstRate: rate };
  }

  /**
   * Adds `to` with a burst from the cache (or live, without one): `join`
   * is DataPlane.joinFlow with the subscriber added, the tap as counter.
   * Resolves once the plane serves it.
   */
  async add(to: Endpoint, join: (after: number, force: boolean) => Promise<JoinResult>): Promise<FastJoinOutcome> {
    if (this.#closed) throw new ClosedError('flow');
    const key = endpointKey(to);
    if (this.#active.has(key)) throw new InvalidArgumentError(`${formatEndpoint(to)} is already joining`);
    const snapshot = this.#cache.snapshot();
    this.#joins++;
    if (snapshot) this.#fastJoins++;
    else this.#fallbacks++;
    const socket = this.#socket(to.family);
    const feeder = new FastJoin({
      snapshot,
      lastIndex: this.#lastIndex,
      burstRate: this.#options.burstRate,
      send: (d) => socket.send(d, to.port, to.address),
      join,
    });
    this.#active.set(key, feeder);
    feeder.start();
    try {
      const outcome = await feeder.result;
      if (outcome.forced) this.#forced++;
      return outcome;
    } finally {
      if (this.#active.get(key) === feeder) this.#active.delete(key);
    }
  }

  /** Ends the join of `to`, if one is in progress (removeSubscriber): its add() rejects and the plane never gets it. */
  cancel(to: Endpoint): void {
    const key = endpointKey(to);
    this.#active.get(key)?.cancel(new InvalidArgumentError(`${formatEndpoint(to)} was removed while joining`));
    this.#active.delete(key);
  }

  stats(): FastChannelChangeStats {
    const c = this.#cache.stats();
    return {
      cacheBytes: c.ready ? c.bytes : 0,
      cacheDatagrams: c.ready ? c.datagrams : 0,
      randomAccessPoints: c.raps,
      cacheOverflows: c.overflows,
      joins: this.#joins,
      fastJoins: this.#fastJoins,
      fallbacks: this.#fallbacks,
      forcedJoins: this.#forced,
    };
  }

  /** Stops the cache and every join in progress (they reject). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    for (const join of this.#active.values()) join.cancel(new ClosedError('flow'));
    this.#active.clear();
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
  }

  #socket(family: 4 | 6): dgram.Socket {
    let s = this.#sockets.get(family);
    if (!s) {
      s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', sendBufferSize: 4 << 20 });
      // Sends only; a refused burst datagram is the subscriber's loss, never an exception.
      s.on('error', () => undefined);
      s.unref();
      this.#sockets.set(family, s);
    }
    return s;
  }
}
