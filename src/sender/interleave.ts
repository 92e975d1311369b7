/**
 * The order in which messages due at the same instant leave: destinations
 * take turns, each turn at most `burst` messages to one destination (in the
 * order given), so that no destination gets a long burst (a switch port or
 * a receiver would have to buffer it) while runs of several messages to one
 * destination can still go as one UDP GSO message. Both aggregate engines
 * use it, so a tier change does not change the order on the wire.
 */
export class Interleaver {
  /** Per destination: messages in the current group, first sorted position, cursor. */
  readonly #count: Int32Array;
  readonly #start: Int32Array;
  readonly #next: Int32Array;

  constructor(destinations: number) {
    this.#count = new Int32Array(destinations);
    this.#start = new Int32Array(destinations);
    this.#next = new Int32Array(destinations);
  }

  /**
   * Writes `slots[0..count)` into `out` in turn order and returns it.
   * `destOf[slot]` is a slot's destination index. Stable (each
   * destination's messages keep their order), the first message's
   * destination leads each round, O(count) whatever the number of
   * destinations.
   */
  order(slots: Int32Array, count: number, destOf: Int32Array, burst: number, out: Int32Array): Int32Array {
    const cnt = this.#count;
    const start = this.#start;
    const next = this.#next;
    const used: number[] = [];
    for (let i = 0; i < count; i++) {
      const d = destOf[slots[i]!]!;
      if (cnt[d] === 0) used.push(d);
      cnt[d]!++;
    }
    if (used.length <= 1) {
      for (const d of used) cnt[d] = 0;
      out.set(slots.subarray(0, count));
      return out;
    }
    let at = 0;
    for (const d of used) {
      start[d] = at;
      next[d] = at;
      at += cnt[d]!;
    }
    const sorted = new Int32Array(count);
    for (let i = 0; i < count; i++) sorted[next[destOf[slots[i]!]!]!++] = slots[i]!;
    for (const d of used) next[d] = start[d]!;
    const step = Math.max(1, burst);
    let live = used;
    let w = 0;
    while (live.length) {
      const still: number[] = [];
      for (const d of live) {
        const end = start[d]! + cnt[d]!;
        const stop = Math.min(end, next[d]! + step);
        while (next[d]! < stop) out[w++] = sorted[next[d]!++]!;
        if (next[d]! < end) still.push(d);
      }
      live = still;
    }
    for (const d of used) cnt[d] = 0;
    return out;
  }
}
