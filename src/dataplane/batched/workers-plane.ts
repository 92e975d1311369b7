/**
 * The batched tier on several cores: N engines (worker threads), each with
 * its own SO_REUSEPORT listen socket on the flow's address, and a classic
 * BPF program on the reuseport group (src/sys/reuseport.ts) that sends
 * every source (address and port) to one worker. Per-source order holds;
 * different sources are spread over the workers. A single source's
 * datagrams all reach one worker: the gain is with many sources or many
 * flows, not with one source fanned out (docs/TIERS.md, "Workers").
 *
 * Every flow runs on every worker with the same plan; stats are the sum of
 * the workers' counters, and FlowStats.workers keeps each worker's share.
 */
import { availableParallelism } from 'node:os';
import type { DataPlane, DataPlaneOptions } from '../common/types.js';
import type { FlowPlan } from '../../policy/compile.js';
import type { Endpoint } from '../../wire/endpoint.js';
import type { DestinationStats, FlowStats, WorkerFlowCounters } from '../common/counters.js';
import { InvalidArgumentError, type EngineFailedError } from '../../errors.js';
import { RawUdpSocket } from '../../sys/udp-socket.js';
import { MAX_STEERED_SOCKETS, attachSteering } from '../../sys/reuseport.js';
import type { BatchedFlowDetail, FlowOptions } from './protocol.js';

/** One worker: a BatchedPlane (batched-plane.ts), seen through what this file needs of it. */
export interface WorkerEngine extends DataPlane {
  addFlow(id: string, plan: FlowPlan, options?: FlowOptions): Promise<{ listen: Endpoint }>;
  listenFd(id: string): number;
  flowListen(id: string): Endpoint | undefined;
  flowDetail(id: string): BatchedFlowDetail | undefined;
  mirrorSuspension(id: string, to: string, until: number): Promise<void>;
}

/** Starts one worker; `label` names it in an EngineFailedError. */
export type StartWorker = (options: DataPlaneOptions, label: string) => Promise<WorkerEngine>;

/** `workers: 'auto'` is one per core (os.availableParallelism()); a number is taken as given. */
export function resolveWorkers(workers: number | 'auto' | undefined): number {
  const n = workers === 'auto' ? availableParallelism() : (workers ?? 1);
  if (!Number.isInteger(n) || n < 1 || n > MAX_STEERED_SOCKETS) {
    throw new InvalidArgumentError(`workers must be 'auto' or an integer 1..${MAX_STEERED_SOCKETS}, not ${String(workers)}`);
  }
  return n;
}

export class WorkersPlane implements DataPlane {
  readonly tier = 'batched' as const;
  readonly #planes: readonly WorkerEngine[];

  private constructor(planes: readonly WorkerEngine[]) {
    this.#planes = planes;
  }

  /** Starts `workers` engines through `startWorker` (at least 2; one is a plain BatchedPlane). */
  static async start(options: DataPlaneOptions, workers: number, startWorker: StartWorker, label: string): Promise<WorkersPlane> {
    const planes: WorkerEngine[] = [];
    let failed = false;
    const onEngineFailed = (e: EngineFailedError) => {
      // One dead worker fails the plane: its sources would be lost.
      if (failed) return;
      failed = true;
      options.onEngineFailed?.(e);
    };
    // An ICMP error reaches one worker (the kernel's own hash picks it, not
    // the steering program), while copies leave from every worker: a
    // suspension or resumption one worker decides is mirrored in the others.
    const suspension = (from: number) => (id: string, to: string, until: number) => {
      options.onSuspension?.(id, to, until);
      planes.forEach((p, i) => {
        if (i !== from) p.mirrorSuspension(id, to, until).catch(() => undefined);
      });
    };
    try {
      for (let i = 0; i < workers; i++) {
        planes.push(await startWorker({ ...options, onEngineFailed, onSuspension: suspension(i) }, `${label} (worker ${i + 1} of ${workers})`));
      }
    } catch (e) {
      await Promise.allSettled(planes.map((p) => p.close()));
      throw e;
    }
    return new WorkersPlane(planes);
  }

  get workers(): number {
    return this.#planes.length;
  }

  /** The first worker's listen socket: the reuseport group's program is reached through any of its sockets. */
  listenFd(id: string): number {
    return this.#planes[0]!.listenFd(id);
  }

  get failure(): EngineFailedError | undefined {
    return this.#planes.find((p) => p.failure)?.failure;
  }

