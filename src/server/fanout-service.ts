/**
 * The daemon's live fan-out (the serve config's `fanout:`, docs/FANOUT.md):
 * one Fanout started with the service, brought to the file on SIGHUP
 * (started, stopped, or restarted when its settings changed; an unchanged
 * one keeps its clients, and one whose inputs or allow rules alone changed
 * is updated in place), closed with the service. Named inputs can also be
 * added and removed over the API (`PUT`/`DELETE /v1/fanout/inputs/NAME`:
 * withInput, withoutInput). Its counters live in
 * the fan-out thread: `status()` asks it, and the metrics read the last
 * answer, refreshed before each scrape (`refresh()`).
 */
import { FANOUT_INPUT_NAME, Fanout, PolicyValidationError, fanoutInputProblem, splitFanoutInput, type FanoutStats } from '../index.js';
import type { ServeFanoutConfig } from '../policy/serve-config.js';
import { ServiceError } from './service-error.js';

const NO_FANOUT = "no fan-out: the config file has no 'fanout:' section";

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

/** `updated`: only inputs or allow rules changed, applied in place (streams of inputs still allowed go on). */
export type FanoutChange = 'started' | 'stopped' | 'restarted' | 'updated' | 'unchanged';

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
    if (config && this.#fanout && !this.#fanout.failure && this.#fanout.update(config)) {
      this.#config = config;
      return 'updated';
    }
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

  /** The config in force; undefined with no fan-out. */
  get config(): ServeFanoutConfig | undefined {
    return this.#fanout ? this.#config : undefined;
  }

  /**
   * `PUT /v1/fanout/inputs/NAME`: adds input `name` (`GET /NAME`), or
   * points it at another URL; streams of the old URL end unless it stays
   * allowed. Returns whether the name is new.
   */
  async putInput(name: string, body: unknown): Promise<boolean> {
    const config = this.config;
    if (!config) throw new ServiceError('not_found', NO_FANOUT);
    if (!FANOUT_INPUT_NAME.test(name)) throw new ServiceError('invalid_request', `input name '${name}': 1-64 of A-Z a-z 0-9 _ . -`);
    const given = body as { input?: unknown } | undefined;
    const keys = typeof given === 'object' && given !== null && !Array.isArray(given) ? Object.keys(given) : undefined;
    if (!keys || typeof given!.input !== 'string' || keys.some((k) => k !== 'input')) {
      throw new ServiceError('invalid_request', 'expected {"input": "udp://GROUP:PORT"} (or rtp://)');
    }
    const url = given!.input.trim();
    const problem = url.length > 400 ? 'longer than 400 characters' : fanoutInputProblem(url);
    if (problem) throw new PolicyValidationError([{ path: 'input', message: problem }], 'fan-out input');
    const created = inputUrl(config, name) === undefined;
    await this.apply(withInput(config, name, url));
    return created;
  }

  /** `DELETE /v1/fanout/inputs/NAME`: its streams end (unless an allow rule still covers the URL). */
  async removeInput(name: string): Promise<void> {
    const config = this.config;
    if (!config) throw new ServiceError('not_found', NO_FANOUT);
    const next = withoutInput(config, name);
    if (!next) throw new ServiceError('not_found', `the fan-out has no input named '${name}'`);
    await this.apply(next);
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

/** A named input's entry in a fan-out's `inputs`: `NAME=udp://…`. */
function inputName(entry: string): string | undefined {
  return splitFanoutInput(entry).name;
}

/** `config` with input `name` set to `url` (replacing one of that name, else appended). */
export function withInput(config: ServeFanoutConfig, name: string, url: string): ServeFanoutConfig {
  const inputs = config.inputs ?? [];
  const at = inputs.findIndex((e) => inputName(e) === name);
  const entry = `${name}=${url}`;
  return { ...config, inputs: at < 0 ? [...inputs, entry] : inputs.map((e, i) => (i === at ? entry : e)) };
}

/** `config` without input `name`; undefined when it has none of that name. */
export function withoutInput(config: ServeFanoutConfig, name: string): ServeFanoutConfig | undefined {
  const inputs = config.inputs ?? [];
  if (!inputs.some((e) => inputName(e) === name)) return undefined;
  return { ...config, inputs: inputs.filter((e) => inputName(e) !== name) };
}

/** The URL of input `name`, if the config has one. */
export function inputUrl(config: ServeFanoutConfig, name: string): string | undefined {
  const e = (config.inputs ?? []).find((x) => inputName(x) === name);
  return e?.slice(name.length + 1);
}
