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
import { DESTINATION_DROP_REASONS, type DestinationDropReason, type DestinationStats, type MonitoredFlowStats } from '../index.js';

/** A subscriber's counters, or the sum of several. */
export interface SubscriberTotals {
  packetsOut: number;
  bytesOut: number;
  drops: Record<DestinationDropReason, number>;
}

/** What one scrape exports per flow. */
export interface CappedFlow {
  readonly stats: MonitoredFlowStats;
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

interface FlowState {
  /** The reading that last saw the flow. */
  seen: number;
  /** Subscribers with their own series: the reading that last saw each. */
  readonly kept: Map<string, number>;
  /** Folded subscribers: their counters at the last reading that saw them. */
  readonly folded: Map<string, { seen: number; totals: SubscriberTotals }>;
  /** What folded subscribers had counted when they stopped counting toward `_other`. */
  retired: SubscriberTotals | undefined;
}

export class SubscriberCap {
  readonly #max: number;
  /** Per flow name (nested maps: no key strings built per subscriber and scrape). */
  readonly #flows = new Map<string, FlowState>();
  #keptCount = 0;
  #reading = 0;

  constructor(maxSubscribers: number) {
    this.#max = Math.max(0, Math.floor(maxSubscribers));
  }

  /** Splits one reading of the flows into kept subscribers and `_other` sums, updating the state above. */
  apply(flows: readonly MonitoredFlowStats[]): CapResult {
    const reading = ++this.#reading;
    // Mark who is still there, then forget who is not: room freed now is given out below, in the same reading.
    for (const f of flows) {
      let st = this.#flows.get(f.name);
      if (!st) this.#flows.set(f.name, (st = { seen: reading, kept: new Map(), folded: new Map(), retired: undefined }));
      st.seen = reading;
      for (const d of f.destinations) {
        if (st.kept.has(d.to)) st.kept.set(d.to, reading);
        else {
          const fo = st.folded.get(d.to);
          if (fo) fo.seen = reading;
        }
      }
    }
    for (const [name, st] of this.#flows) {
      if (st.seen !== reading) {
        this.#keptCount -= st.kept.size;
        this.#flows.delete(name);
        continue;
      }
      for (const [to, seen] of st.kept) {
        if (seen === reading) continue;
        st.kept.delete(to);
        this.#keptCount--;
      }
      for (const [to, fo] of st.folded) {
        if (fo.seen === reading) continue;
        st.retired = plus(st.retired, fo.totals);
        st.folded.delete(to);
      }
    }

    let folded = 0;
    const out = flows.map((f): CappedFlow => {
      const st = this.#flows.get(f.name)!;
      let kept: DestinationStats[] | undefined;
      let other: SubscriberTotals | undefined;
      for (let i = 0; i < f.destinations.length; i++) {
        const d = f.destinations[i]!;
        if (!st.kept.has(d.to)) {
          if (this.#keptCount < this.#max) {
            st.kept.set(d.to, reading);
            this.#keptCount++;
            const before = st.folded.get(d.to);
            if (before) {
              // Promoted: \`_other\` keeps what it counted for it, and what it gained since (its own series starts here).
              const now = totalsOf(d);
              if (restarted(now, before.totals)) st.retired = plus(st.retired, before.totals);
              st.retired = plus(st.retired, now);
              st.folded.delete(d.to);
            }
          } else {
            // Folded: the first one copies the kept ones so far (until then the flow's own list serves).
            kept ??= f.destinations.slice(0, i).filter((x) => st.kept.has(x.to));
            const now = totalsOf(d);
            const before = st.folded.get(d.to);
            if (before && restarted(now, before.totals)) st.retired = plus(st.retired, before.totals);
            st.folded.set(d.to, { seen: reading, totals: now });
            other ??= zeroTotals();
            addInto(other, now);
            folded++;
            continue;
          }
        }
        kept?.push(d);
      }
      if (st.retired) addInto((other ??= zeroTotals()), st.retired);
      return { stats: f, kept: kept ?? f.destinations, ...(other ? { other } : {}) };
    });
    return { flows: out, folded };
  }
}

function plus(into: SubscriberTotals | undefined, t: SubscriberTotals): SubscriberTotals {
  const r = into ?? zeroTotals();
  addInto(r, t);
  return r;
}
