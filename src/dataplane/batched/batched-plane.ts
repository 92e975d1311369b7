/**
 * The batched tier, application side: starts the worker, turns DataPlane
 * calls into requests (posted, then the worker is woken through an
 * eventfd), and builds stats from the counters the worker writes into
 * shared memory. No packet ever reaches this thread.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import type { DataPlane, DataPlaneOptions, TierProvider } from '../types.js';
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import type { FlowStats } from '../../stats/counters.js';
import { ClosedError, EngineError, EngineFailedError, InvalidArgumentError, NotSupportedError, SyscallError } from '../../errors.js';
import { closeFd } from '../../sys/udp-socket.js';
import { Waker } from '../../sys/poller.js';
import { probeBatchedIo } from '../../sys/probe.js';
import { txtimeNote } from '../../sys/txtime.js';
import { D, F, destinationSnapshot, flowDrops, newDestinationCounters, newFlowCounters } from './shared-counters.js';
import type { DestinationBinding, EngineOptions, ErrorInfo, FlowOptions, Reply, Request, WorkerData } from './protocol.js';

const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;
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

/** Engine-level detail for `sluice doctor`, the bench and debugging. */
export interface BatchedFlowDetail {
  readonly recvCalls: number;
  readonly sendCalls: number;
  readonly gsoMessages: number;
  readonly gsoSegments: number;
  readonly groBuffers: number;
  /** Destinations whose GSO was switched off after the kernel refused it. */
  readonly gsoOff: readonly string[];
  /** ICMP errors read that named no current destination (e.g. a subscriber removed since). */
  readonly icmpUnmatched: number;
}

export class BatchedPlane implements DataPlane {
  readonly tier = 'batched' as const;
  readonly #worker: Worker;
  readonly #waker: Waker;
  readonly #flows = new Map<string, FlowRecord>();
  readonly #waiting = new Map<number, { resolve: (r: Reply & { kind: 'reply' }) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #failure: EngineFailedError | undefined;
  #closed: Promise<void> | undefined;
  /** close() asked the worker to stop: its exit is not a failure. */
  #closing = false;
  /** The worker answered 'close': it closed every socket itself. */
  #closeAcked = false;
  readonly #exited: Promise<void>;
  readonly #label: string;
  readonly #onEngineFailed: ((error: EngineFailedError) => void) | undefined;
  /** Faults the engine reported outside any request (kept for inspection, newest last). */
  readonly faults: { flow?: string; error: ErrorInfo }[] = [];
  /**
   * Hears every suspension (until > 0, ms since the epoch) and resumption
   * (until 0) of a destination `to` (`udp://HOST:PORT`) of flow `id`: the
   * kernel tier mirrors them in its maps. Counters need no listener.
   */
  onSuspension: ((id: string, to: string, until: number) => void) | undefined;

