/**
 * Who may open a flow when the gateway's table is filling (issue #16): the
 * table holds at most `maxFlows`, and one source (a client address; on the
 * destination side a client address behind one peer) at most
 * `maxFlowsPerSource`, so one client with thousands of UDP source ports or
 * idle TCP connections cannot lock everyone else out.
 *
 * When a limit is reached, a UDP flow that has been quiet for at least
 * `evictIdleMs` makes room — the least recently used first (the source's
 * own for its quota, anyone's for the table) — before the new flow is
 * refused. UDP has no close: a quiet UDP flow is usually one whose
 * exchange is over (a DNS query, an ended call), and its next datagram
 * simply starts a new flow. TCP flows are never evicted (that would break
 * a live connection); they end by their own close or the TCP idle timeout.
 *
 * Pure bookkeeping: the gateway asks, evicts through the callback and
 * reports additions, removals and activity. Recency is kept by Map order
 * (a touched UDP flow moves to the end), so choosing a victim is O(1).
 */
export interface AdmissionLimits {
  readonly maxFlows: number;
  readonly maxFlowsPerSource: number;
  /** A UDP flow quiet this long may be evicted to make room. */
  readonly evictIdleMs: number;
}

interface Entry {
  readonly source: string;
  readonly udp: boolean;
  lastActive: number;
}

interface Source<F> {
  count: number;
  /** This source's UDP flows, least recently active first. */
  readonly udp: Map<F, Entry>;
}

export type Admission = { readonly ok: true } | { readonly ok: false; readonly reason: 'limit' | 'source' };

export class FlowAdmission<F> {
  readonly #limits: AdmissionLimits;
  readonly #flows = new Map<F, Entry>();
  readonly #sources = new Map<string, Source<F>>();
  /** Every UDP flow, least recently active first. */
  readonly #udp = new Map<F, Entry>();

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#flows.size;
  }

  /** Flows of one source now. */
  count(source: string): number {
    return this.#sources.get(source)?.count ?? 0;
  }

  /** The source holding the most flows now (for status; O(sources)). */
  busiest(): { source: string; flows: number } | undefined {
    let best: { source: string; flows: number } | undefined;
    for (const [source, s] of this.#sources) if (!best || s.count > best.flows) best = { source, flows: s.count };
    return best;
  }

  /**
   * May `source` open a flow now? Evicts (through `evict`, which must end
   * the flow and so call remove()) quiet UDP flows where that makes room.
   */
  admit(source: string, evict: (flow: F) => void, now = performance.now()): Admission {
    const s = this.#sources.get(source);
    if (s && s.count >= this.#limits.maxFlowsPerSource) {
      if (!this.#evictOldest(s.udp, evict, now)) return { ok: false, reason: 'source' };
    }
    if (this.#flows.size >= this.#limits.maxFlows) {
      if (!this.#evictOldest(this.#udp, evict, now)) return { ok: false, reason: 'limit' };
    }
    return { ok: true };
  }

  #evictOldest(lru: Map<F, Entry>, evict: (flow: F) => void, now: number): boolean {
    const first = lru.entries().next();
    if (first.done) return false;
    const [flow, e] = first.value;
    if (now - e.lastActive < this.#limits.evictIdleMs) return false;
    evict(flow);
    // The callback must have removed it; if it did not, do it here so the count stays true.
    if (this.#flows.has(flow)) this.remove(flow);
    return true;
  }

  add(flow: F, source: string, udp: boolean, now = performance.now()): void {
    if (this.#flows.has(flow)) return;
    const e: Entry = { source, udp, lastActive: now };
    this.#flows.set(flow, e);
    let s = this.#sources.get(source);
    if (!s) {
      s = { count: 0, udp: new Map() };
      this.#sources.set(source, s);
    }
    s.count++;
    if (udp) {
      s.udp.set(flow, e);
      this.#udp.set(flow, e);
    }
  }

  remove(flow: F): void {
    const e = this.#flows.get(flow);
    if (!e) return;
    this.#flows.delete(flow);
    const s = this.#sources.get(e.source)!;
    s.count--;
    if (e.udp) {
      s.udp.delete(flow);
      this.#udp.delete(flow);
    }
    if (s.count === 0) this.#sources.delete(e.source);
  }

  /** The flow carried a datagram: it becomes the most recently used. */
  touch(flow: F, now = performance.now()): void {
    const e = this.#flows.get(flow);
    if (!e) return;
    e.lastActive = now;
    if (!e.udp) return;
    const s = this.#sources.get(e.source)!;
    s.udp.delete(flow);
    s.udp.set(flow, e);
    this.#udp.delete(flow);
    this.#udp.set(flow, e);
  }
}
