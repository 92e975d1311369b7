/**
 * When a subscriber the network keeps refusing is suspended, and when it
 * is tried again: the `suspendAfterErrors` / `suspendRetryMs` policy
 * (docs/POLICY.md, "Unreachable subscribers"), one instance per subscriber,
 * shared by every tier (the portable flow, the batched engine; the kernel
 * tier follows its companion's decisions). Pure: the caller passes the time.
 *
 * A circuit breaker. Active: ICMP errors are counted; `afterErrors` of them
 * with no gap of more than ERROR_RUN_GAP_MS between two suspend the
 * subscriber for `retryMs`. When the wait is over the subscriber gets
 * copies again, on probation: an error within max(1 s, the wait) suspends
 * it again at once, for twice as long (up to MAX_RETRY_MS, or retryMs if
 * that is longer); a probation without an error returns it to normal.
 */
import type { SuspendPolicy } from '../../policy/compile.js';

/** Errors further apart than this do not add up: a subscriber with a rare hiccup is never suspended. */
export const ERROR_RUN_GAP_MS = 10_000;
/** Longest wait between retries (unless the policy's first wait is longer). */
export const MAX_RETRY_MS = 60_000;
/** Shortest probation after a retry: long enough for the ICMP answer to a copy to come back. */
export const MIN_PROBATION_MS = 1000;

export class SubscriberHealth {
  readonly policy: SuspendPolicy;
  #run = 0;
  #lastError = -Infinity;
  /** 0 while active, else when the subscriber is tried again. */
  #until = 0;
  #probationUntil = 0;
  #wait: number;

  constructor(policy: SuspendPolicy) {
    this.policy = policy;
    this.#wait = policy.retryMs;
  }

  /** When the subscriber is tried again (same clock as the calls); 0 while it is active. */
  get suspendedUntil(): number {
    return this.#until;
  }

  /**
   * Records an ICMP error about a copy to this subscriber at `now`.
   * Returns true when this error suspends it.
   */
  onError(now: number): boolean {
    // Errors for copies sent before the suspension change nothing.
    if (this.#until !== 0) return false;
    const probation = now < this.#probationUntil;
    if (now - this.#lastError > ERROR_RUN_GAP_MS) this.#run = 0;
    this.#lastError = now;
    this.#run++;
    if (!probation && this.#run < this.policy.afterErrors) return false;
    this.#wait = probation ? Math.min(this.#wait * 2, Math.max(MAX_RETRY_MS, this.policy.retryMs)) : this.policy.retryMs;
    this.#until = now + this.#wait;
    this.#run = 0;
    this.#probationUntil = 0;
    return true;
  }

  /**
   * Takes another holder's decision (the batched tier's other workers: an
   * ICMP error reaches one worker, the copies leave from all): suspended
   * until `until`, or resumed (on probation) for 0. Returns true if it changed.
   */
  mirror(until: number, now: number): boolean {
    if (until === this.#until) return false;
    if (until === 0) {
      this.#until = 0;
      this.#probationUntil = now + Math.max(MIN_PROBATION_MS, this.#wait);
    } else {
      this.#wait = Math.max(this.policy.retryMs, until - now);
      this.#until = until;
      this.#run = 0;
    }
    return true;
  }

  /** True while copies must not be sent. */
  isSuspended(): boolean {
    return this.#until !== 0;
  }

  /**
   * Ends a suspension whose wait is over (the subscriber goes on
   * probation). Returns true when it did.
   */
  resumeIfDue(now: number): boolean {
    if (this.#until === 0 || now < this.#until) return false;
    this.#until = 0;
    this.#probationUntil = now + Math.max(MIN_PROBATION_MS, this.#wait);
    return true;
  }
}

/** A clock for SubscriberHealth that never goes back and reads as ms since the epoch (for `suspendedUntil` in stats). */
export function healthClock(): number {
  return performance.timeOrigin + performance.now();
}

/** Same policy (a health state carries over a plan update only if its policy did not change). */
export function samePolicy(a: SuspendPolicy | undefined, b: SuspendPolicy | undefined): boolean {
  return a?.afterErrors === b?.afterErrors && a?.retryMs === b?.retryMs;
}