  async addFlow(id: string, plan: FlowPlan): Promise<{ listen: Endpoint }> {
    // With SO_REUSEPORT, a bind to a port another socket of this user holds
    // with SO_REUSEPORT would join its group: a plain bind first says
    // EADDRINUSE for a taken port, as on one worker.
    if (plan.listen.port !== 0) checkFree(plan.listen);
    const first = await this.#planes[0]!.addFlow(id, plan, { reusePort: true });
    const fixed: FlowPlan = { ...plan, listen: { ...plan.listen, port: first.listen.port } };
    let added = 1;
    try {
      for (; added < this.#planes.length; added++) await this.#planes[added]!.addFlow(id, fixed, { reusePort: true });
      attachSteering(this.#planes[0]!.listenFd(id), this.#planes.length);
    } catch (e) {
      await Promise.allSettled(this.#planes.slice(0, added).map((p) => p.removeFlow(id)));
      throw e;
    }
    return first;
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    const listen = this.#planes[0]!.flowListen(id);
    if (!listen) throw new InvalidArgumentError(`no flow with id '${id}'`);
    const fixed: FlowPlan = { ...plan, listen: { ...plan.listen, port: listen.port } };
    await Promise.all(this.#planes.map((p) => p.updateFlow(id, fixed)));
  }

  async removeFlow(id: string): Promise<FlowStats | undefined> {
    const parts = await Promise.all(this.#planes.map((p) => p.removeFlow(id)));
    return sum(parts);
  }

  flowStats(id: string): FlowStats | undefined {
    return sum(this.#planes.map((p) => p.flowStats(id)));
  }

  flowDetail(id: string): BatchedFlowDetail | undefined {
    const parts = this.#planes.map((p) => p.flowDetail(id));
    if (parts.some((d) => d === undefined)) return undefined;
    const ds = parts as BatchedFlowDetail[];
    const add = (k: 'recvCalls' | 'sendCalls' | 'gsoMessages' | 'gsoSegments' | 'groBuffers' | 'icmpUnmatched') => ds.reduce((n, d) => n + d[k], 0);
    return {
      recvCalls: add('recvCalls'),
      sendCalls: add('sendCalls'),
      gsoMessages: add('gsoMessages'),
      gsoSegments: add('gsoSegments'),
      groBuffers: add('groBuffers'),
      gsoOff: [...new Set(ds.flatMap((d) => d.gsoOff))],
      icmpUnmatched: add('icmpUnmatched'),
      workers: ds.length,
    };
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled(this.#planes.map((p) => p.close()));
    const bad = results.find((r) => r.status === 'rejected');
    if (bad) throw bad.reason;
  }
}

/** Throws the bind's SyscallError (EADDRINUSE) if `ep` is taken. */
function checkFree(ep: Endpoint): void {
  const s = RawUdpSocket.open(ep.family);
  try {
    s.bind(ep);
  } finally {
    s.close();
  }
}

function addDrops<T extends Record<string, number>>(a: T, b: T): T {
  const out: Record<string, number> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out as T;
}

/** The workers' stats of one flow summed; `workers` keeps each one's counters. */
function sum(parts: readonly (FlowStats | undefined)[]): FlowStats | undefined {
  if (parts.some((p) => p === undefined)) return undefined;
  const ps = parts as FlowStats[];
  const byTo = new Map<string, DestinationStats>();
  for (const d of ps.flatMap((p) => p.destinations)) {
    const had = byTo.get(d.to);
    if (!had) {
      byTo.set(d.to, d);
      continue;
    }
    const until = Math.max(had.suspendedUntil ?? 0, d.suspendedUntil ?? 0);
    const lastError = d.lastError ?? had.lastError;
    byTo.set(d.to, {
      to: d.to,
      packetsOut: had.packetsOut + d.packetsOut,
      bytesOut: had.bytesOut + d.bytesOut,
      drops: addDrops(had.drops, d.drops),
      ...(lastError ? { lastError } : {}),
      ...(until ? { suspendedUntil: until } : {}),
    });
  }
  const workers: WorkerFlowCounters[] = ps.map((p) => ({
    packetsIn: p.packetsIn,
    bytesIn: p.bytesIn,
    packetsOut: p.packetsOut,
    bytesOut: p.bytesOut,
    drops: Object.values(p.drops).reduce((n, v) => n + v, 0),
  }));
  const first = ps[0]!;
  return {
    ...first,
    packetsIn: ps.reduce((n, p) => n + p.packetsIn, 0),
    bytesIn: ps.reduce((n, p) => n + p.bytesIn, 0),
    packetsOut: ps.reduce((n, p) => n + p.packetsOut, 0),
    bytesOut: ps.reduce((n, p) => n + p.bytesOut, 0),
    drops: ps.slice(1).reduce((d, p) => addDrops(d, p.drops), first.drops),
    destinations: [...byTo.values()],
    workers,
  };
}
