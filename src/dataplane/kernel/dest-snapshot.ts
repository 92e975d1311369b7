/**
 * The dest_stats map read whole with one batch call and reused until the
 * current synchronous pass ends. `Sluice.stats()` reads every flow in one
 * pass (a metrics scrape does): with 100 flows of 100 subscribers that was
 * 10,100 lookups, one system call each, where one batch call reads all
 * 16,384 slots (1 MiB with two CPUs). A flow with few subscribers is read
 * slot by slot instead, which costs less than the whole map.
 */
import { mapLookup, mapLookupArrayRange } from '../../sys/bpf.js';
import { MAX_DESTS, slotKey } from './layout.js';

/** From this many subscribers on, a flow's destination counters come from the snapshot. */
export const SNAPSHOT_FROM_SUBSCRIBERS = 64;

export class DestStatsSnapshot {
  readonly #fd: number;
  readonly #valueSize: number;
  #bytes: Uint8Array | undefined;

  /** `valueSize`: one slot's value, all CPUs (DEST_COUNTERS_SIZE × CPUs). */
  constructor(fd: number, valueSize: number) {
    this.#fd = fd;
    this.#valueSize = valueSize;
  }

  /** Slot `slot`'s per-CPU counters, read alone, or from the pass's snapshot when `many` of them are wanted. */
  value(slot: number, many: boolean): Uint8Array | undefined {
    if (!many) return mapLookup(this.#fd, slotKey(slot), this.#valueSize, 'dest_stats');
    if (!this.#bytes) {
      this.#bytes = mapLookupArrayRange(this.#fd, this.#valueSize, MAX_DESTS, 'dest_stats');
      // Counters move: the snapshot serves only the pass that read it.
      queueMicrotask(() => (this.#bytes = undefined));
    }
    const at = slot * this.#valueSize;
    return at + this.#valueSize <= this.#bytes.length ? this.#bytes.subarray(at, at + this.#valueSize) : undefined;
  }

  /** A slot was zeroed or given to another subscriber: the snapshot no longer says what it holds. */
  invalidate(): void {
    this.#bytes = undefined;
  }
}
