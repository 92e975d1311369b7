/**
 * The cap on per-subscriber series. A relay with many subscribers would
 * otherwise hand Prometheus tens of thousands of series per scrape; past
 * the cap, subscribers are summed per flow into `subscriber="_other"`.
 *
 * Which subscribers keep their own series must not change from scrape to
 * scrape, or a subscriber's counters would hop between its own series and
 * `_other` and every `rate()` over them would see false resets. So: a
 * subscriber that has its own series keeps it while it exists; room freed
 * by subscribers that left goes to folded ones in the source's order
 * (flows in order, subscribers in order), then to new ones.
 *
 * `_other` must stay a counter (never decrease). Its value is the sum of
 * the folded subscribers present now, plus what folded subscribers had
 * when they stopped counting toward it: when they left, when they got
 * their own series (promoted), or when their counters restarted (removed
 * and added again between two scrapes). A promoted subscriber's series
 * starts at its full count while `_other` keeps what it had counted for
 * it, so `sum()` over a flow's subscriber series may count it twice until
 * the next restart of the process; `sum(rate(...))` is right throughout.
 */
import { DESTINATION_DROP_REASONS, type DestinationDropReason, type DestinationStats, type FlowStats } from '../index.js';

/** A subscriber's counters, or the sum of several. */
export interface SubscriberTotals {
  packetsOut: number;
  bytesOut: number;
  drops: Record<DestinationDropReason, number>;
}

/** What one scrape exports per flow. */
export interface CappedFlow {
  readonly stats: FlowStats;
  /** Subscribers with their own series. */
  readonly kept: readonly DestinationStats[];
  /** The `_other` series' totals, when the flow has (or had) folded subscribers. */
  readonly other?: SubscriberTotals;
}

export interface CapResult {
  readonly flows: readonly CappedFlow[];
  /** Subscribers folded into `_other` in this reading. */
  readonly folded: number;
}

export function zeroTotals(): SubscriberTotals {
  return { packetsOut: 0, bytesOut: 0, drops: { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0 } };
}

function totalsOf(d: DestinationStats): SubscriberTotals {
  return { packetsOut: d.packetsOut, bytesOut: d.bytesOut, drops: { ...d.drops } };
}

function addInto(into: SubscriberTotals, t: SubscriberTotals): void {
  into.packetsOut += t.packetsOut;
  into.bytesOut += t.bytesOut;
  for (const r of DESTINATION_DROP_REASONS) into.drops[r] += t.drops[r];
}

/** True if any counter went down: the subscriber's counters started again. */
function restarted(now: SubscriberTotals, before: SubscriberTotals): boolean {
  return now.packetsOut < before.packetsOut || now.bytesOut < before.bytesOut || DESTINATION_DROP_REASONS.some((r) => now.drops[r] < before.drops[r]);
}

/** NUL cannot occur in a flow name or an endpoint URL: a safe separator. */
const keyOf = (flow: string, to: string): string => `${flow}\u0000${to}`;

export class SubscriberCap {
  readonly #max: number;
  /** Subscribers with their own series (flow, to). */
  readonly #kept = new Set<string>();
  /** Folded subscribers: their counters at the last reading. */
  readonly #folded = new Map<string, { flow: string; totals: SubscriberTotals }>();
  /** Per flow: what folded subscribers had counted when they stopped counting toward `_other`. */
  readonly #retired = new Map<string, SubscriberTotals>();

  constructor(maxSubscribers: number) {
    this.#max = Math.max(0, Math.floor(maxSubscribers));
  }

  /** Splits one reading of the flows into kept subscribers and `_other` sums, updating the state above. */
  apply(flows: readonly FlowStats[]): CapResult {
    const present = new Set<string>();
    const flowNames = new Set<string>();
    for (const f of flows) {
      flowNames.add(f.name);
      for (const d of f.destinations) present.add(keyOf(f.name, d.to));
    }
    for (const k of this.#kept) if (!present.has(k)) this.#kept.delete(k);
    for (const [k, v] of this.#folded) {
      if (present.has(k)) continue;
      this.#retire(v.flow, v.totals);
      this.#folded.delete(k);
    }
    for (const name of this.#retired.keys()) if (!flowNames.has(name)) this.#retired.delete(name);

    let folded = 0;
    const out = flows.map((f): CappedFlow => {
      const kept: DestinationStats[] = [];
      let other: SubscriberTotals | undefined;
      for (const d of f.destinations) {
        const k = keyOf(f.name, d.to);
        const before = this.#folded.get(k);
        if (this.#kept.has(k) || this.#kept.size < this.#max) {
          this.#kept.add(k);
          if (before) {
            // Promoted: `_other` keeps what it counted for it, and what it gained since (its own series starts here).
            const now = totalsOf(d);
            if (restarted(now, before.totals)) this.#retire(f.name, before.totals);
            this.#retire(f.name, now);
            this.#folded.delete(k);
          }
          kept.push(d);
          continue;
        }
        const now = totalsOf(d);
        if (before && restarted(now, before.totals)) this.#retire(f.name, before.totals);
        this.#folded.set(k, { flow: f.name, totals: now });
        other ??= zeroTotals();
        addInto(other, now);
        folded++;
      }
      const retired = this.#retired.get(f.name);
      if (retired) addInto((other ??= zeroTotals()), retired);
      return { stats: f, kept, ...(other ? { other } : {}) };
    });
    return { flows: out, folded };
  }

  #retire(flow: string, t: SubscriberTotals): void {
    let r = this.#retired.get(flow);
    if (!r) this.#retired.set(flow, (r = zeroTotals()));
    addInto(r, t);
  }
}
