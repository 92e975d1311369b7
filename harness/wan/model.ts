/**
 * The impairment model both WAN emulators share, one direction at a time,
 * with no I/O, no clock and no PRNG of its own: parameter checks,
 * Gilbert-Elliott burst loss, and a bottleneck serializing at a rate behind a
 * tail-drop queue. The front ends (ip-lane.ts for the IP bridge,
 * udp-emulator.ts for the UDP socket pair) draw the random numbers and put
 * the pieces in their order; each keeps its own defaults and its own number
 * of draws per datagram (FRONT_ENDS), so a seed gives each the decisions it
 * gave before they shared this code.
 */

/** Gilbert-Elliott: a two-state Markov chain stepped once per datagram. */
export interface BurstLoss {
  pGoodToBad: number;
  pBadToGood: number;
  /** Loss probability in the bad state (default 1). */
  lossInBad?: number;
  /** Loss probability in the good state (default 0). */
  lossInGood?: number;
}

/** What both front ends impose on a direction. */
export interface ImpairmentParams {
  /** One-way propagation delay, ms. */
  delayMs: number;
  /** Bottleneck rate in bit/s; 0 = unlimited (no queue). */
  rateBps: number;
  /** Bottleneck buffer in bytes; undefined = 100 ms at rateBps, at least the front end's floor (queueLimitBytes). */
  queueBytes?: number | undefined;
  /** Random loss probability 0..1. */
  loss: number;
  burst?: BurstLoss | null | undefined;
}

/**
 * What differs between the front ends. The queue floor keeps a slow link's
 * default queue useful: two full-size IP packets for the bridge, 64 KiB of
 * datagrams for the UDP pair. The draw counts are what each front end takes
 * from its PRNG per datagram whatever happens to it (ip: burst loss, burst
 * step, loss; udp: those, then duplicate, reorder, jitter, the copy's jitter).
 */
export const FRONT_ENDS = {
  ip: { queueFloorBytes: 2 * 1500, drawsPerFrame: 3 },
  udp: { queueFloorBytes: 65536, drawsPerFrame: 7 },
} as const;

/** Front-end parameters checked with the common ones, by kind. */
export interface ExtraChecks {
  nonNeg?: Record<string, number>;
  prob?: Record<string, number>;
}

/** Throws a RangeError naming `where` and the first bad parameter (numbers, queue, probabilities, burst). */
export function checkImpairment(p: ImpairmentParams, where: string, extra: ExtraChecks = {}): void {
  const nonNeg = (name: string, v: number): void => {
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`${where}: ${name} must be a finite number >= 0, got ${v}`);
  };
  const prob = (name: string, v: number): void => {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${where}: ${name} must be in 0..1, got ${v}`);
  };
  nonNeg('delayMs', p.delayMs);
  nonNeg('rateBps', p.rateBps);
  for (const [name, v] of Object.entries(extra.nonNeg ?? {})) nonNeg(name, v);
  if (p.queueBytes !== undefined && !(Number.isFinite(p.queueBytes) && p.queueBytes > 0)) {
    throw new RangeError(`${where}: queueBytes must be > 0, got ${p.queueBytes}`);
  }
  prob('loss', p.loss);
  for (const [name, v] of Object.entries(extra.prob ?? {})) prob(name, v);
  if (p.burst) {
    prob('burst.pGoodToBad', p.burst.pGoodToBad);
    prob('burst.pBadToGood', p.burst.pBadToGood);
    prob('burst.lossInBad', p.burst.lossInBad ?? 1);
    prob('burst.lossInGood', p.burst.lossInGood ?? 0);
  }
}

/** Queue limit in bytes: `queueBytes`, else 100 ms at the rate (a buffer sized for the bandwidth-delay product), at least `floorBytes`. */
export function queueLimitBytes(p: ImpairmentParams, floorBytes: number): number {
  return p.queueBytes ?? Math.max(floorBytes, p.rateBps / 80);
}

/** The burst-loss chain. Without parameters it never loses and stays good. */
export class GilbertElliott {
  #p: BurstLoss | null;
  #bad = false;

  constructor(p: BurstLoss | null | undefined) {
    this.#p = p ?? null;
  }

  /** New parameters: a burst under way goes on, unless burst loss is switched off (back to good). */
  configure(p: BurstLoss | null | undefined): void {
    this.#p = p ?? null;
    if (!this.#p) this.reset();
  }

  reset(): void {
    this.#bad = false;
  }

  /** One datagram: lost if `uLoss` falls under the current state's loss; `uStep` may then change state. Both uniform in [0, 1). */
  step(uLoss: number, uStep: number): boolean {
    const b = this.#p;
    if (!b) return false;
    const lost = uLoss < (this.#bad ? (b.lossInBad ?? 1) : (b.lossInGood ?? 0));
    if (uStep < (this.#bad ? b.pBadToGood : b.pGoodToBad)) this.#bad = !this.#bad;
    return lost;
  }
}

/** Bottleneck.admit(): the datagram did not fit in the queue. */
export const QUEUE_FULL = -1;

/** A link serializing at a rate behind a tail-drop FIFO. Times are ms on the caller's monotonic clock (≥ 0). */
export class Bottleneck {
  /** Bytes per millisecond (0: unlimited). */
  #bytesPerMs = 0;
  #limitBytes = 0;
  /** When the link finishes serializing what it holds. */
  #freeAt = -Infinity;

  constructor(rateBps: number, limitBytes: number) {
    this.configure(rateBps, limitBytes);
  }

  /** New rate and limit; what is queued stays queued (and drains at the new rate). */
  configure(rateBps: number, limitBytes: number): void {
    this.#bytesPerMs = rateBps / 8000;
    this.#limitBytes = limitBytes;
  }

  /** A datagram of `bytes` arrives at `now`: when it has left the link (`now` when unlimited), or QUEUE_FULL. */
  admit(now: number, bytes: number): number {
    if (this.#bytesPerMs <= 0) return now;
    const start = Math.max(now, this.#freeAt);
    if ((start - now) * this.#bytesPerMs + bytes > this.#limitBytes) return QUEUE_FULL;
    this.#freeAt = start + bytes / this.#bytesPerMs;
    return this.#freeAt;
  }

  /** Bytes waiting at `now`, the one being serialized included. */
  queuedBytes(now: number): number {
    return this.#bytesPerMs > 0 ? Math.max(0, this.#freeAt - now) * this.#bytesPerMs : 0;
  }
}
