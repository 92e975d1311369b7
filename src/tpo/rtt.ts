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
  #min = Infinity;
  #minAt = 0;
  #latest = 0;
  #samples = 0;
  #backoffs = 0;

  /** A sample: `rttMs` from send to ack, of which the peer held `ackDelayMs`, at time `now`. */
  sample(rttMs: number, ackDelayMs: number, now: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    if (rttMs <= this.#min || now - this.#minAt > MIN_RTT_WINDOW_MS) {
      this.#min = rttMs;
      this.#minAt = now;
    }
    // The ack delay is subtracted only if that does not go below the minimum (RFC 9002 §5.3).
    const adjusted = rttMs - ackDelayMs >= this.#min ? rttMs - ackDelayMs : rttMs;
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
    return this.#min;
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
