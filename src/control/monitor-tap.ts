/**
 * MonitorTap: how Sluice watches a flow's stream on every tier alike. The
 * tap is a loopback UDP socket Sluice owns, added to the flow's plan as one
 * more (hidden) destination, so each tier sends it one copy of every
 * accepted datagram — the only copy monitoring costs, whatever the number
 * of subscribers — and the tap hands that copy to the flow's stream monitor
 * (src/media) and to whoever else asked to see the stream (fast channel
 * change's cache). The tier needs no monitoring code of its own, and the
 * counters have the same names everywhere.
 *
 * Arrival times are the tap's, i.e. after the relay: the jitter it measures
 * includes the relay's own, which is what subscribers see too.
 */
import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import type { MonitorPlan } from '../policy/compile.js';
import type { MediaAlarm, MediaStats, StreamMonitor } from '../media/monitor-types.js';

/** Builds the stream monitor a plan asks for (src/media/monitor.ts createMonitor, or a test's). */
export type MonitorFactory = (plan: MonitorPlan, onAlarm: (alarm: MediaAlarm) => void) => StreamMonitor;

/** Sees every datagram the tap receives: `index` counts them from 1. */
export type TapListener = (datagram: Buffer, index: number, nowMs: number) => void;

/** How often the monitor's time-driven checks run (PAT missing, PCR repetition, stream stopped). */
const TICK_MS = 100;
/**
 * Receive buffer the tap asks for: a burst the event loop is late for must
 * wait here, not be lost (a lost copy would read as a lost packet). The
 * kernel caps it at net.core.rmem_max; losses the tap sees are counted.
 */
const TAP_RCVBUF = 8 << 20;

export class MonitorTap {
  readonly #socket: Socket;
  readonly #endpoint: Endpoint;
  readonly #factory: MonitorFactory;
  readonly #onAlarm: (alarm: MediaAlarm) => void;
  readonly #listeners = new Set<TapListener>();
  readonly #timer: NodeJS.Timeout;
  #plan: MonitorPlan;
  #monitor: StreamMonitor;
  #received = 0;
  #closed = false;

  private constructor(socket: Socket, endpoint: Endpoint, plan: MonitorPlan, factory: MonitorFactory, onAlarm: (alarm: MediaAlarm) => void) {
    this.#socket = socket;
    this.#endpoint = endpoint;
    this.#plan = plan;
    this.#factory = factory;
    this.#onAlarm = onAlarm;
    this.#monitor = factory(plan, onAlarm);
    socket.on('message', (msg) => this.#receive(msg));
    // A socket error on a receive-only loopback socket is not expected; it must not crash the process.
    socket.on('error', () => undefined);
    this.#timer = setInterval(() => this.#monitor.tick(performance.now()), TICK_MS);
    this.#timer.unref();
  }

  /**
   * Opens a tap for a flow whose listen address is `listen`: on the
   * loopback address of the same family, so the data plane can reach it
   * with the same socket family as its subscribers.
   */
  static async open(listen: Endpoint, plan: MonitorPlan, factory: MonitorFactory, onAlarm: (alarm: MediaAlarm) => void): Promise<MonitorTap> {
    const v6 = listen.family === 6;
    const address = v6 ? '::1' : '127.0.0.1';
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4', recvBufferSize: TAP_RCVBUF });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address, port: 0, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const endpoint: Endpoint = { address, port: socket.address().port, family: v6 ? 6 : 4 };
    return new MonitorTap(socket, endpoint, plan, factory, onAlarm);
  }

  /** The destination the data plane sends the tap's copies to. */
  get endpoint(): Endpoint {
    return this.#endpoint;
  }

  /** `udp://HOST:PORT` of `endpoint`, as the tiers name destinations in their stats. */
  get to(): string {
    return formatEndpoint(this.#endpoint);
  }

  /** Datagrams read so far (the last `index` a listener saw). */
  get received(): number {
    return this.#received;
  }

  /**
   * Applies a changed plan: a different payload or clock rate starts a new
   * monitor (its counters start at zero); the same plan keeps the monitor.
   */
  update(plan: MonitorPlan): void {
    if (plan.payload === this.#plan.payload && plan.rtpClockRate === this.#plan.rtpClockRate) return;
    this.#plan = plan;
    this.#monitor = this.#factory(plan, this.#onAlarm);
  }

  /** Calls `listener` with every datagram from now on; returns the function that stops it. */
  onDatagram(listener: TapListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  stats(): MediaStats {
    return this.#monitor.stats();
  }

  /** Stops the monitor and closes the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#listeners.clear();
    this.#socket.close();
  }

  #receive(msg: Buffer): void {
    const now = performance.now();
    const index = ++this.#received;
    this.#monitor.push(msg, now);
    for (const listener of this.#listeners) {
      try {
        listener(msg, index, now);
      } catch {
        // A consumer's bug must not stop the monitor or the other consumers.
      }
    }
  }
}