  private constructor(worker: Worker, waker: Waker, label: string, onEngineFailed: DataPlaneOptions['onEngineFailed']) {
    this.#worker = worker;
    this.#waker = waker;
    this.#label = label;
    this.#onEngineFailed = onEngineFailed;
    worker.on('message', (m: Reply) => this.#onReply(m));
    // An uncaught exception in the worker: 'error', then 'exit'.
    worker.on('error', (e: unknown) => this.#fail(e instanceof Error ? `uncaught ${e.name}: ${e.message}` : `uncaught ${String(e)}`, e));
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        this.#fail(`its thread exited (code ${code})`);
        // A worker's descriptors belong to the process: they outlive it.
        if (!this.#closeAcked) this.#releaseSockets();
        resolve();
      });
    });
  }

  /** The engine's failure, once it stopped on its own (DataPlane.failure). */
  get failure(): EngineFailedError | undefined {
    return this.#failure;
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
    const data: WorkerData = { wakeFd: waker.fd, options: engine };
    const worker = spawnWorker(data);
    const plane = new BatchedPlane(worker, waker, label, options.onEngineFailed);
    plane.onSuspension = options.onSuspension;
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: Reply) => {
        if (m.kind !== 'ready') return;
        worker.off('message', onMessage);
        worker.off('error', reject);
        resolve();
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    // An idle engine must not keep the process alive; flows and pending requests do.
    plane.#ref();
    return plane;
  }

  /** `options` are for the kernel tier's spill flow (see FlowOptions). */
  async addFlow(id: string, plan: FlowPlan, options?: FlowOptions): Promise<{ listen: Endpoint }> {
    if (this.#flows.has(id)) throw new InvalidArgumentError(`flow id '${id}' is already in use`);
    const counters = newFlowCounters();
    const destinations = new Map(plan.destinations.map((ep) => [endpointKey(ep), { endpoint: ep, counters: newDestinationCounters() }]));
    const reply = await this.#request({ op: 'add', id: 0, flow: id, plan, counters, destinations: bindings(destinations), ...(options ? { options } : {}) });
    const listen = reply.listen!;
    this.#flows.set(id, { plan, listen, counters, destinations, fds: reply.fds ?? [] });
    this.#ref();
    return { listen };
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    const rec = this.#flows.get(id);
    if (!rec) throw new InvalidArgumentError(`no flow with id '${id}'`);
    // Destinations in both plans keep their counter arrays (and totals).
    const destinations = new Map(
      plan.destinations.map((ep) => {
        const key = endpointKey(ep);
        return [key, rec.destinations.get(key) ?? { endpoint: ep, counters: newDestinationCounters() }];
      }),
    );
    const reply = await this.#request({ op: 'update', id: 0, flow: id, plan, destinations: bindings(destinations) });
    rec.plan = plan;
    rec.destinations = destinations;
    if (reply.fds) rec.fds = reply.fds;
  }

  async removeFlow(id: string): Promise<FlowStats | undefined> {
    const rec = this.#flows.get(id);
    if (!rec) return undefined;
    try {
      // A dead engine has nothing to stop: its sockets are closed from here.
      if (!this.#failure) await this.#request({ op: 'remove', id: 0, flow: id });
    } finally {
      this.#flows.delete(id);
      this.#ref();
    }
    return snapshot(rec);
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
      // Stay referenced until the worker has exited, or the wait below could be abandoned.
      this.#worker.ref();
      if (!this.#failure) {
        try {
          await this.#request({ op: 'close', id: 0 });
          this.#closeAcked = true;
        } catch {
          // It failed meanwhile: its exit handler releases the sockets.
        }
      }
      this.#closing = true;
      await this.#exited;
      this.#flows.clear();
      this.#waker.close();
    })();
    return this.#closed;
  }

  #request(req: Request): Promise<Reply & { kind: 'reply' }> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed && req.op !== 'close') return Promise.reject(new ClosedError('batched data plane'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#ref();
      this.#worker.postMessage({ ...req, id });
      this.#waker.signal();
    });
  }

  #onReply(m: Reply): void {
    if (m.kind === 'suspension') {
      this.onSuspension?.(m.flow, m.to, m.until);
      return;
    }
    if (m.kind === 'fault') {
      this.faults.push({ ...(m.flow ? { flow: m.flow } : {}), error: m.error });
      if (this.faults.length > 100) this.faults.shift();
      return;
    }
    if (m.kind !== 'reply') return;
    const w = this.#waiting.get(m.id);
    if (!w) return;
    this.#waiting.delete(m.id);
    this.#ref();
    if (m.error) w.reject(toError(m.error, this.#label));
    else w.resolve(m);
  }

  /** The worker stopped, or is stopping, without being asked: every caller learns it once. */
  #fail(how: string, cause?: unknown): void {
    if (this.#failure || this.#closing) return;
    const e = new EngineFailedError(this.#label, how, cause === undefined ? undefined : { cause });
    this.#failure = e;
    for (const w of this.#waiting.values()) w.reject(e);
    this.#waiting.clear();
    this.#onEngineFailed?.(e);
  }

  /** Closes the sockets a dead worker left open, so their ports are free again. */
  #releaseSockets(): void {
    for (const rec of this.#flows.values()) {
      for (const fd of rec.fds) closeFd(fd);
      rec.fds = [];
    }
  }

  /** Running flows keep the process alive, as bound sockets do on the portable tier. */
  #ref(): void {
    if (this.#flows.size > 0 || this.#waiting.size > 0 || this.#closed) this.#worker.ref();
    else this.#worker.unref();
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

/** The engine's refusal of one request, as the error the caller sees; `engine` names it (the plane's label). */
function toError(info: ErrorInfo, engine: string): Error {
  if (info.op && info.errno) return new SyscallError(info.op, info.errno, info.detail);
  return new EngineError(engine, info.message);
}

/**
 * Starts the worker from `worker.js` next to this module. Run from source
 * (tsx, in tests) the entry is `worker.ts`, and Node 20 does not pass tsx's
 * loader to workers, so a two-line bootstrap registers it first.
 */
function spawnWorker(workerData: WorkerData): Worker {
  const options = { workerData, name: 'sluice-batched' };
  if (!fileURLToPath(import.meta.url).endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), options);
  const entry = JSON.stringify(new URL('./worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { ...options, eval: true });
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

export const batchedProvider: TierProvider = {
  tier: 'batched',
  async probe() {
    const p = probeBatchedIo();
    if (!p.available) return { tier: 'batched', available: false, detail: p.reason, notes: p.notes };
    const gso = p.gso ? `GSO up to ${p.gsoMaxSegments} segments` : 'no GSO';
    return {
      tier: 'batched',
      available: true,
      detail: `recvmmsg/sendmmsg in a worker thread, ${gso}, ${p.gro ? 'GRO' : 'no GRO'}`,
      // txtimeNote never throws: a failed detection is reported as the note.
      notes: [...p.notes, ...socketBufferNotes(), txtimeNote()],
    };
  },
  async create(options) {
    return BatchedPlane.start(options);
  },
};
