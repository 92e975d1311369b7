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
 * Model: ip-lane.ts (on model.ts). Engine: ip-emulator-engine.ts, in a worker thread so the
 * caller's event loop never delays a frame. The interfaces should carry
 * MTU-sized frames (segmentation offloads off on the senders' side, e.g.
 * `gso_max_segs 1`), or loss hits 64 KiB super-frames instead of packets;
 * frames larger than a slot are dropped and counted (`oversize`).
 *
 * Needs CAP_NET_RAW (AF_PACKET) and Linux ≥ 4.20 (PACKET_IGNORE_OUTGOING).
 */
import { Waker } from '../../src/sys/poller.js';
import { WorkerChannel } from '../../src/worker/channel.js';
import { workerEntry } from '../../src/worker/spawn.js';
import { C, LANE_FIELDS, LATENESS_EDGES_MS, type IpWanReady, type IpWanWorkerData } from './ip-emulator-protocol.js';
import { DEFAULT_WAN_PARAMS } from './ip-lane.js';
import { checkImpairment, type ImpairmentParams } from './model.js';

export type { BurstLoss, ImpairmentParams } from './model.js';

export interface IpWanOptions {
  /** Interface towards site A; frames read from it travel A→B. */
  aIf: string;
  bIf: string;
  aToB?: Partial<ImpairmentParams>;
  bToA?: Partial<ImpairmentParams>;
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

/** How the engine is named in its errors. */
const ENGINE = "the IP WAN emulator (worker thread 'sluice-ip-wan')";

type EngineChannel = WorkerChannel<Record<never, never>, Record<never, never>, IpWanReady>;

export class IpWanEmulator {
  readonly #channel: EngineChannel;
  readonly #waker: Waker;
  readonly #control: SharedArrayBuffer;
  readonly #counters: SharedArrayBuffer;
  #stopped: Promise<void> | undefined;
  #error: Error | undefined;
  /** How the forwarding thread ended up scheduled ('SCHED_FIFO 10', 'nice -10' or 'normal'). */
  readonly scheduling: string;
  readonly params: { aToB: ImpairmentParams; bToA: ImpairmentParams };

  private constructor(channel: EngineChannel, waker: Waker, control: SharedArrayBuffer, counters: SharedArrayBuffer, params: IpWanEmulator['params']) {
    this.#channel = channel;
    this.#waker = waker;
    this.#control = control;
    this.#counters = counters;
    this.params = params;
    this.scheduling = channel.readyInfo?.scheduling ?? 'unknown';
    // Forwarding stopped on its own: the engine's own error (a SyscallError), an uncaught one, or its exit.
    channel.on('failed', (e) => (this.#error = e.cause instanceof Error ? e.cause : e));
  }

  /** Opens both interfaces and starts forwarding; rejects with the engine's SyscallError if it cannot. */
  static async start(opts: IpWanOptions): Promise<IpWanEmulator> {
    const aToB = { ...DEFAULT_WAN_PARAMS, ...opts.aToB };
    const bToA = { ...DEFAULT_WAN_PARAMS, ...opts.bToA };
    checkImpairment(aToB, 'ip-wan aToB');
    checkImpairment(bToA, 'ip-wan bToA');
    const waker = new Waker();
    const control = new SharedArrayBuffer(4);
    const counters = new SharedArrayBuffer(2 * LANE_FIELDS * 8);
    const data: IpWanWorkerData = {
      aIf: opts.aIf,
      bIf: opts.bIf,
      aToB,
      bToA,
      seed: opts.seed ?? 1,
      slots: opts.slots ?? 8192,
      wakeFd: waker.fd,
      control,
      counters,
      rtPriority: opts.rtPriority ?? 10,
      nice: opts.nice ?? -10,
    };
    try {
      const channel = await WorkerChannel.start<Record<never, never>, Record<never, never>, IpWanReady, IpWanWorkerData>({
        spawn: { entry: workerEntry(import.meta.url, './ip-emulator-worker'), name: 'sluice-ip-wan', workerData: data },
        engine: ENGINE,
        errorContext: 'ip-wan engine',
        wake: () => waker.signal(),
      });
      return new IpWanEmulator(channel, waker, control, counters, { aToB, bToA });
    } catch (e) {
      // start() left no thread behind.
      waker.close();
      throw e;
    }
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

  /** Stops forwarding (frames still held are discarded) and closes the sockets; idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      await this.#channel.close({ stopFlag: new Int32Array(this.#control), terminateAfterMs: 2_000 });
      this.#waker.close();
    })();
    return this.#stopped;
  }
}
