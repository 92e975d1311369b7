/**
 * The batched tier, application side: starts the worker, turns DataPlane
 * calls into requests on its channel (posted, then the worker is woken
 * through an eventfd), and builds stats from the counters the worker writes
 * into shared memory. No packet ever reaches this thread.
 */
import { multicastNote } from '../../sys/multicast.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { probeSteering } from '../../sys/reuseport.js';
import type { DataPlane, DataPlaneOptions, JoinPoint, JoinResult, TierProvider } from '../common/types.js';
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import type { FlowStats } from '../common/counters.js';
import { ClosedError, InvalidArgumentError, NotSupportedError, type EngineFailedError, type SluiceError } from '../../errors.js';
import { closeFd } from '../../sys/udp-socket.js';
import { Waker } from '../../sys/poller.js';
import { probeBatchedIo } from '../../sys/probe.js';
import { txtimeNote } from '../../sys/txtime.js';
import { WorkerChannel } from '../../worker/channel.js';
import { workerEntry } from '../../worker/spawn.js';
import { D, F, destinationSnapshot, flowDrops, newDestinationCounters, newFlowCounters } from './shared-counters.js';
import type {
  BatchedFlowDetail,
  BatchedNotifications,
  BatchedRequests,
  DestinationBinding,
  EngineOptions,
  FlowOptions,
  JoinRequest,
  WorkerData,
} from './protocol.js';
import { DEFAULT_SOCKET_BUFFER } from '../common/defaults.js';
import { WorkersPlane, resolveWorkers } from './workers-plane.js';

export const DEFAULT_HOLD_MS = 1;
const DEFAULT_BATCH = 64;
/** 256 × 64 KiB of address space; resident only where datagrams land. */
const DEFAULT_SLOTS = 256;

interface FlowRecord {
  plan: FlowPlan;
  listen: Endpoint;
  readonly counters: Float64Array;
  destinations: Map<string, { endpoint: Endpoint; counters: Float64Array }>;
  /** The flow's sockets as the worker opened them: closed from here if the worker dies. */
  fds: readonly number[];
}

/** How the engine is named in errors and logs unless the caller says otherwise. */
export const BATCHED_ENGINE_LABEL = "the batched tier's engine (worker thread 'sluice-batched')";

export type { BatchedFlowDetail };

export class BatchedPlane implements DataPlane {
  readonly tier = 'batched' as const;
  readonly #channel: WorkerChannel<BatchedRequests, BatchedNotifications>;
  readonly #waker: Waker;
  readonly #flows: Map<string, FlowRecord>;
  #closed: Promise<void> | undefined;
  readonly #onEngineFailed: ((error: EngineFailedError) => void) | undefined;
  /** Faults the engine reported outside any request (kept for inspection, newest last). */
  readonly faults: { flow?: string; error: SluiceError }[] = [];
  /**
   * Hears every suspension (until > 0, ms since the epoch) and resumption
   * (until 0) of a destination `to` (`udp://HOST:PORT`) of flow `id`: the
   * kernel tier mirrors them in its maps. Counters need no listener.
   */
  onSuspension: ((id: string, to: string, until: number) => void) | undefined;

