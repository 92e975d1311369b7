/**
 * Host delay: the time an acknowledged datagram spent in the two gateways
 * rather than on the path, that is the peer's ack delay (from reading the
 * datagram off its socket to acknowledging it) plus the time this side's
 * ack waited to be processed after its receive thread read it. Those
 * bytes are in flight without being in any queue of the path, so the rate
 * control's window holds this delay's worth of the estimated rate beyond
 * gain × BDP. Without it, on loopback (a minimum RTT of 0.8 ms against
 * 2-20 ms of host delay under load) the window, not the CPU, capped the
 * pair at 160-260 Mbit/s with each gateway's main thread half idle.
 *
 * The filter keeps the mean of each round (an ack sent by the peer's ack
 * timer rather than its ack batch says how long the tail of a flight
 * waited, which the ack allowance covers, not how long every byte did)
 * and reports the highest mean of the last rounds, each sample capped at
 * HOST_DELAY_CAP_MS: beyond a few milliseconds the delay is a backlog at a
 * gateway that cannot keep up (its CPU is the bottleneck), a queue like any
 * other, and interactive flows wait in it. Measured (bench, one repeat):
 * a cap of 20 ms gave loopback 750 Mbit/s but request/response during the
 * bulk 50 ms there and 110 ms at 200 Mbit/s, 10 ms (direct BBR: 1.4 and
 * 15); 3 ms gave 725 Mbit/s and 24 and 51 ms; none, 404 Mbit/s and 12 and
 * 48 ms.
 */
export const HOST_DELAY_CAP_MS = 3;

export class HostDelayFilter {
  readonly #rounds: number;
  readonly #means: number[] = [];
  /** Max of #means, kept at each round's end: the window reads it on every pacer step. */
  #max = 0;
  #sum = 0;
  #count = 0;

  constructor(rounds: number) {
    this.#rounds = rounds;
  }

  sample(ms: number): void {
    if (!(ms >= 0)) return;
    this.#sum += Math.min(ms, HOST_DELAY_CAP_MS);
    this.#count++;
  }

  /** A round that measured the path ended. */
  endRound(): void {
    if (this.#count) this.#means.push(this.#sum / this.#count);
    if (this.#means.length > this.#rounds) this.#means.shift();
    this.#max = this.#means.length ? Math.max(...this.#means) : 0;
    this.#sum = 0;
    this.#count = 0;
  }

  /** The delay to cover, ms (0 before a full round). */
  get ms(): number {
    return this.#max;
  }
}
