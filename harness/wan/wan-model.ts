/**
 * The decision model of the IP-level WAN emulator (ip-wan.ts), one direction
 * at a time, with no I/O and no clock: given the time a frame arrived and
 * its size, say when it leaves or why it is dropped. Pure so that the
 * shaping TCP sees (queue, rate, delay, loss) can be unit-tested exactly.
 *
 * Per frame, in this order:
 *  1. Bottleneck: a link serializing `rateBps` behind a tail-drop FIFO of
 *     `queueBytes` (default: 100 ms at the rate, like a router buffer sized
 *     for the bandwidth-delay product). A frame that does not fit is dropped
 *     (`queue`). Sizes count the IP packet (frame minus the 14-byte Ethernet
 *     header), so "50 Mbit/s" means 50 Mbit/s of IP packets.
 *  2. Loss, Gilbert-Elliott burst loss (`burst`) then random loss (`loss`),
 *     applied after the bottleneck as on a lossy last hop: a lost frame still
 *     used link capacity. Frames marked `exempt` (ARP: the emulator is a
 *     bridge and the sites resolve each other across it) are never lost:
 *     losing one stalls a site for seconds on ARP retries, which measures
 *     ARP, not the transport under test.
 *  3. Propagation delay `delayMs`, constant: with no jitter, departure times
 *     never decrease, so each direction is a plain FIFO and never reorders.
 *
 * Determinism: each frame consumes exactly three draws from the direction's
 * PRNG whatever happens to it, so the k-th frame received in a direction
 * gets the same loss decision for a given seed regardless of timing. Queue
 * drops depend on timing (real arrival times) and are not deterministic.
 */
import { Rng } from './rng.js';

/** Gilbert-Elliott: a two-state Markov chain stepped once per frame. */
export interface BurstLoss {
  pGoodToBad: number;
  pBadToGood: number;
  /** Loss probability in the bad state (default 1). */
  lossInBad?: number;
  /** Loss probability in the good state (default 0). */
  lossInGood?: number;
}

export interface WanParams {
  /** One-way propagation delay, ms. */
  delayMs: number;
  /** Bottleneck rate in bit/s of IP packets; 0 = unlimited (no queue). */
  rateBps: number;
  /** Bottleneck buffer in bytes; undefined = 100 ms at rateBps (at least two full-size packets). */
  queueBytes?: number | undefined;
  /** Random loss probability 0..1. */
  loss: number;
  burst?: BurstLoss | null | undefined;
}

export const DEFAULT_WAN_PARAMS: WanParams = { delayMs: 0, rateBps: 0, loss: 0, burst: null };

/** admit() results below zero: why the frame was dropped. */
export const DROP_QUEUE = -1;
export const DROP_BURST = -2;
export const DROP_LOSS = -3;

export const ETH_HEADER = 14;
/** Largest IP packet the default queue must hold at least two of. */
const FULL_PACKET = 1500;

export function checkWanParams(p: WanParams, where = 'wan'): void {
  const nonNeg = (name: string, v: number): void => {
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`${where}: ${name} must be a finite number >= 0, got ${v}`);
  };
  const prob = (name: string, v: number): void => {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${where}: ${name} must be in 0..1, got ${v}`);
  };
  nonNeg('delayMs', p.delayMs);
  nonNeg('rateBps', p.rateBps);
  if (p.queueBytes !== undefined && !(Number.isFinite(p.queueBytes) && p.queueBytes > 0)) {
    throw new RangeError(`${where}: queueBytes must be > 0, got ${p.queueBytes}`);
  }
  prob('loss', p.loss);
  if (p.burst) {
    prob('burst.pGoodToBad', p.burst.pGoodToBad);
    prob('burst.pBadToGood', p.burst.pBadToGood);
    prob('burst.lossInBad', p.burst.lossInBad ?? 1);
    prob('burst.lossInGood', p.burst.lossInGood ?? 0);
  }
}

/** Queue limit in bytes for `p` (see WanParams.queueBytes). */
export function queueLimitBytes(p: WanParams): number {
  return p.queueBytes ?? Math.max(2 * FULL_PACKET, p.rateBps / 80);
}

/** One direction's model. Times are milliseconds on any monotonic clock (the caller's). */
export class WanLane {
  readonly params: WanParams;
  readonly #rng: Rng;
  readonly #queueLimit: number;
  /** Bytes per millisecond at the bottleneck (0: unlimited). */
  readonly #bytesPerMs: number;
  /** When the bottleneck finishes serializing what it holds. */
  #linkFreeAt = -Infinity;
  #bad = false;

  constructor(params: WanParams, seed: number) {
    checkWanParams(params);
    this.params = { ...params };
    this.#rng = Rng.fromSeed(seed);
    this.#queueLimit = queueLimitBytes(params);
    this.#bytesPerMs = params.rateBps / 8000;
  }

  /** Bytes waiting in the bottleneck queue at `now` (the frame being serialized included). */
  queuedBytes(now: number): number {
    return this.#bytesPerMs > 0 ? Math.max(0, this.#linkFreeAt - now) * this.#bytesPerMs : 0;
  }

  /**
   * A frame of `ipBytes` arrived at `now`: returns its departure time
   * (≥ now + delayMs) or DROP_QUEUE / DROP_BURST / DROP_LOSS.
   */
  admit(now: number, ipBytes: number, exempt = false): number {
    const p = this.params;
    const uGeLoss = this.#rng.next();
    const uGeStep = this.#rng.next();
    const uLoss = this.#rng.next();
    let burstLost = false;
    if (p.burst) {
      const b = p.burst;
      burstLost = uGeLoss < (this.#bad ? (b.lossInBad ?? 1) : (b.lossInGood ?? 0));
      if (uGeStep < (this.#bad ? b.pBadToGood : b.pGoodToBad)) this.#bad = !this.#bad;
    }
    let departed = now;
    if (this.#bytesPerMs > 0) {
      const start = Math.max(now, this.#linkFreeAt);
      if ((start - now) * this.#bytesPerMs + ipBytes > this.#queueLimit) return DROP_QUEUE;
      departed = start + ipBytes / this.#bytesPerMs;
      this.#linkFreeAt = departed;
    }
    if (!exempt) {
      if (burstLost) return DROP_BURST;
      if (uLoss < p.loss) return DROP_LOSS;
    }
    return departed + p.delayMs;
  }
}
