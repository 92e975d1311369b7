/**
 * Round-trip time estimation for the data mover (RFC 9002 §5 and RFC 6298):
 * smoothed RTT and its variation from samples taken on acknowledged
 * physical numbers (never ambiguous: a retransmission has a new number),
 * less the peer's reported ack delay where that leaves at least the
 * minimum; the minimum RTT over a window (the path's propagation delay,
 * for the rate model); and the retransmission timeout, which backs off by
 * 1.5× per expiry rather than 2×, so a long-RTT link recovers sooner
 * (KCP's lesson; see ../shared/notes/wan-prior-art.md §3.1).
 */
export const INITIAL_RTT_MS = 333;
export const MIN_RTO_MS = 200;
export const MAX_RTO_MS = 60_000;
const BACKOFF = 1.5;
/** The minimum RTT is re-learned after this long without a lower sample (a route may change). */
export const MIN_RTT_WINDOW_MS = 10_000;

export class RttEstimator {
  #srtt = INITIAL_RTT_MS;
  #rttvar = INITIAL_RTT_MS / 2;
  /** The minimum over the last window: the best sample and the best of the later sub-windows (see WindowedMin). */
  readonly #min = new WindowedMin(MIN_RTT_WINDOW_MS);
  #latest = 0;
  #samples = 0;
  #backoffs = 0;

  /** A sample: `rttMs` from send to ack, of which the peer held `ackDelayMs`, at time `now`. */
  sample(rttMs: number, ackDelayMs: number, now: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    const min = this.#min.update(rttMs, now);
    // The ack delay is subtracted only if that does not go below the minimum (RFC 9002 §5.3).
    const adjusted = rttMs - ackDelayMs >= min ? rttMs - ackDelayMs : rttMs;
    this.#latest = adjusted;
    if (this.#samples++ === 0) {
      this.#srtt = adjusted;
      this.#rttvar = adjusted / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - adjusted);
      this.#srtt = 0.875 * this.#srtt + 0.125 * adjusted;
    }
    this.#backoffs = 0;
  }

  get srttMs(): number {
    return this.#srtt;
  }

  get rttvarMs(): number {
    return this.#rttvar;
  }

  get latestMs(): number {
    return this.#latest;
  }

  /** The path's minimum RTT (Infinity before the first sample). */
  get minRttMs(): number {
    return this.#min.value;
  }

  get hasSamples(): boolean {
    return this.#samples > 0;
  }

  /** SRTT + 4·RTTVAR, at least MIN_RTO_MS, backed off 1.5× per expiry since the last sample. */
  get rtoMs(): number {
    const base = Math.max(MIN_RTO_MS, this.#srtt + 4 * this.#rttvar);
    return Math.min(MAX_RTO_MS, base * BACKOFF ** this.#backoffs);
  }

  /** The retransmission timer expired (no ack for rtoMs): the next timeout waits longer. */
  onTimeout(): void {
    this.#backoffs++;
  }

  /** How long after a packet was sent it counts as lost when later ones were acknowledged (RFC 9002: 9/8 RTT). */
  get lossDelayMs(): number {
    return Math.max(1, (9 / 8) * Math.max(this.#srtt, this.#latest));
  }
}

/**
 * The minimum of the samples of the last `windowMs` (Kathleen Nichols'
 * windowed filter, as Linux's lib/win_minmax.c keeps it): besides the best
 * sample it keeps the best of the second and last quarters-to-halves of the
 * window, so when the best expires the next-best sample of the window takes
 * its place. Replacing an expired minimum with whatever sample comes next
 * instead took one sample from under a standing queue as the path's delay:
 * measured on a 100 ms path at 50 Mbit/s, the minimum jumped to 123 ms
 * after 10 s, the window grew by as much and so did the queue.
 */
export class WindowedMin {
  /** Best, second-best (later) and third-best (latest) samples: [value, time]. */
  readonly #s: [number, number][] = [
    [Infinity, -Infinity],
    [Infinity, -Infinity],
    [Infinity, -Infinity],
  ];

  constructor(readonly windowMs: number) {}

  get value(): number {
    return this.#s[0]![0];
  }

  update(value: number, now: number): number {
    const s = this.#s;
    if (value <= s[0]![0] || now - s[2]![1] > this.windowMs) {
      // A new minimum, or nothing left in the window: start over.
      for (const e of s) {
        e[0] = value;
        e[1] = now;
      }
      return value;
    }
    if (value <= s[1]![0]) {
      s[1] = [value, now];
      s[2] = [value, now];
    } else if (value <= s[2]![0]) {
      s[2] = [value, now];
    }
    const age = now - s[0]![1];
    if (age > this.windowMs) {
      // The best expired: the later sub-windows' bests move up.
      s.shift();
      s.push([value, now]);
      if (now - s[0]![1] > this.windowMs) {
        s.shift();
        s.push([value, now]);
      }
    } else if (s[1]![1] === s[0]![1] && age > this.windowMs / 4) {
      // A quarter of the window passed without a second choice: take this sample.
      s[1] = [value, now];
      s[2] = [value, now];
    } else if (s[2]![1] === s[1]![1] && age > this.windowMs / 2) {
      s[2] = [value, now];
    }
    return s[0]![0];
  }
}
