/**
 * The stream scheduler's timer. Ticks fall on absolute deadlines (anchor +
 * k × tick), not on chained timeouts, so timer delays do not accumulate; a
 * timer that fires late skips the deadlines it missed (the scheduler's
 * amounts are time-based, so the next write carries what they would have).
 * Timers run on the application's thread.
 */
export class TickGrid {
  readonly #onTick: () => boolean;
  #tickMs: number;
  /** Deadlines are #anchor + k × #tickMs; #next is the pending one, #k its k. */
  #anchor = 0;
  #k = 0;
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The deadline being handled while the timer's callback runs. */
  #ticking: number | undefined;

  /** `onTick` runs at every deadline and answers whether ticking goes on (false: no timer until the next retime). */
  constructor(tickMs: number, onTick: () => boolean) {
    this.#tickMs = tickMs;
    this.#onTick = onTick;
  }

  /** The tick in force, ms. */
  get tickMs(): number {
    return this.#tickMs;
  }

  /**
   * Sets the tick and (re)arms the timer. The pending deadline is kept when
   * it comes sooner than a full new tick, so that a run of retimes (adds)
   * cannot postpone ticks indefinitely; later deadlines follow from it.
   */
  retime(tick: number): void {
    if (this.#ticking !== undefined) {
      // Inside a tick (a stream finished): the grid restarts at this tick's
      // deadline; the callback arms the next one when the tick is done.
      this.#tickMs = tick;
      this.#anchor = this.#ticking;
      this.#k = 0;
      return;
    }
    const now = performance.now();
    const next = this.#timer ? Math.min(this.#next, now + tick) : now + tick;
    if (this.#timer && tick === this.#tickMs && next === this.#next) return;
    this.#tickMs = tick;
    this.#anchor = next;
    this.#k = 0;
    this.#arm(next, now);
  }

  /** No timer until the next retime. */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(deadline: number, now: number): void {
    this.stop();
    this.#next = deadline;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, deadline - now));
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#ticking = this.#next;
    let more: boolean;
    try {
      more = this.#onTick();
    } finally {
      this.#ticking = undefined;
    }
    if (!more) return;
    // The next deadline on the grid: the one after this tick's (a timer may
    // fire a little early), or the first after now when this one fired late,
    // skipping the deadlines it missed (what they would have sent goes with
    // the next write: the amount due is time-based).
    const now = performance.now();
    this.#k = Math.max(this.#k + 1, Math.floor((now - this.#anchor) / this.#tickMs) + 1);
    this.#arm(this.#anchor + this.#k * this.#tickMs, now);
  };
}

/**
 * The timer of streams paced by their own clock: one wake-up at the
 * earliest due time any of them has (per-datagram schedules), instead of a
 * fixed grid, so that their datagrams leave with the spacing of their
 * clock (to the timer's ~1 ms), not in tick-sized clumps. One timer for
 * all such streams of a scheduler: they share its send loop.
 */
export class DueTimer {
  readonly #onDue: () => void;
  #timer: NodeJS.Timeout | undefined;
  #at = Infinity;

  constructor(onDue: () => void) {
    this.#onDue = onDue;
  }

  /** Wakes at `at` (performance.now() time) unless already set to wake sooner. */
  wakeAt(at: number): void {
    if (this.#timer && this.#at <= at) return;
    this.stop();
    this.#at = at;
    this.#timer = setTimeout(this.#fire, Math.max(0, at - performance.now()));
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#at = Infinity;
    this.#onDue();
  };
}
