/**
 * The IP-level WAN emulator's decisions (ip-emulator.ts), one direction at a
 * time, with no I/O and no clock: given the time a frame arrived and its
 * size, say when it leaves or why it is dropped. Pure so that the shaping
 * TCP sees (queue, rate, delay, loss) can be unit-tested exactly; the pieces
 * are the shared model's (model.ts).
 *
 * Per frame, in this order:
 *  1. Bottleneck: a link serializing `rateBps` behind a tail-drop FIFO of
 *     `queueBytes` (default: 100 ms at the rate, like a router buffer sized
 *     for the bandwidth-delay product, at least two full-size packets). A
 *     frame that does not fit is dropped (`queue`). Sizes count the IP packet
 *     (frame minus the 14-byte Ethernet header), so "50 Mbit/s" means
 *     50 Mbit/s of IP packets.
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
 * PRNG (FRONT_ENDS.ip) whatever happens to it, so the k-th frame received in
 * a direction gets the same loss decision for a given seed regardless of
 * timing. Queue drops depend on timing (real arrival times) and are not
 * deterministic.
 */
import { Rng } from './rng.js';
import { Bottleneck, FRONT_ENDS, GilbertElliott, QUEUE_FULL, checkImpairment, queueLimitBytes, type ImpairmentParams } from './model.js';

export const DEFAULT_WAN_PARAMS: ImpairmentParams = { delayMs: 0, rateBps: 0, loss: 0, burst: null };

/** admit() results below zero: why the frame was dropped. */
export const DROP_QUEUE = QUEUE_FULL;
export const DROP_BURST = -2;
export const DROP_LOSS = -3;

export const ETH_HEADER = 14;

/** One direction's model. Times are milliseconds on any monotonic clock (the caller's). */
export class WanLane {
  readonly params: ImpairmentParams;
  readonly #rng: Rng;
  readonly #burst: GilbertElliott;
  readonly #link: Bottleneck;

  constructor(params: ImpairmentParams, seed: number) {
    checkImpairment(params, 'wan');
    this.params = { ...params };
    this.#rng = Rng.fromSeed(seed);
    this.#burst = new GilbertElliott(params.burst);
    this.#link = new Bottleneck(params.rateBps, queueLimitBytes(params, FRONT_ENDS.ip.queueFloorBytes));
  }

  /** Bytes waiting in the bottleneck queue at `now` (the frame being serialized included). */
  queuedBytes(now: number): number {
    return this.#link.queuedBytes(now);
  }

  /**
   * A frame of `ipBytes` arrived at `now`: returns its departure time
   * (≥ now + delayMs) or DROP_QUEUE / DROP_BURST / DROP_LOSS.
   */
  admit(now: number, ipBytes: number, exempt = false): number {
    // Always the same three draws (see the header).
    const uBurstLoss = this.#rng.next();
    const uBurstStep = this.#rng.next();
    const uLoss = this.#rng.next();
    const burstLost = this.#burst.step(uBurstLoss, uBurstStep);
    const departed = this.#link.admit(now, ipBytes);
    if (departed === QUEUE_FULL) return DROP_QUEUE;
    if (!exempt) {
      if (burstLost) return DROP_BURST;
      if (uLoss < this.params.loss) return DROP_LOSS;
    }
    return departed + this.params.delayMs;
  }
}
