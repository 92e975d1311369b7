/**
 * An IP-level WAN emulator: an L2 bridge between two interfaces (veth ends
 * in a namespace of their own) that forwards every frame, ARP included,
 * after a per-direction bottleneck (rate + tail-drop queue), loss (random
 * and Gilbert-Elliott) and propagation delay. This machine's kernel has no
 * netem, so the benchmark and end-to-end tests of issue #7 bring this one;
 * unlike the UDP-level emulator (harness/wan/udp-emulator.ts) it shapes any IP
 * traffic, so plain TCP between two sites can cross it.
 *
 *   site A ─veth─ [aIf]  ══ aToB: queue, rate, loss, delay ══►  [bIf] ─veth─ site B
 *                        ◄══ bToA: queue, rate, loss, delay ══
 *
 * Model: wan-model.ts. Engine: ip-wan-engine.ts, in a worker thread so the
 * caller's event loop never delays a frame. The interfaces should carry
 * MTU-sized frames (segmentation offloads off on the senders' side, e.g.
 * `gso_max_segs 1`), or loss hits 64 KiB super-frames instead of packets;
 * frames larger than a slot are dropped and counted (`oversize`).
 *
 * Needs CAP_NET_RAW (AF_PACKET) and Linux ≥ 4.20 (PACKET_IGNORE_OUTGOING).
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SluiceError, SyscallError } from '../../src/errors.js';
import { Waker } from '../../src/sys/poller.js';
import { C, LANE_FIELDS, LATENESS_EDGES_MS, type IpWanWorkerData } from './ip-emulator-protocol.js';
import { DEFAULT_WAN_PARAMS, checkWanParams, type WanParams } from './wan-model.js';

export type { BurstLoss, WanParams } from './wan-model.js';

export interface IpWanOptions {
  /** Interface towards site A; frames read from it travel A→B. */
  aIf: string;
  bIf: string;
  aToB?: Partial<WanParams>;
  bToA?: Partial<WanParams>;
  /** PRNG seed (default 1); the two directions draw from different streams. */
  seed?: number;
  /**
   * Frames one direction can hold in queue and on the delay line (default
   * 8192: at 1500-byte packets, 50 Mbit/s x (100 ms queue + 300 ms delay)
   * needs ~1700). A full store drops (`dropFull`).
   */
  slots?: number;
  /** SCHED_FIFO priority of the forwarding thread (default 10; 0: normal scheduling). Needs CAP_SYS_NICE, else `nice` applies. */
  rtPriority?: number;
  /** Nice value of the forwarding thread when it cannot be real-time (default -10; root only). */
  nice?: number;
}

export interface LaneStats {
  rxFrames: number;
  /** IP bytes (frame minus Ethernet header) of the frames read. */
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  dropLoss: number;
  dropBurst: number;
  dropQueue: number;
  dropFull: number;
  oversize: number;
  gso: number;
  nonIp: number;
  maxIpBytes: number;
  sendErrors: number;
  sendRetries: number;
  kernelDrops: number;
  held: number;
  queuedBytes: number;
  /**
   * Least and most time the model gave an admitted frame from arrival to due
   * time (queue wait + serialization + delay), ms: the emulator's decision,
   * free of host timing. holdMinMs is HOLD_NONE (Number.MAX_VALUE) before any frame.
   */
  holdMinMs: number;
  holdMaxMs: number;
  /** Mean and max of (time sent − due time), ms, and counts per bucket (upper edges in `latenessEdgesMs`, last unbounded). */
  latenessMeanMs: number;
  latenessMaxMs: number;
  latenessHist: number[];
}

export interface IpWanStats {
  aToB: LaneStats;
  bToA: LaneStats;
  latenessEdgesMs: readonly number[];
}

const KEYS = [
  'rxFrames',
  'rxBytes',
  'txFrames',
  'txBytes',
  'dropLoss',
  'dropBurst',
  'dropQueue',
  'dropFull',
  'oversize',
  'gso',
  'nonIp',
  'maxIpBytes',
  'sendErrors',
  'sendRetries',
  'kernelDrops',
  'held',
  'queuedBytes',
  'holdMinMs',
  'holdMaxMs',
] as const;
/** Gauges and extremes: a difference of two snapshots keeps the later value. */
const NOT_SUMMED = new Set<string>(['held', 'queuedBytes', 'maxIpBytes', 'holdMinMs', 'holdMaxMs']);

/** Fraction of frames that left later than `ms` after their due time. */
export function lateFraction(s: LaneStats, ms: number): number {
  const total = s.latenessHist.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let above = 0;
  s.latenessHist.forEach((n, i) => {
    const lower = i === 0 ? 0 : LATENESS_EDGES_MS[i - 1]!;
    if (lower >= ms) above += n;
  });
  return above / total;
}

