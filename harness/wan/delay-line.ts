/**
 * The UDP link emulator's delay line (udp-emulator.ts): holds datagrams
 * until their due time, then hands each to `deliver`, earliest first (equal
 * due times in the order they were added). In-order datagrams go through a
 * plain FIFO: their due time is raised to the previous in-order one's, so
 * jitter never reorders them and the FIFO stays sorted. Held-back datagrams
 * and duplicate copies go through a binary min-heap, so later datagrams can
 * overtake them.
 *
 * Timing: due times are fractional ms on performance.now(); one setTimeout,
 * armed for the earliest due datagram, and each firing delivers every
 * datagram then due.
 */
import { performance } from 'node:perf_hooks';

interface Pending<T> {
  due: number;
  /** Tie-break so equal due times keep arrival order. */
  ord: number;
  item: T;
}

const earlier = <T>(x: Pending<T>, y: Pending<T>): boolean => x.due < y.due || (x.due === y.due && x.ord < y.ord);

export class DelayLine<T> {
  readonly #deliver: (item: T) => void;
  /** Due time of the last in-order datagram. */
  #lastDue = 0;
  /** In-order datagrams: due times never decrease, so a plain queue suffices. */
  #fifo: (Pending<T> | undefined)[] = [];
  #fifoHead = 0;
  /** Out-of-order datagrams: a binary min-heap on (due, ord). */
  #heap: Pending<T>[] = [];
  #ord = 0;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  readonly #onTimer = () => {
    this.#timer = null;
    this.#timerAt = Infinity;
    this.flush();
  };

  constructor(deliver: (item: T) => void) {
    this.#deliver = deliver;
  }

  /** Datagrams waiting for their due time. */
  get size(): number {
    return this.#fifo.length - this.#fifoHead + this.#heap.length;
  }

  /** Due at `due`, or when the previous in-order datagram is if that is later. */
  inOrder(due: number, item: T): void {
    this.#lastDue = Math.max(due, this.#lastDue);
    this.#fifo.push({ due: this.#lastDue, ord: this.#ord++, item });
  }

  /** Due at `due` exactly, outside the in-order chain. */
  outOfOrder(due: number, item: T): void {
    const a = this.#heap;
    const e = { due, ord: this.#ord++, item };
    let i = a.length;
    a.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pe = a[parent]!;
      if (!earlier(e, pe)) break;
      a[i] = pe;
      i = parent;
    }
    a[i] = e;
  }

  /** Delivers everything due, then arms the timer for the next due datagram. */
  flush(now = performance.now()): void {
    for (;;) {
      const f = this.#fifo[this.#fifoHead];
      const h = this.#heap[0];
      let next: Pending<T>;
      if (f && (!h || earlier(f, h))) {
        if (f.due > now) break;
        this.#fifo[this.#fifoHead++] = undefined;
        next = f;
      } else if (h) {
        if (h.due > now) break;
        next = this.#heapPop();
      } else break;
      this.#deliver(next.item);
    }
    // Reclaim the consumed front of the queue without shifting per datagram.
    if (this.#fifoHead === this.#fifo.length) {
      this.#fifo.length = 0;
      this.#fifoHead = 0;
    } else if (this.#fifoHead > 4096 && this.#fifoHead * 2 > this.#fifo.length) {
      this.#fifo = this.#fifo.slice(this.#fifoHead);
      this.#fifoHead = 0;
    }
    const f = this.#fifo[this.#fifoHead];
    const h = this.#heap[0];
    const at = Math.min(f ? f.due : Infinity, h ? h.due : Infinity);
    if (at === Infinity || at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    // Rounded up: a datagram must never leave before its due time. An early
    // libuv wake-up (its clock is cached per loop turn) just re-arms.
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(at - now)));
  }

  /** Drops everything waiting and disarms the timer. */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
    this.#fifo = [];
    this.#fifoHead = 0;
    this.#heap = [];
  }

  #heapPop(): Pending<T> {
    const a = this.#heap;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const child = r < a.length && earlier(a[r]!, a[l]!) ? r : l;
        if (!earlier(a[child]!, last)) break;
        a[i] = a[child]!;
        i = child;
      }
      a[i] = last;
    }
    return top;
  }
}
