/**
 * Metrics whose values are read at scrape time, not kept between scrapes:
 * prom-client's Counter and Gauge, registered on a Registry as usual, whose
 * `get()` returns the values a read function gives instead of values set
 * earlier. Nothing is incremented per packet and nothing is stored per
 * series: a scrape reads the engines' counters once (ScrapeCache) and
 * every metric picks its part.
 *
 * SnapshotRegistry writes these metrics' text itself. prom-client's
 * formatter builds several arrays and strings per series (labels as
 * entries, escaped, joined, filtered): with 100 flows of 100 subscribers
 * it took about 150 ms per scrape, most of it that and the garbage it
 * left, on the thread that also serves the portable tier's packets. Here
 * a series is one template string, and a label value is escaped only when
 * it holds a character that needs it. The other metrics (process
 * metrics) keep prom-client's formatter; the text format is the same
 * (version 0.0.4: HELP and TYPE lines, `\\`, `\n` and `\"` escaped in label
 * values, `\\` and `\n` in HELP).
 */
import { Counter, Gauge, Registry } from 'prom-client';

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
  /**
   * The same series as text lines (`name{labels} value`, `extra` appended
   * to the labels), for metrics with many series whose label text can be
   * built once per scrape and shared (per-subscriber series); must give
   * what `read` gives. Default: formatted from `read`.
   */
  readonly lines?: (extra: string) => string[];
}

const NEEDS_ESCAPE = /[\\\n"]/;

/** A label value as the text format wants it inside double quotes. */
export function escapeLabelValue(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as the text format writes it (Go's ParseFloat reads all of these). */
export function valueText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** What SnapshotRegistry asks a snapshot metric for. */
interface Exposable {
  /** The metric's text: HELP, TYPE and one line per series; `extra` is `,name="value"...` added to every series' labels. */
  expose(extra: string): string;
}

function expose<L extends string>(c: SnapshotMetricConfig<L>, type: 'counter' | 'gauge', extra: string): string {
  const head = `# HELP ${c.name} ${escapeHelp(c.help)}\n# TYPE ${c.name} ${type}`;
  if (c.lines) {
    const lines = c.lines(extra);
    return lines.length ? `${head}\n${lines.join('\n')}` : head;
  }
  const out = [head];
  for (const row of c.read()) {
    let labels = '';
    for (const l of c.labelNames) {
      const v = row.labels[l];
      if (v !== undefined) labels += `${labels ? ',' : ''}${l}="${escapeLabelValue(v)}"`;
    }
    if (extra) labels = labels ? labels + extra : extra.slice(1);
    out.push(labels ? `${c.name}{${labels}} ${valueText(row.value)}` : `${c.name} ${valueText(row.value)}`);
  }
  return out.join('\n');
}

/** A counter read at scrape time (its source counts; this only reports). */
export class SnapshotCounter<L extends string> extends Counter<L> implements Exposable {
  readonly #config: SnapshotMetricConfig<L>;

  constructor(config: SnapshotMetricConfig<L>) {
    super({ name: config.name, help: config.help, labelNames: config.labelNames, registers: [config.registry] });
    this.#config = config;
  }

  override get(): ReturnType<Counter<L>['get']> {
    // Read before the first await: every metric of one scrape then reads in the same turn (ScrapeCache).
    const values = this.#config.read().map((s) => ({ labels: s.labels, value: s.value }));
    return super.get().then((base) => ({ ...base, values }));
  }

  expose(extra: string): string {
    return expose(this.#config, 'counter', extra);
  }
}

/** A gauge read at scrape time. */
export class SnapshotGauge<L extends string> extends Gauge<L> implements Exposable {
  readonly #config: SnapshotMetricConfig<L>;

  constructor(config: SnapshotMetricConfig<L>) {
    super({ name: config.name, help: config.help, labelNames: config.labelNames, registers: [config.registry] });
    this.#config = config;
  }

  override get(): ReturnType<Gauge<L>['get']> {
    const values = this.#config.read().map((s) => ({ labels: s.labels, value: s.value }));
    return super.get().then((base) => ({ ...base, values }));
  }

  expose(extra: string): string {
    return expose(this.#config, 'gauge', extra);
  }
}

/**
 * A prom-client Registry (Prometheus text format only) that writes
 * snapshot metrics with the fast path above and every other metric with
 * prom-client's own formatter, in registration order. `constantLabels`
 * are added to every series (also set as prom-client's default labels for
 * the others).
 */
export class SnapshotRegistry extends Registry {
  readonly #extra: string;

  constructor(constantLabels: Readonly<Record<string, string>> = {}) {
    super();
    this.#extra = Object.entries(constantLabels)
      .map(([k, v]) => `,${k}="${escapeLabelValue(v)}"`)
      .join('');
    if (Object.keys(constantLabels).length) this.setDefaultLabels({ ...constantLabels });
  }

  override async metrics(): Promise<string> {
    // Every snapshot metric's text is built in this synchronous pass, so they share one reading (ScrapeCache).
    const parts = this.getMetricsAsArray().map((m) =>
      m instanceof SnapshotCounter || m instanceof SnapshotGauge
        ? (m as Exposable).expose(this.#extra)
        : // prom-client writes NaN as "Nan" (the event-loop lag before its first sample); the format says NaN.
          this.getSingleMetricAsString(m.name).then((t) => t.replace(/ Nan$/gm, ' NaN')),
    );
    return `${(await Promise.all(parts)).join('\n\n')}\n`;
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