/** `after − before`, counter by counter (gauges and maxima taken from `after`). */
export function diffLane(after: LaneStats, before: LaneStats): LaneStats {
  const out = { ...after, latenessHist: after.latenessHist.map((v, i) => v - (before.latenessHist[i] ?? 0)) };
  for (const k of KEYS) if (!NOT_SUMMED.has(k)) out[k] = after[k] - before[k];
  const sent = out.txFrames;
  out.latenessMeanMs = sent > 0 ? (after.latenessMeanMs * after.txFrames - before.latenessMeanMs * before.txFrames) / sent : 0;
  return out;
}

export class IpWanEmulator {
  readonly #worker: Worker;
  readonly #waker: Waker;
  readonly #control = new SharedArrayBuffer(4);
  readonly #counters = new SharedArrayBuffer(2 * LANE_FIELDS * 8);
  readonly #exited: Promise<void>;
  #stopped = false;
  #error: Error | undefined;
  /** How the forwarding thread ended up scheduled ('SCHED_FIFO 10', 'nice -10' or 'normal'). */
  scheduling = 'unknown';
  readonly params: { aToB: WanParams; bToA: WanParams };

  private constructor(opts: IpWanOptions) {
    const aToB = { ...DEFAULT_WAN_PARAMS, ...opts.aToB };
    const bToA = { ...DEFAULT_WAN_PARAMS, ...opts.bToA };
    checkWanParams(aToB, 'ip-wan aToB');
    checkWanParams(bToA, 'ip-wan bToA');
    this.params = { aToB, bToA };
    this.#waker = new Waker();
    const data: IpWanWorkerData = {
      aIf: opts.aIf,
      bIf: opts.bIf,
      aToB,
      bToA,
      seed: opts.seed ?? 1,
      slots: opts.slots ?? 8192,
      wakeFd: this.#waker.fd,
      control: this.#control,
      counters: this.#counters,
      rtPriority: opts.rtPriority ?? 10,
      nice: opts.nice ?? -10,
    };
    this.#worker = spawnWorker(data);
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
  }

  /** Opens both interfaces and starts forwarding; rejects with the engine's SyscallError if it cannot. */
  static async start(opts: IpWanOptions): Promise<IpWanEmulator> {
    const emu = new IpWanEmulator(opts);
    await new Promise<void>((resolve, reject) => {
      emu.#worker.on('message', (m: { kind: string; message?: string; op?: string; errno?: string; detail?: string; scheduling?: string }) => {
        if (m.kind === 'ready') {
          emu.scheduling = m.scheduling ?? 'unknown';
          resolve();
        } else if (m.kind === 'error') {
          emu.#error = m.op && m.errno ? new SyscallError(m.op, m.errno, m.detail) : new SluiceError('SLUICE_ERR_ENGINE', m.message ?? 'ip-wan engine failed');
          reject(emu.#error);
        }
      });
      emu.#worker.once('error', (err) => {
        emu.#error = err;
        reject(err);
      });
      emu.#worker.once('exit', (code) => reject(new Error(`ip-wan engine exited (code ${code}) before it was ready`)));
    }).catch(async (err: unknown) => {
      await emu.stop();
      throw err;
    });
    return emu;
  }

  /** The engine's failure after start, if any (forwarding has then stopped). */
  get error(): Error | undefined {
    return this.#error;
  }

  stats(): IpWanStats {
    const f = new Float64Array(this.#counters);
    const lane = (i: number): LaneStats => {
      const b = i * LANE_FIELDS;
      const s = Object.fromEntries(KEYS.map((k) => [k, f[b + C[k]]!])) as Record<(typeof KEYS)[number], number>;
      const hist = Array.from({ length: LATENESS_EDGES_MS.length + 1 }, (_, j) => f[b + C.latenessHist + j]!);
      return {
        ...s,
        latenessMeanMs: s.txFrames > 0 ? f[b + C.latenessSumMs]! / s.txFrames : 0,
        latenessMaxMs: f[b + C.latenessMaxMs]!,
        latenessHist: hist,
      };
    };
    return { aToB: lane(0), bToA: lane(1), latenessEdgesMs: LATENESS_EDGES_MS };
  }

  /** Stops forwarding (frames still held are discarded) and closes the sockets. */
  async stop(): Promise<void> {
    if (this.#stopped) return this.#exited;
    this.#stopped = true;
    Atomics.store(new Int32Array(this.#control), 0, 1);
    this.#waker.signal();
    const timer = setTimeout(() => void this.#worker.terminate(), 2_000);
    await this.#exited;
    clearTimeout(timer);
    this.#waker.close();
  }
}

/**
 * Starts the worker from `ip-wan-worker.js` next to this module. Run from
 * source (tsx), the entry is the .ts file and Node 20 does not pass tsx's
 * loader to workers, so a bootstrap registers it first (as the batched tier does).
 */
function spawnWorker(workerData: IpWanWorkerData): Worker {
  const options = { workerData, name: 'sluice-ip-wan' };
  if (!fileURLToPath(import.meta.url).endsWith('.ts')) return new Worker(new URL('./ip-emulator-worker.js', import.meta.url), options);
  const entry = JSON.stringify(new URL('./ip-emulator-worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { ...options, eval: true });
}
