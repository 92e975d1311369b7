/**
 * The rate control's gain cycle once startup and its drain are over
 * (rate-control.ts): probe at 1.25 × the bandwidth estimate for a round,
 * drain what the probe queued at 0.75, then cruise at 1 for six rounds.
 * The drain ends as soon as what is in flight fits one BDP, as BBR's does
 * (bbr_is_next_cycle_phase): the queue the probe built is gone by then,
 * and pacing below the bottleneck for the rest of the round would only
 * leave the link idle (with 10 ms of queue on a 100 ms path: 60 ms at
 * three quarters of the rate, 2 % of the cycle's goodput).
 */
export const CYCLE_GAINS = [1.25, 0.75, 1, 1, 1, 1, 1, 1] as const;

export class GainCycle {
  #index = 0;
  /** The drain ended early this round: the round's end does not move the cycle again. */
  #advanced = false;

  get gain(): number {
    return CYCLE_GAINS[this.#index % CYCLE_GAINS.length]!;
  }

  /** This round and the one before it cruise (gain 1): neither the probe's queue nor its drain is in its RTT. */
  get cruisingRound(): boolean {
    const n = CYCLE_GAINS.length;
    return CYCLE_GAINS[this.#index % n] === 1 && CYCLE_GAINS[(this.#index + n - 1) % n] === 1;
  }

  /** After an ack: ends the drain once `bytesInFlight` fits `bdpBytes`. */
  onAcked(bytesInFlight: number, bdpBytes: number): void {
    if (this.#advanced || this.gain >= 1 || !(bdpBytes > 0)) return;
    if (bytesInFlight <= bdpBytes) {
      this.#index++;
      this.#advanced = true;
    }
  }

  onRoundEnd(): void {
    if (this.#advanced) this.#advanced = false;
    else this.#index++;
  }
}
