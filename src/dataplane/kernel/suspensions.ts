/**
 * Subscribers of one kernel-tier flow that the companion suspended
 * (policy suspendAfterErrors): the companion reads the ICMP errors (copies
 * the program makes leave from the listen socket, so the errors come back
 * there) and decides; the plane leaves a suspended subscriber out of the
 * flow entry (its position becomes a hole, kept for it) until it resumes.
 *
 * The program makes no copy for a hole and so counts none: the copies it
 * did not make are the datagrams it copied itself meanwhile, read from the
 * flow's counters at both ends of the suspension (exact up to the few
 * datagrams in flight while the entry is rewritten).
 */
import type { FlowCounterName } from './layout.js';

/** Datagrams the program handled itself, copies made (not punted, not dropped). */
export function kernelCopied(c: Readonly<Record<FlowCounterName, number>>): number {
  return Math.max(0, c.packetsIn - c.toStackPackets - c.sourceNotAllowed - c.malformed - c.tooLarge);
}

export class KernelSuspensions {
  /** Suspended now: kernelCopied when it started. */
  readonly #active = new Map<string, number>();
  /** Copies not made in earlier suspensions. */
  readonly #missed = new Map<string, number>();
  /** Copies not made for subscribers since removed (flow totals keep them). */
  #retired = 0;

  has(to: string): boolean {
    return this.#active.has(to);
  }

  /** Starts (until > 0) or ends (until 0) a suspension; returns true when the flow entry must be rewritten. */
  set(to: string, until: number, copiedNow: number): boolean {
    const since = this.#active.get(to);
    if (until > 0) {
      if (since !== undefined) return false;
      this.#active.set(to, copiedNow);
      return true;
    }
    if (since === undefined) return false;
    this.#active.delete(to);
    this.#missed.set(to, (this.#missed.get(to) ?? 0) + Math.max(0, copiedNow - since));
    return true;
  }

  /** Copies the program did not make for `to` because it was suspended, up to now. */
  missed(to: string, copiedNow: number): number {
    const since = this.#active.get(to);
    return (this.#missed.get(to) ?? 0) + (since === undefined ? 0 : Math.max(0, copiedNow - since));
  }

  /** Every copy not made, for the flow's total. */
  totalMissed(copiedNow: number): number {
    let n = this.#retired;
    for (const to of new Set([...this.#active.keys(), ...this.#missed.keys()])) n += this.missed(to, copiedNow);
    return n;
  }

  /** Forgets subscribers no longer in the flow (their missed copies stay in the total). */
  keepOnly(current: ReadonlySet<string>, copiedNow: number): void {
    for (const to of new Set([...this.#active.keys(), ...this.#missed.keys()])) {
      if (current.has(to)) continue;
      this.#retired += this.missed(to, copiedNow);
      this.#active.delete(to);
      this.#missed.delete(to);
    }
  }
}
