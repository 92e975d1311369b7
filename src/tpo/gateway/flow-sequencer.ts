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
 *
 * What is held is bounded whatever the peer sends (issue #16): per flow by
 * count (`maxHeld`) and by bytes (`maxHeldBytes`), and per group of flows
 * (the gateway's group is the peer) by bytes (`maxGroupBytes`). A flow
 * that would go over its own bound, or the group's largest holder when
 * the group would go over, is dropped with everything it held and handed
 * to `onOverflow` (the gateway resets it): the flow pays, not the
 * gateway's memory. Held items pass through `hold` first, so the gateway
 * can copy a message out of its driver buffer (a held view would keep the
 * whole buffer alive, and its size would not be what is counted).
 */
export interface SequencedMessage {
  readonly function: string;
  readonly sequence: number;
}

interface Held<T> {
  readonly item: T;
  readonly bytes: number;
}

interface FlowOrder<T> {
  next: number;
  readonly pending: Map<number, Held<T>>;
  /** When the oldest held message arrived (0: none held). */
  heldSince: number;
  /** Bytes of the held messages (sizeOf). */
  heldBytes: number;
  readonly group: string;
}

interface Group {
  bytes: number;
  readonly flows: Set<string>;
}

export interface FlowSequencerOptions<T> {
  readonly deliver: (key: string, item: T) => void;
  readonly onOrphans: (key: string, items: T[]) => void;
  /** A flow that holds this many messages waiting for a gap is broken: `onOverflow`. Default 8192. */
  readonly maxHeld?: number;
  /** ... or this many bytes (sizeOf). Default 16 MiB: four times a TCP flow's window. */
  readonly maxHeldBytes?: number;
  /** The flows of one group (groupOf) hold at most this many bytes together; the largest holder goes first. Default 64 MiB. */
  readonly maxGroupBytes?: number;
  /** Bytes an item accounts for while held; default 0 (only the count bounds it). */
  readonly sizeOf?: (item: T) => number;
  /** Which group a key belongs to; default: one group for all. */
  readonly groupOf?: (key: string) => string;
  /** Called on an item that is about to be held; what it returns is held (default: the item). */
  readonly hold?: (item: T) => T;
  /** The flow was dropped for holding too much; `item` is one of its messages (to name it). */
  readonly onOverflow: (key: string, item: T) => void;
  readonly waitMs?: number;
  readonly rememberClosedMs?: number;
  readonly now?: () => number;
}

export interface FlowSequencerStats {
  held: number;
  released: number;
  late: number;
  orphaned: number;
  /** Flows dropped for holding too much (any bound). */
  overflows: number;
  /** ... of which for the group's bound (they were the group's largest holder). */
  groupOverflows: number;
  /** Messages dropped with those flows (the one that did not fit included). */
  overflowDropped: number;
  /** Bytes held now, all flows. */
  heldBytes: number;
}

const DEFAULT_MAX_HELD_BYTES = 16 << 20;
const DEFAULT_MAX_GROUP_BYTES = 64 << 20;

export class FlowSequencer<T> {
  readonly stats: FlowSequencerStats = { held: 0, released: 0, late: 0, orphaned: 0, overflows: 0, groupOverflows: 0, overflowDropped: 0, heldBytes: 0 };
  readonly #flows = new Map<string, FlowOrder<T>>();
  readonly #groups = new Map<string, Group>();
  readonly #closed = new Map<string, number>();
  readonly #o: Required<FlowSequencerOptions<T>>;

  constructor(options: FlowSequencerOptions<T>) {
    this.#o = {
      maxHeld: 8192,
      maxHeldBytes: DEFAULT_MAX_HELD_BYTES,
      maxGroupBytes: DEFAULT_MAX_GROUP_BYTES,
      sizeOf: () => 0,
      groupOf: () => '',
      hold: (item) => item,
      waitMs: 2000,
      rememberClosedMs: 60_000,
      now: () => performance.now(),
      ...options,
    };
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
      const group = this.#o.groupOf(key);
      f = { next: 0, pending: new Map(), heldSince: 0, heldBytes: 0, group };
      this.#flows.set(key, f);
      let g = this.#groups.get(group);
      if (!g) this.#groups.set(group, (g = { bytes: 0, flows: new Set() }));
      g.flows.add(key);
    }
    const d = (m.sequence - f.next) | 0;
    if (d < 0) {
      this.stats.late++;
      return;
    }
    if (d > 0) this.#hold(key, f, m.sequence >>> 0, item);
    else this.#release(key, f, item);
  }

  #hold(key: string, f: FlowOrder<T>, sequence: number, item: T): void {
    const bytes = this.#o.sizeOf(item);
    if (f.pending.size >= this.#o.maxHeld || f.heldBytes + bytes > this.#o.maxHeldBytes) {
      this.#overflow(key, f, item);
      return;
    }
    // The group's bound: its largest holders go until this fits (this flow, if it is the largest).
    const g = this.#groups.get(f.group)!;
    while (g.bytes + bytes > this.#o.maxGroupBytes) {
      let largest = key;
      let most = f.heldBytes + bytes;
      for (const k of g.flows) {
        const x = this.#flows.get(k)!;
        if (x.heldBytes > most) {
          most = x.heldBytes;
          largest = k;
        }
      }
      this.stats.groupOverflows++;
      if (largest === key) {
        this.#overflow(key, f, item);
        return;
      }
      const victim = this.#flows.get(largest)!;
      this.#overflow(largest, victim, victim.pending.values().next().value!.item, false);
      // The victim's owner may have ended this flow meanwhile.
      if (this.#flows.get(key) !== f) {
        this.stats.overflowDropped++;
        return;
      }
    }
    if (!f.pending.size) f.heldSince = this.#o.now();
    f.pending.set(sequence, { item: this.#o.hold(item), bytes });
    f.heldBytes += bytes;
    g.bytes += bytes;
    this.stats.heldBytes += bytes;
    this.stats.held++;
  }

  /** Drops the flow and what it held, and hands it to onOverflow; `extra`: the item that did not fit is dropped too. */
  #overflow(key: string, f: FlowOrder<T>, item: T, extra = true): void {
    this.stats.overflows++;
    this.stats.overflowDropped += f.pending.size + (extra ? 1 : 0);
    this.forget(key);
    this.#o.onOverflow(key, item);
  }

  #release(key: string, f: FlowOrder<T>, item: T): void {
    f.next = (f.next + 1) >>> 0;
    this.#o.deliver(key, item);
    // Delivering may end the flow (forget): then what it held goes too.
    while (this.#flows.get(key) === f) {
      const held = f.pending.get(f.next);
      if (held === undefined) break;
      f.pending.delete(f.next);
      this.#unaccount(f, held.bytes);
      this.stats.released++;
      f.next = (f.next + 1) >>> 0;
      this.#o.deliver(key, held.item);
    }
    if (this.#flows.get(key) === f) f.heldSince = f.pending.size ? this.#o.now() : 0;
  }

  #unaccount(f: FlowOrder<T>, bytes: number): void {
    f.heldBytes -= bytes;
    this.stats.heldBytes -= bytes;
    const g = this.#groups.get(f.group);
    if (g) g.bytes -= bytes;
  }

  /** Removes the flow's state and its bytes from the accounts. */
  #remove(key: string): FlowOrder<T> | undefined {
    const f = this.#flows.get(key);
    if (!f) return undefined;
    this.#flows.delete(key);
    this.#unaccount(f, f.heldBytes);
    const g = this.#groups.get(f.group);
    if (g) {
      g.flows.delete(key);
      if (g.flows.size === 0) this.#groups.delete(f.group);
    }
    return f;
  }

  /** The flow ended (or was refused): drop its state and ignore its late messages for a while. */
  forget(key: string): void {
    if (this.#remove(key)) this.#closed.set(key, this.#o.now());
  }

  /** Hands orphans over and forgets old closed keys; call about once a second. */
  sweep(): void {
    const now = this.#o.now();
    for (const [key, f] of [...this.#flows]) {
      // Only a flow that never started (waiting for its 0) is orphaned; a gap in a running flow is the transport's to fill.
      if (this.#flows.get(key) === f && f.next === 0 && f.pending.size && now - f.heldSince > this.#o.waitMs) {
        const items = [...f.pending.values()].map((h) => h.item);
        this.#remove(key);
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

  /** Bytes held now by the flows of `group`. */
  groupBytes(group: string): number {
    return this.#groups.get(group)?.bytes ?? 0;
  }
}