  private constructor(
    channel: WorkerChannel<BatchedRequests, BatchedNotifications>,
    waker: Waker,
    flows: Map<string, FlowRecord>,
    onEngineFailed: DataPlaneOptions['onEngineFailed'],
  ) {
    this.#channel = channel;
    this.#waker = waker;
    this.#flows = flows;
    this.#onEngineFailed = onEngineFailed;
    channel.on('suspension', (m) => this.onSuspension?.(m.flow, m.to, m.until));
    channel.on('fault', (error, flow) => {
      this.faults.push({ ...(flow ? { flow } : {}), error });
      if (this.faults.length > 100) this.faults.shift();
    });
    channel.on('failed', (e) => {
      // A worker's descriptors belong to the process: they outlive it. Once
      // its thread is gone (an uncaught error is reported before the exit)
      // they are closed from here, so their ports are free again.
      if (channel.exitCode === undefined) void channel.exited.then(() => this.#releaseSockets());
      else this.#releaseSockets();
      this.#onEngineFailed?.(e);
    });
  }

  /** The engine's failure, once it stopped on its own (DataPlane.failure). */
  get failure(): EngineFailedError | undefined {
    return this.#channel.failure;
  }

  /**
   * Starts the worker. `label` names the engine in an EngineFailedError
   * (the kernel tier names its companion).
   */
  static async start(options: DataPlaneOptions, label = BATCHED_ENGINE_LABEL): Promise<BatchedPlane> {
    const probe = probeBatchedIo();
    if (!probe.available) throw new NotSupportedError("tier 'batched' is unavailable", probe.reason);
    const engine: EngineOptions = {
      holdMs: options.batchHoldMs ?? DEFAULT_HOLD_MS,
      batch: DEFAULT_BATCH,
      slots: DEFAULT_SLOTS,
      socketBufferBytes: options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER,
      gso: probe.gso,
      gsoMaxSegments: probe.gsoMaxSegments,
      gro: probe.gro,
    };
    const waker = new Waker();
    const flows = new Map<string, FlowRecord>();
    try {
      const channel = await WorkerChannel.start<BatchedRequests, BatchedNotifications, undefined, WorkerData>({
        spawn: { entry: workerEntry(import.meta.url, './worker'), name: 'sluice-batched', workerData: { wakeFd: waker.fd, options: engine } },
        engine: label,
        wake: () => waker.signal(),
        // An idle engine must not keep the process alive; running flows do, as bound sockets do on the portable tier.
        keepAlive: () => flows.size > 0,
      });
      const plane = new BatchedPlane(channel, waker, flows, options.onEngineFailed);
      plane.onSuspension = options.onSuspension;
      return plane;
    } catch (e) {
      waker.close();
      throw e;
    }
  }

  /** `options` are for the kernel tier's spill flow (see FlowOptions). */
  async addFlow(id: string, plan: FlowPlan, options?: FlowOptions): Promise<{ listen: Endpoint }> {
    if (this.#flows.has(id)) throw new InvalidArgumentError(`flow id '${id}' is already in use`);
    const counters = newFlowCounters();
    const destinations = new Map(plan.destinations.map((ep) => [endpointKey(ep), { endpoint: ep, counters: newDestinationCounters() }]));
    const reply = await this.#request('add', { flow: id, plan, counters, destinations: bindings(destinations), ...(options ? { options } : {}) });
    const listen = reply.listen;
    this.#flows.set(id, { plan, listen, counters, destinations, fds: reply.fds });
    this.#channel.updateKeepAlive();
    return { listen };
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    await this.#update(id, plan);
  }

  /** DataPlane.joinFlow: the worker applies the plan between two flushes, exactly at the counter's count. */
  async joinFlow(id: string, plan: FlowPlan, at: JoinPoint): Promise<JoinResult> {
    const counter = plan.destinations.findIndex((ep) => endpointKey(ep) === endpointKey(at.counter));
    if (counter < 0) throw new InvalidArgumentError(`joinFlow: the counter destination ${formatEndpoint(at.counter)} is not in the plan`);
    const reply = await this.#update(id, plan, { counter, after: at.after, force: at.force === true });
    return { applied: reply.applied === true, count: reply.count ?? 0, overlap: 0 };
  }

  async #update(id: string, plan: FlowPlan, join?: JoinRequest): Promise<BatchedRequests['update']['result']> {
    const rec = this.#flows.get(id);
    if (!rec) throw new InvalidArgumentError(`no flow with id '${id}'`);
    // Destinations in both plans keep their counter arrays (and totals).
    const destinations = new Map(
      plan.destinations.map((ep) => {
        const key = endpointKey(ep);
        return [key, rec.destinations.get(key) ?? { endpoint: ep, counters: newDestinationCounters() }];
      }),
    );
    const reply = await this.#request('update', { flow: id, plan, destinations: bindings(destinations), ...(join ? { join } : {}) });
    if (reply.applied === false) return reply;
    rec.plan = plan;
    rec.destinations = destinations;
    rec.fds = reply.fds;
    return reply;
  }

  /** Mirrors another worker's suspension (until > 0) or resumption (0) of destination `to` of flow `id` (workers-plane.ts). */
  async mirrorSuspension(id: string, to: string, until: number): Promise<void> {
    if (this.#flows.has(id) && !this.#channel.failure) await this.#request('suspend', { flow: id, to, until });
  }

  async removeFlow(id: string): Promise<FlowStats | undefined> {
    const rec = this.#flows.get(id);
    if (!rec) return undefined;
    try {
      // A dead engine has nothing to stop: its sockets are closed from here.
      if (!this.#channel.failure) await this.#request('remove', { flow: id });
    } finally {
      this.#flows.delete(id);
      this.#channel.updateKeepAlive();
    }
    return snapshot(rec);
  }

  /** The flow's listen socket (the worker's descriptor; the process owns it). */
  listenFd(id: string): number {
    const fd = this.#flows.get(id)?.fds[0];
    if (fd === undefined) throw new InvalidArgumentError(`no flow with id '${id}'`);
    return fd;
  }

  /** The address the flow's listen socket is bound to (the port the kernel chose for 0). */
  flowListen(id: string): Endpoint | undefined {
    return this.#flows.get(id)?.listen;
  }

  flowStats(id: string): FlowStats | undefined {
    const rec = this.#flows.get(id);
    return rec ? snapshot(rec) : undefined;
  }

  /** Engine detail of one flow (batching and GSO effectiveness). */
  flowDetail(id: string): BatchedFlowDetail | undefined {
    const rec = this.#flows.get(id);
    if (!rec) return undefined;
    const c = rec.counters;
    return {
      recvCalls: c[F.recvCalls]!,
      sendCalls: c[F.sendCalls]!,
      gsoMessages: c[F.gsoMessages]!,
      gsoSegments: c[F.gsoSegments]!,
      groBuffers: c[F.groBuffers]!,
      gsoOff: [...rec.destinations.values()].filter((d) => d.counters[D.gsoOff] === 1).map((d) => formatEndpoint(d.endpoint)),
      icmpUnmatched: c[F.icmpUnmatched]!,
    };
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      // The worker flushes, closes every socket and answers; if it cannot
      // (it failed meanwhile, or was terminated), its sockets are closed here.
      if (!(await this.#channel.close({ request: 'close' }))) this.#releaseSockets();
      this.#flows.clear();
      this.#waker.close();
    })();
    return this.#closed;
  }

  #request<Op extends keyof BatchedRequests>(op: Op, body: BatchedRequests[Op]['request']): Promise<BatchedRequests[Op]['result']> {
    if (this.#closed && !this.#channel.failure) return Promise.reject(new ClosedError('batched data plane'));
    return this.#channel.request(op, body);
  }

  /** Closes the sockets a dead worker left open, so their ports are free again. */
  #releaseSockets(): void {
    for (const rec of this.#flows.values()) {
      for (const fd of rec.fds) closeFd(fd);
      rec.fds = [];
    }
  }
}

function bindings(m: Map<string, { endpoint: Endpoint; counters: Float64Array }>): DestinationBinding[] {
  return [...m.values()].map((d) => ({ endpoint: d.endpoint, counters: d.counters }));
}

function snapshot(rec: FlowRecord): FlowStats {
  const c = rec.counters;
  return {
    name: rec.plan.name,
    type: rec.plan.type,
    tier: 'batched',
    listen: formatEndpoint(rec.listen),
    packetsIn: c[F.packetsIn]!,
    bytesIn: c[F.bytesIn]!,
    packetsOut: c[F.packetsOut]!,
    bytesOut: c[F.bytesOut]!,
    drops: flowDrops(c),
    destinations: [...rec.destinations.values()].map((d) => destinationSnapshot(formatEndpoint(d.endpoint), d.counters)),
  };
}

/** What socket buffers a relay will get: *FORCE needs CAP_NET_ADMIN, else rmem_max/wmem_max cap the request. */
function socketBufferNotes(): string[] {
  const read = (f: string) => {
    try {
      return Number(readFileSync(`/proc/sys/net/core/${f}`, 'utf8').trim());
    } catch {
      return undefined;
    }
  };
  const r = read('rmem_max');
  const w = read('wmem_max');
  if (r === undefined || w === undefined) return [];
  const root = process.getuid?.() === 0;
  return [
    root
      ? `socket buffers: ${DEFAULT_SOCKET_BUFFER >> 20} MiB per flow socket (root: SO_RCVBUFFORCE/SO_SNDBUFFORCE)`
      : `socket buffers: capped at net.core.rmem_max=${r} / wmem_max=${w} bytes (raise them, or run with CAP_NET_ADMIN, to absorb bursts)`,
  ];
}

/** What `--workers` can do here: the core count 'auto' takes, and whether the kernel takes the steering program. */
function workersNote(): string {
  const steer = probeSteering();
  const auto = `'auto' = ${availableParallelism()} here`;
  return steer.available
    ? `workers: --workers N|auto (${auto}; default 1): one SO_REUSEPORT socket per worker, each source kept on one worker by a classic BPF program`
    : `workers: only 1 (SO_REUSEPORT steering unavailable: ${steer.reason})`;
}

export const batchedProvider: TierProvider = {
  tier: 'batched',
  sendEngine: 'batched',
  async probe() {
    const p = probeBatchedIo();
    if (!p.available) return { tier: 'batched', available: false, detail: p.reason, notes: p.notes };
    const gso = p.gso ? `GSO up to ${p.gsoMaxSegments} segments` : 'no GSO';
    return {
      tier: 'batched',
      available: true,
      detail: `recvmmsg/sendmmsg in a worker thread, ${gso}, ${p.gro ? 'GRO' : 'no GRO'}`,
      // txtimeNote never throws: a failed detection is reported as the note.
      notes: [...p.notes, ...socketBufferNotes(), workersNote(), txtimeNote(), ...[multicastNote()].filter((n) => n !== undefined)],
    };
  },
  async create(options) {
    const workers = resolveWorkers(options.workers);
    return workers > 1 ? WorkersPlane.start(options, workers, (o, label) => BatchedPlane.start(o, label), BATCHED_ENGINE_LABEL) : BatchedPlane.start(options);
  },
};
