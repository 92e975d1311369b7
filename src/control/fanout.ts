/**
 * Fanout: the library's handle on a live fan-out (issue 22, part 3), a
 * udpxy-like server. UDP or RTP inputs (unicast, or multicast groups it
 * joins while someone watches) go to many HTTP clients (`GET
 * /udp/GROUP:PORT`, `/rtp/GROUP:PORT`, `/NAME`; `/status` for counters)
 * and plain TCP clients, each datagram chunk written once into a pipe and
 * tee'd to every client's pipe (docs/FANOUT.md).
 */
import { FanoutEngine, type FanoutSpec, type FanoutStats } from '../dataplane/fanout/fanout-engine.js';
import { DEFAULT_LIMITS, parseAllowRule, parseInput, type FanoutInput, type FanoutLimits } from '../dataplane/fanout/config.js';
import { parseEndpoint, type Endpoint } from '../wire/endpoint.js';
import { PolicyValidationError, type PolicyIssue } from '../errors.js';

export type { FanoutStats, FanoutLimits };

export interface FanoutOptions {
  /** HTTP front: `HOST:PORT` or `http://HOST:PORT` (port 0: any). */
  readonly http?: string | undefined;
  /** Plain TCP listeners, each serving one input: `{ listen: 'tcp://HOST:PORT', input: 'udp://GROUP:PORT' }`. */
  readonly tcp?: readonly { readonly listen: string; readonly input: string }[] | undefined;
  /** Inputs always allowed: `udp://…`, `rtp://…`, or `NAME=udp://…` (then also `GET /NAME`). */
  readonly inputs?: readonly string[] | undefined;
  /** Further inputs a request may name: `CIDR`, `CIDR:PORT`, `CIDR:LO-HI`, `[V6CIDR]:PORT`; `any` for all (an open proxy). */
  readonly allow?: readonly string[] | undefined;
  /** Interface (name or address) groups are joined on; default by route. */
  readonly interface?: string | undefined;
  readonly limits?: Partial<FanoutLimits> | undefined;
}

function listenEndpoint(text: string, scheme: string, path: string, issues: PolicyIssue[]): Endpoint | undefined {
  const rest = text.replace(new RegExp(`^${scheme}://`, 'i'), '');
  const p = parseEndpoint(rest, { allowPortZero: true });
  if (!p.ok) issues.push({ path, message: p.reason });
  return p.ok ? p.endpoint : undefined;
}

/** A fan-out input's name (`NAME=udp://…` in `inputs`, `GET /NAME`). */
export const FANOUT_INPUT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** An `inputs` entry split into its name (if it has one: `NAME=URL`) and its URL. */
export function splitFanoutInput(entry: string): { name?: string; url: string } {
  const eq = entry.indexOf('=');
  const name = eq > 0 ? entry.slice(0, eq) : undefined;
  return name !== undefined && FANOUT_INPUT_NAME.test(name) ? { name, url: entry.slice(eq + 1) } : { url: entry };
}

/** Why `url` cannot be a fan-out input (`udp://HOST:PORT`, `rtp://HOST:PORT`), or undefined when it can. */
export function fanoutInputProblem(url: string): string | undefined {
  const r = parseInput(url);
  return typeof r === 'string' ? r : undefined;
}

/** Options → spec; PolicyValidationError listing every problem. */
export function fanoutSpec(o: FanoutOptions): FanoutSpec {
  const issues: PolicyIssue[] = [];
  const http = o.http === undefined ? undefined : listenEndpoint(o.http, 'http', 'http', issues);
  const inputs: FanoutInput[] = [];
  (o.inputs ?? []).forEach((text, i) => {
    const { name, url } = splitFanoutInput(text);
    const r = parseInput(url, name);
    if (typeof r === 'string') issues.push({ path: `inputs[${i}]`, message: r });
    else inputs.push(r);
  });
  const tcp: { listen: Endpoint; input: FanoutInput }[] = [];
  (o.tcp ?? []).forEach((t, i) => {
    const listen = listenEndpoint(t.listen, 'tcp', `tcp[${i}].listen`, issues);
    const input = parseInput(t.input);
    if (typeof input === 'string') issues.push({ path: `tcp[${i}].input`, message: input });
    else if (listen) {
      tcp.push({ listen, input });
      if (!inputs.some((x) => x.key === input.key)) inputs.push(input);
    }
  });
  const allow = (o.allow ?? []).flatMap((text, i) => {
    const r = parseAllowRule(text === 'any' ? '0.0.0.0/0' : text);
    if (typeof r === 'string') {
      issues.push({ path: `allow[${i}]`, message: r });
      return [];
    }
    return text === 'any' ? [r, parseAllowRule('[::/0]') as Exclude<ReturnType<typeof parseAllowRule>, string>] : [r];
  });
  if (!http && tcp.length === 0) issues.push({ path: 'http', message: 'give an HTTP listen address or at least one TCP listener' });
  if (issues.length > 0) throw new PolicyValidationError(issues, 'fan-out');
  return { http, tcp, inputs, allow, interface: o.interface, limits: { ...DEFAULT_LIMITS, ...o.limits } };
}

export class Fanout {
  readonly #engine: FanoutEngine;

  private constructor(engine: FanoutEngine) {
    this.#engine = engine;
  }

  /** Validates (PolicyValidationError), starts the fan-out thread and the listeners. */
  static async start(o: FanoutOptions): Promise<Fanout> {
    return new Fanout(await FanoutEngine.start(fanoutSpec(o)));
  }

  /**
   * Brings a running fan-out to `o` without a restart when only its
   * `inputs` and `allow` differ: streams of inputs still allowed go on,
   * streams of inputs taken out end (counted as `removed`). Validates
   * first (PolicyValidationError; nothing changes). Returns false, changing
   * nothing, when the listeners, interface or limits differ: those need a
   * new Fanout.
   */
  update(o: FanoutOptions): boolean {
    const next = fanoutSpec(o);
    const now = this.#engine.spec;
    const front = (s: FanoutSpec) => JSON.stringify([s.http, s.tcp.map((t) => [t.listen, t.input.key]), s.interface ?? null, s.limits]);
    if (front(next) !== front(now)) return false;
    this.#engine.setInputs(next.inputs, next.allow);
    return true;
  }

  /** `HOST:PORT` of the HTTP front (the port the OS chose for 0). */
  get http(): string | undefined {
    return this.#engine.httpAddress;
  }

  /** `HOST:PORT` of each TCP listener, in the order given. */
  get tcp(): string[] {
    return this.#engine.tcpAddresses;
  }

  /** The fan-out thread's error if it stopped on its own. */
  get failure(): Error | undefined {
    return this.#engine.failure;
  }

  /** Front counters (accepted, refused by reason), inputs, clients and totals. */
  stats(): Promise<FanoutStats> {
    return this.#engine.stats();
  }

  /** Stops listening and ends every stream; resolves with the last counters. */
  close(): Promise<FanoutStats> {
    return this.#engine.close();
  }
}
