/**
 * Puts each flow's messages back in order (issue #7). The data mover hands
 * over each driver buffer as soon as it is complete, so one flow's lost
 * segment does not hold up every other flow's messages behind it
 * (head-of-line blocking: under a bulk transfer at 1 % loss some segment
 * is nearly always being repaired). Order matters only within a flow, and
 * every message carries its flow's sequence number (docs/WIRE.md §1): this
 * releases a flow's messages in that order and holds the ones that came
 * early.
 *
 * A message for a flow with no state starts it at sequence 0 (the open, or
 * a UDP flow's first datagram). Messages of a new key that wait for a 0
 * which does not come within `waitMs` are handed to `onOrphans` (the
 * gateway answers them as messages for an unknown flow: a peer that
 * restarted and lost the flow gets a reset). Keys of flows that ended are
 * remembered for a while, so their late messages (a window update after
 * the close) are dropped quietly instead of starting a flow. A reset is
 * never held: it ends the flow whatever came before it.
 */
export interface SequencedMessage {
  readonly function: string;
  readonly sequence: number;
}

interface FlowOrder<T> {
  next: number;
  readonly pending: Map<number, T>;
  /** When the oldest held message arrived (0: none held). */
  heldSince: number;
}

export interface FlowSequencerOptions<T> {
  readonly deliver: (key: string, item: T) => void;
  readonly onOrphans: (key: string, items: T[]) => void;
  /** A flow that holds this many messages waiting for a gap is broken: `onOverflow`. */
  readonly maxHeld?: number;
  readonly onOverflow: (key: string) => void;
  readonly waitMs?: number;
  readonly rememberClosedMs?: number;
  readonly now?: () => number;
}

export class FlowSequencer<T> {
  readonly stats = { held: 0, released: 0, late: 0, orphaned: 0, overflows: 0 };
  readonly #flows = new Map<string, FlowOrder<T>>();
  readonly #closed = new Map<string, number>();
  readonly #o: Required<FlowSequencerOptions<T>>;

  constructor(options: FlowSequencerOptions<T>) {
    this.#o = { maxHeld: 8192, waitMs: 2000, rememberClosedMs: 60_000, now: () => performance.now(), ...options };
  }

  push(key: string, m: SequencedMessage, item: T): void {
    if (m.function === 'reset') {
      this.#o.deliver(key, item);
      return;
    }
    let f = this.#flows.get(key);
    if (!f) {
      // Sequence 0 always starts a flow (a client reusing its port after the last flow ended);
      // anything else for a key that ended is a late message of the old flow.
      if (this.#closed.has(key)) {
        if (m.sequence !== 0) {
          this.stats.late++;
          return;
        }
        this.#closed.delete(key);
      }
      f = { next: 0, pending: new Map(), heldSince: 0 };
      this.#flows.set(key, f);
    }
    const d = (m.sequence - f.next) | 0;
    if (d < 0) {
      this.stats.late++;
      return;
    }
    if (d > 0) {
      if (f.pending.size >= this.#o.maxHeld) {
        this.stats.overflows++;
        this.forget(key);
        this.#o.onOverflow(key);
        return;
      }
      if (!f.pending.size) f.heldSince = this.#o.now();
      f.pending.set(m.sequence >>> 0, item);
      this.stats.held++;
      return;
    }
    this.#release(key, f, item);
  }

  #release(key: string, f: FlowOrder<T>, item: T): void {
    f.next = (f.next + 1) >>> 0;
    this.#o.deliver(key, item);
    // Delivering may end the flow (forget): then what it held goes too.
    while (this.#flows.get(key) === f) {
      const nextItem = f.pending.get(f.next);
      if (nextItem === undefined) break;
      f.pending.delete(f.next);
      this.stats.released++;
      f.next = (f.next + 1) >>> 0;
      this.#o.deliver(key, nextItem);
    }
    if (this.#flows.get(key) === f) f.heldSince = f.pending.size ? this.#o.now() : 0;
  }

  /** The flow ended (or was refused): drop its state and ignore its late messages for a while. */
  forget(key: string): void {
    if (this.#flows.delete(key)) this.#closed.set(key, this.#o.now());
  }

  /** Hands orphans over and forgets old closed keys; call about once a second. */
  sweep(): void {
    const now = this.#o.now();
    for (const [key, f] of this.#flows) {
      // Only a flow that never started (waiting for its 0) is orphaned; a gap in a running flow is the transport's to fill.
      if (f.next === 0 && f.pending.size && now - f.heldSince > this.#o.waitMs) {
        const items = [...f.pending.values()];
        this.#flows.delete(key);
        this.stats.orphaned += items.length;
        this.#o.onOrphans(key, items);
      }
    }
    for (const [key, at] of this.#closed) {
      if (now - at < this.#o.rememberClosedMs) break; // insertion order is age order
      this.#closed.delete(key);
    }
  }

  get size(): number {
    return this.#flows.size;
  }
}
