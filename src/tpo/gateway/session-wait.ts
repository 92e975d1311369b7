/**
 * Clients that arrived while no session with their peer was up (the pair
 * is forming, the peer is unreachable, or the keys differ and it never
 * will be) wait a bounded time for one: limits.sessionWaitMs. When a
 * session comes up they are no longer waiting; when the time is over the
 * gateway resets them (flowfail 'noSession'), so a client is never left
 * hanging on a peer that is not there. One timer per peer, for its
 * earliest deadline: flows wait in arrival order, so the first waiting is
 * the first due.
 */

export class SessionWait<F> {
  readonly #ms: number;
  readonly #expire: (flow: F, peer: string) => void;
  /** Per peer: waiting flows and their deadlines (performance.now() ms), in arrival order. */
  readonly #waiting = new Map<string, Map<F, number>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(ms: number, expire: (flow: F, peer: string) => void) {
    this.#ms = ms;
    this.#expire = expire;
  }

  /** `flow` waits for a session with `peer`. */
  add(flow: F, peer: string, now = performance.now()): void {
    let flows = this.#waiting.get(peer);
    if (!flows) this.#waiting.set(peer, (flows = new Map()));
    flows.set(flow, now + this.#ms);
    if (!this.#timers.has(peer)) this.#arm(peer, now);
  }

  /** A session with `peer` is up (or the peer is gone): nothing waits for it any more. */
  release(peer: string): void {
    this.#waiting.delete(peer);
    const t = this.#timers.get(peer);
    if (t) clearTimeout(t);
    this.#timers.delete(peer);
  }

  /** `flow` ended: it waits for nothing. */
  forget(flow: F, peer: string): void {
    this.#waiting.get(peer)?.delete(flow);
  }

  /** Flows waiting now, all peers. */
  get size(): number {
    let n = 0;
    for (const f of this.#waiting.values()) n += f.size;
    return n;
  }

  close(): void {
    for (const peer of [...this.#waiting.keys()]) this.release(peer);
  }

  #arm(peer: string, now: number): void {
    const flows = this.#waiting.get(peer);
    const first = flows?.values().next();
    if (!flows || !first || first.done) {
      this.#waiting.delete(peer);
      this.#timers.delete(peer);
      return;
    }
    const t = setTimeout(() => this.#due(peer), Math.max(0, first.value - now));
    t.unref();
    this.#timers.set(peer, t);
  }

  #due(peer: string): void {
    this.#timers.delete(peer);
    const flows = this.#waiting.get(peer);
    if (!flows) return;
    const now = performance.now();
    for (const [flow, deadline] of flows) {
      if (deadline > now) break;
      flows.delete(flow);
      // The owner resets it (which may end other flows, or call forget): the map is read afresh each turn.
      this.#expire(flow, peer);
    }
    if (this.#waiting.get(peer) === flows) this.#arm(peer, performance.now());
  }
}
