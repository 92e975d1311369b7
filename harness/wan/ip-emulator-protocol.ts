/**
 * What the IP-level WAN emulator's controller (ip-emulator.ts, main thread)
 * and its engine (ip-emulator-engine.ts, worker thread, started through a
 * src/worker channel that takes no requests) share: the start options, what
 * 'ready' carries, and
 * the layout of the counters the engine writes into a SharedArrayBuffer
 * (plain stores from one writer; a reader may see a counter one frame
 * stale, which is fine for statistics).
 */
import type { ImpairmentParams } from './model.js';

export interface IpWanWorkerData {
  /** Interface towards site A (frames read here go A→B). */
  aIf: string;
  bIf: string;
  aToB: ImpairmentParams;
  bToA: ImpairmentParams;
  seed: number;
  /** Frames each direction can hold (in the queue plus on the delay line). */
  slots: number;
  /** eventfd the controller writes to stop the loop at once. */
  wakeFd: number;
  /** Int32Array view: [0] = stop requested. */
  control: SharedArrayBuffer;
  /** Float64Array: LANE_FIELDS per direction, aToB first. */
  counters: SharedArrayBuffer;
  /** SCHED_FIFO priority of the engine thread (0: stay a normal thread). */
  rtPriority: number;
  /** Nice value of the engine thread when it cannot be real-time (negative: ahead of the traffic it shapes). */
  nice: number;
}

/** What the engine says with 'ready'. */
export interface IpWanReady {
  /** How the forwarding thread is scheduled ('SCHED_FIFO 10', 'nice -10' or 'normal'). */
  readonly scheduling: string;
}

/** Upper edges (ms) of the lateness histogram buckets; the last bucket is everything above. */
export const LATENESS_EDGES_MS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5] as const;

/** holdMinMs before any frame was admitted (finite, so it survives JSON). */
export const HOLD_NONE = Number.MAX_VALUE;

/** Counter indexes inside one direction's block. */
export const C = {
  /** Frames read from the ingress interface. */
  rxFrames: 0,
  /** IP bytes (frame minus Ethernet header) of those frames. */
  rxBytes: 1,
  txFrames: 2,
  txBytes: 3,
  dropLoss: 4,
  dropBurst: 5,
  dropQueue: 6,
  /** The direction's frame store was full (slots too small for delay x rate). */
  dropFull: 7,
  /** Frames larger than a slot (a GSO super-frame that leaked past the offload settings): dropped. */
  oversize: 8,
  /** Frames whose virtio_net_hdr says GSO (forwarded as they are, but the bench wants none). */
  gso: 9,
  /** Frames neither IPv4 nor IPv6 (ARP and the like), forwarded. */
  nonIp: 10,
  /** Largest IP packet seen. */
  maxIpBytes: 11,
  /** sendmmsg returned an error other than "try again" (the frame is dropped). */
  sendErrors: 12,
  /** sendmmsg said EAGAIN/ENOBUFS: the frames were retried later. */
  sendRetries: 13,
  /** The kernel dropped frames before we read them (socket receive buffer full). */
  kernelDrops: 14,
  latenessSumMs: 15,
  latenessMaxMs: 16,
  /** Frames on the delay line or in the queue now. */
  held: 17,
  queuedBytes: 18,
  /**
   * Least and most time (ms) the model gave an admitted frame between its
   * arrival and its due time (queue wait + serialization + delay): what the
   * emulator decided, free of any host timing, for checks that must hold on
   * a busy machine. HOLD_NONE until a frame was admitted.
   */
  holdMinMs: 19,
  holdMaxMs: 20,
  /** Histogram: LATENESS_EDGES_MS.length + 1 buckets. */
  latenessHist: 21,
} as const;

export const LANE_FIELDS = C.latenessHist + LATENESS_EDGES_MS.length + 1;
