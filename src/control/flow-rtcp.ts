/**
 * FlowRtcp: the policy table's RTCP relays and subscriber liveness, for
 * flows with `rtcp: 'port+1'`. With `subscriberTimeoutMs`, a subscriber
 * that sent no RTCP report for that long is left out of the plan the data
 * plane runs (sent nothing, on every tier alike) until it reports again;
 * the owner hears of both through `onSilence`. A subscriber added while the
 * flow runs gets the full timeout to send its first report.
 */
import type { FlowPlan } from '../policy/compile.js';
import type { DestinationStats, FlowStats } from '../dataplane/common/counters.js';
import { formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import { RtcpRelay, type RtcpCounters } from './rtcp-relay.js';

/** How often liveness is checked, at most (ms); a quarter of the timeout when that is shorter. */
const CHECK_MS = 1000;

interface FlowState {
  readonly relay: RtcpRelay;
  plan: FlowPlan;
  /** Last report (or the time it was added) per subscriber URL, ms (Date.now()). */
  readonly heard: Map<string, number>;
  /** Silent subscribers: since when, and their counters when they were left out. */
  readonly silent: Map<string, { since: number; last: DestinationStats | undefined }>;
  timer?: NodeJS.Timeout;
}

export class FlowRtcp {
  readonly #flows = new Map<string, FlowState>();
  readonly #replan: (id: string) => void;
  readonly #onSilence: (id: string, to: string, silent: boolean) => void;
  readonly #lastStats: (id: string) => FlowStats | undefined;

  /**
   * `replan(id)` asks the table to send flow `id`'s plan through run() again
   * (a subscriber fell silent or came back); `lastStats(id)` reads the data
   * plane's counters (to keep a silenced subscriber's).
   */
  constructor(replan: (id: string) => void, onSilence: (id: string, to: string, silent: boolean) => void, lastStats: (id: string) => FlowStats | undefined) {
    this.#replan = replan;
    this.#onSilence = onSilence;
    this.#lastStats = lastStats;
  }

  /** The plan the data plane runs for flow `id` (silent subscribers left out), after opening, keeping or closing its relay. */
  async run<T>(id: string, plan: FlowPlan, listen: Endpoint, apply: (planePlan: FlowPlan) => Promise<T>): Promise<T> {
    let state = this.#flows.get(id);
    if (!plan.rtcp) {
      const result = await apply(plan);
      if (state) this.close(id);
      return result;
    }
    const opened = !state;
    if (!state) {
      const relay = await RtcpRelay.open(listen, plan.sources, (to) => this.#heard(id, to));
      state = { relay, plan, heard: new Map(), silent: new Map() };
    }
    const s = state;
    const now = Date.now();
    const urls = new Set(plan.destinations.map(formatEndpoint));
    for (const url of urls) if (!s.heard.has(url)) s.heard.set(url, now);
    for (const url of [...s.heard.keys()]) if (!urls.has(url)) s.heard.delete(url);
    for (const url of [...s.silent.keys()]) if (!urls.has(url)) s.silent.delete(url);
    const live = plan.destinations.filter((d) => !s.silent.has(formatEndpoint(d)));
    try {
      const result = await apply({ ...plan, destinations: live });
      s.plan = plan;
      s.relay.setSubscribers(plan.destinations);
      if (opened) this.#flows.set(id, s);
      this.#schedule(id, s);
      return result;
    } catch (err) {
      if (opened) s.relay.close();
      throw err;
    }
  }

  close(id: string): void {
    const s = this.#flows.get(id);
    if (!s) return;
    clearInterval(s.timer);
    s.relay.close();
    this.#flows.delete(id);
  }

  closeAll(): void {
    for (const id of [...this.#flows.keys()]) this.close(id);
  }

  /** `stats` with the silent subscribers listed again (their counters as they were left out) and the relay's counters. */
  view<S extends FlowStats>(id: string, stats: S | undefined): (S & { readonly rtcp?: RtcpCounters }) | undefined {
    const s = this.#flows.get(id);
    if (!stats || !s) return stats;
    const silent: DestinationStats[] = [...s.silent].map(([to, { since, last }]) => ({
      ...(last ?? { to, packetsOut: 0, bytesOut: 0, drops: { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0 } }),
      silentSince: since,
    }));
    return { ...stats, destinations: [...stats.destinations, ...silent], rtcp: s.relay.counters() };
  }

  #heard(id: string, to: string): void {
    const s = this.#flows.get(id);
    if (!s) return;
    s.heard.set(to, Date.now());
    if (s.silent.delete(to)) {
      this.#onSilence(id, to, false);
      this.#replan(id);
    }
  }

  #schedule(id: string, s: FlowState): void {
    const timeout = s.plan.rtcp?.subscriberTimeoutMs;
    if (timeout === undefined) {
      clearInterval(s.timer);
      s.timer = undefined;
      return;
    }
    if (s.timer) return;
    s.timer = setInterval(() => this.#check(id, s), Math.min(CHECK_MS, timeout / 4));
    s.timer.unref();
  }

  #check(id: string, s: FlowState): void {
    const timeout = s.plan.rtcp?.subscriberTimeoutMs;
    if (timeout === undefined) return;
    const now = Date.now();
    const dests = this.#lastStats(id)?.destinations;
    let changed = false;
    for (const [to, at] of s.heard) {
      if (s.silent.has(to) || now - at < timeout) continue;
      s.silent.set(to, { since: now, last: dests?.find((d) => d.to === to) });
      this.#onSilence(id, to, true);
      changed = true;
    }
    if (changed) this.#replan(id);
  }
}
