/**
 * Metrics whose values are read at scrape time, not kept between scrapes:
 * prom-client's Counter and Gauge, registered on a Registry as usual (so
 * the registry formats, escapes and orders them), whose `get()` returns the
 * values a read function gives instead of values set earlier. Nothing is
 * incremented per packet and nothing is stored per series: a scrape reads
 * the engines' counters once (ScrapeCache) and every metric picks its part.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** One series: its labels (names from the metric's labelNames) and value. */
export interface Sample<L extends string> {
  readonly labels: Partial<Record<L, string>>;
  readonly value: number;
}

export interface SnapshotMetricConfig<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly registry: Registry;
  /** The series now; called once per scrape of this metric. */
  readonly read: () => readonly Sample<L>[];
}

/** A counter read at scrape time (its source counts; this only reports). */
export class SnapshotCounter<L extends string> extends Counter<L> {
  readonly #read: () => readonly Sample<L>[];

  constructor(config: SnapshotMetricConfig<L>) {
    super({ name: config.name, help: config.help, labelNames: config.labelNames, registers: [config.registry] });
    this.#read = config.read;
  }

  override get(): ReturnType<Counter<L>['get']> {
    // Read before the first await: every metric of one scrape then reads in the same turn (ScrapeCache).
    const values = this.#read().map((s) => ({ labels: s.labels, value: s.value }));
    return super.get().then((base) => ({ ...base, values }));
  }
}

/** A gauge read at scrape time. */
export class SnapshotGauge<L extends string> extends Gauge<L> {
  readonly #read: () => readonly Sample<L>[];

  constructor(config: SnapshotMetricConfig<L>) {
    super({ name: config.name, help: config.help, labelNames: config.labelNames, registers: [config.registry] });
    this.#read = config.read;
  }

  override get(): ReturnType<Gauge<L>['get']> {
    const values = this.#read().map((s) => ({ labels: s.labels, value: s.value }));
    return super.get().then((base) => ({ ...base, values }));
  }
}

/**
 * One reading of the sources per scrape. A registry asks every metric for
 * its values in one synchronous pass (each metric's get() runs up to its
 * first await before the next is called), so the first metric to ask takes
 * the reading and the rest of that pass reuse it; it is dropped at the end
 * of the turn, and the next scrape reads afresh. Two scrapers at once
 * (two Prometheus servers) each get their own consistent reading.
 */
export class ScrapeCache<T> {
  readonly #take: () => T;
  #current: T | undefined;

  constructor(take: () => T) {
    this.#take = take;
  }

  get(): T {
    if (this.#current === undefined) {
      this.#current = this.#take();
      queueMicrotask(() => {
        this.#current = undefined;
      });
    }
    return this.#current;
  }
}
