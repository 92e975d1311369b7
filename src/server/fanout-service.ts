/**
 * The daemon's live fan-out (the serve config's `fanout:`, docs/FANOUT.md):
 * one Fanout started with the service, brought to the file on SIGHUP
 * (started, stopped, or restarted when its settings changed; an unchanged
 * one keeps its clients), closed with the service. Its counters live in
 * the fan-out thread: `status()` asks it, and the metrics read the last
 * answer, refreshed before each scrape (`refresh()`).
 */
import { Fanout, type FanoutStats } from '../index.js';
import type { ServeFanoutConfig } from '../policy/serve-config.js';

/** `GET /v1/fanout`. */
export interface FanoutView {
  /** `HOST:PORT` of the HTTP front, if configured. */
  readonly http: string | undefined;
  readonly tcp: readonly string[];
  readonly config: ServeFanoutConfig;
  /** The fan-out thread's error if it stopped on its own. */
  readonly failure?: string;
  readonly stats: FanoutStats;
}

export type FanoutChange = 'started' | 'stopped' | 'restarted' | 'unchanged';

export class ServeFanout {
  #fanout: Fanout | undefined;
  #config: ServeFanoutConfig | undefined;
  #last: FanoutStats | undefined;

  get running(): boolean {
    return this.#fanout !== undefined;
  }

  /** Brings the fan-out to `config` (none: stopped). A restart that cannot start the new one starts the old again and throws. */
  async apply(config: ServeFanoutConfig | undefined): Promise<FanoutChange> {
    if (JSON.stringify(config) === JSON.stringify(this.#config)) return 'unchanged';
    const old = this.#config;
    const had = this.#fanout !== undefined;
    await this.close();
    if (!config) return 'stopped';
    try {
      this.#fanout = await Fanout.start(config);
      this.#config = config;
    } catch (err) {
      if (old) {
        this.#fanout = await Fanout.start(old).catch(() => undefined);
        if (this.#fanout) this.#config = old;
      }
      throw err;
    }
    return had ? 'restarted' : 'started';
  }

  async status(): Promise<FanoutView | undefined> {
    const f = this.#fanout;
    if (!f || !this.#config) return undefined;
    const stats = await f.stats();
    this.#last = stats;
    return { http: f.http, tcp: f.tcp, config: this.#config, ...(f.failure ? { failure: f.failure.message } : {}), stats };
  }

  /** Asks the thread for its counters (the metrics read them next). A thread that does not answer leaves the last ones. */
  async refresh(): Promise<void> {
    const f = this.#fanout;
    if (!f) {
      this.#last = undefined;
      return;
    }
    if (f.failure) return;
    this.#last = await f.stats().catch(() => this.#last);
  }

  /** The counters of the last status() or refresh(); undefined with no fan-out. */
  last(): FanoutStats | undefined {
    return this.#fanout ? this.#last : undefined;
  }

  async close(): Promise<void> {
    const f = this.#fanout;
    this.#fanout = undefined;
    this.#config = undefined;
    this.#last = undefined;
    if (f) await f.close();
  }
}
