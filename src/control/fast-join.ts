/**
 * One fast channel change: a subscriber added to a running flow is first
 * sent the flow's cache (the PAT/PMT, then the datagrams from the last
 * random access point, rap-cache.ts) as a burst paced at `burstRate` times
 * the stream's own spacing, then the live datagrams the monitor tap hands
 * on, and once it has caught up it is handed to the data plane at a
 * datagram boundary (DataPlane.joinFlow): the feeder forwards datagrams
 * 1..N of the tap's numbering, the plane sends N+1 on. No gap, no
 * duplicate, and no reordering when the plane applies the join exactly at
 * N (the feeder asks again, after the next datagram, while the plane has
 * moved on, once the tap delivered as many as the plane had counted;
 * after `maxAttempts` it forces the join and forwards the few datagrams up
 * to the plane's count itself).
 */
import type { RapSnapshot } from '../media/rap-cache.js';

export interface FastJoinDeps {
  /** What the cache held when the subscriber was added (undefined: nothing to burst). */
  readonly snapshot: RapSnapshot | undefined;
  /** The tap's index of the last datagram it delivered before the join started. */
  readonly lastIndex: number;
  /** Multiple of the stream's own spacing the burst is sent at (> 0). */
  readonly burstRate: number;
  /** Sends one datagram to the new subscriber. */
  readonly send: (datagram: Uint8Array) => void;
  /** DataPlane.joinFlow with the subscriber added: apply at `after`, or whatever the count when `force`. */
  readonly join: (after: number, force: boolean) => Promise<{ applied: boolean; count: number; overlap: number }>;
  /** ms clock (performance.now in production). */
  readonly now?: () => number;
  /** Join attempts before forcing (default 50). */
  readonly maxAttempts?: number;
  /** The burst and the live catch-up take at most this long before the rest is sent at once (default 10 s). */
  readonly maxFeedMs?: number;
}

export interface FastJoinOutcome {
  /** The tap index from which the data plane sends to the subscriber itself (count + 1). */
  readonly boundary: number;
  /** Datagrams the feeder sent (the PAT/PMT datagram included). */
  readonly fed: number;
  /** Cached datagrams in the burst (0: no cache, the join was live). */
  readonly burst: number;
  /** Whether the join had to be forced (the feeder forwarded datagrams up to the plane's count after it asked). */
  readonly forced: boolean;
  readonly overlap: number;
  /** From the start to the handover, ms. */
  readonly durationMs: number;
}

/** How long a forced join waits for the tap to deliver the datagrams up to the plane's count. */
const BOUNDARY_WAIT_MS = 1000;

interface Queued {
  readonly bytes: Uint8Array;
  readonly index: number;
  /** The stream's time of the datagram (when the tap got it), ms. */
  readonly atMs: number;
}

export class FastJoin {
  readonly #deps: FastJoinDeps;
  readonly #now: () => number;
  readonly #queue: Queued[] = [];
  #head = 0;
  /** Tap index of the last datagram forwarded or skipped as already sent. */
  #forwarded: number;
  /** Highest tap index seen. */
  #seen: number;
  #startMs = 0;
  #streamStartMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #joining = false;
  #attempts = 0;
  /** The plane's count when it last refused: asking again before the tap delivered that many would be refused too. */
  #planeCount = 0;
  /** Once the plane's count is known: forward up to it, then stop. */
  #boundary: number | undefined;
  #fed = 0;
  #done = false;
  #overlap = 0;
  #forced = false;
  readonly #result: Promise<FastJoinOutcome>;
  #resolve!: (o: FastJoinOutcome) => void;
  #reject!: (e: unknown) => void;

  constructor(deps: FastJoinDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => performance.now());
    this.#forwarded = deps.snapshot ? deps.snapshot.datagrams[0]!.index - 1 : deps.lastIndex;
    this.#seen = deps.lastIndex;
    this.#result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Resolves once the plane serves the subscriber; rejects if the join failed (the subscriber is then not added). */
  get result(): Promise<FastJoinOutcome> {
    return this.#result;
  }

  /** Sends the PAT/PMT, starts the paced burst (or, without a cache, joins at once). */
  start(): void {
    this.#startMs = this.#now();
    const snap = this.#deps.snapshot;
    if (snap) {
      this.#streamStartMs = snap.datagrams[0]!.atMs;
      for (const d of snap.datagrams) this.#queue.push({ bytes: d.bytes, index: d.index, atMs: d.atMs });
      if (snap.prefix) this.#send(snap.prefix);
    }
    this.#pump();
  }

  /** A datagram from the tap (index counts from 1, in order). */
  onDatagram(bytes: Uint8Array, index: number, nowMs: number): void {
    if (this.#done || index <= this.#seen) return;
    this.#seen = index;
    this.#queue.push({ bytes: bytes.slice(), index, atMs: nowMs });
    if (this.#boundary !== undefined || !this.#joining) this.#pump();
  }

  /** Stops feeding (subscriber removed or flow closed meanwhile). */
  cancel(reason: unknown): void {
    if (this.#done) return;
    this.#finish();
    this.#reject(reason);
  }

  /** Sends what is due; once caught up, asks the plane to take over. */
  #pump(): void {
    if (this.#done) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = this.#now();
    const rush = now - this.#startMs >= (this.#deps.maxFeedMs ?? 10_000);
    const q = this.#queue;
    while (this.#head < q.length) {
      const next = q[this.#head]!;
      if (this.#boundary !== undefined && next.index > this.#boundary) break;
      const due = this.#startMs + (next.atMs - this.#streamStartMs) / this.#deps.burstRate;
      if (!rush && this.#boundary === undefined && due > now) {
        this.#timer = setTimeout(() => this.#pump(), Math.max(1, due - now));
        return;
      }
      this.#head++;
      if (next.index > this.#forwarded) {
        this.#send(next.bytes);
        this.#forwarded = next.index;
      }
    }
    if (this.#head > 1024) {
      q.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.#boundary !== undefined) {
      if (this.#forwarded >= this.#boundary) this.#complete();
      // Datagrams the tap never delivers (it lost them) are not waited for long.
      else this.#timer = setTimeout(() => this.#complete(), BOUNDARY_WAIT_MS);
      return;
    }
    if (!this.#joining && this.#forwarded === this.#seen && this.#forwarded >= this.#planeCount) void this.#askJoin();
  }

  async #askJoin(): Promise<void> {
    this.#joining = true;
    const force = ++this.#attempts >= (this.#deps.maxAttempts ?? 50);
    let r: { applied: boolean; count: number; overlap: number };
    try {
      r = await this.#deps.join(this.#forwarded, force);
    } catch (e) {
      this.cancel(e);
      return;
    }
    this.#joining = false;
    if (this.#done) return;
    if (r.applied) {
      this.#forced = r.count !== this.#forwarded;
      this.#overlap = r.overlap;
      this.#boundary = r.count;
    } else this.#planeCount = r.count;
    // Not applied: the plane moved on; what the tap delivered meanwhile is sent, then it asks again.
    this.#pump();
  }

  #send(bytes: Uint8Array): void {
    this.#fed++;
    try {
      this.#deps.send(bytes);
    } catch {
      // A refused copy is the subscriber's loss, as on the data plane; the join goes on.
    }
  }

  #complete(): void {
    this.#finish();
    this.#resolve({
      boundary: this.#boundary! + 1,
      fed: this.#fed,
      burst: this.#deps.snapshot?.datagrams.length ?? 0,
      forced: this.#forced,
      overlap: this.#overlap,
      durationMs: this.#now() - this.#startMs,
    });
  }

  #finish(): void {
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
  }
}
