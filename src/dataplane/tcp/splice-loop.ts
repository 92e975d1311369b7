/**
 * The splice path's loop (runs in the tcp-redirect worker thread): each
 * joined pair is two directions, each a pipe between two sockets. Bytes go
 * socket → pipe → socket with splice(2); user space never reads them.
 *
 * Behaviour a user-space proxy has, kept here:
 * - back-pressure: a direction reads from its source only when its pipe is
 *   empty, so at most one pipe (64 KiB) plus the socket buffers is held;
 *   a slow reader closes the TCP window toward the writer.
 * - half-close: end of file from one side (after its pipe drains) is a
 *   shutdown(SHUT_WR) toward the other; the other direction keeps going.
 * - reset: any error on either side ends the pair as 'reset'; the
 *   application thread then resets both sockets (RST, as Node's
 *   resetAndDestroy).
 * A pair ends 'closed' when both directions have shut down.
 *
 * Descriptors a pair wants nothing from are left out of the poll set
 * (fd -1), so a hung-up socket cannot spin the loop.
 */
import { Poller, Waker } from '../../sys/poller.js';
import { SplicePipe, WOULD_BLOCK, shutdownWrite, splice } from '../../sys/splice.js';
import { POLLIN, POLLOUT } from '../../sys/constants.js';
import { SyscallError } from '../../errors.js';

/** Bytes asked of one splice call. */
const CHUNK = 1 << 16;

export type SpliceRequest =
  | { readonly op: 'add'; readonly id: number; readonly client: number; readonly upstream: number; readonly idleTimeoutMs?: number | undefined }
  | { readonly op: 'stop' };

export type SpliceNotice =
  | {
      readonly op: 'done';
      readonly id: number;
      readonly reason: 'closed' | 'reset' | 'idle';
      /** The call and errno that ended a reset pair ("splice failed: ECONNRESET"). */
      readonly error?: string;
      readonly bytesToUpstream: number;
      readonly bytesToClient: number;
    }
  | { readonly op: 'stopped' };

interface Direction {
  readonly from: number;
  readonly to: number;
  readonly pipe: SplicePipe;
  pending: number;
  eof: boolean;
  shut: boolean;
  bytes: number;
}

interface Pair {
  readonly id: number;
  readonly client: number;
  readonly upstream: number;
  readonly up: Direction;
  readonly down: Direction;
  /** ms (0: never) and the last time a byte moved (performance.now()). */
  readonly idleMs: number;
  lastActive: number;
}

/** Shared totals: [bytes to upstream, bytes to clients], written only by the loop. */
export const TOTAL_UP = 0;
export const TOTAL_DOWN = 1;

export class SpliceLoop {
  readonly #pairs = new Map<number, Pair>();
  readonly #poller = new Poller();
  readonly #waker: Waker;
  readonly #totals: BigInt64Array;
  readonly #receive: () => SpliceRequest | undefined;
  readonly #notify: (n: SpliceNotice) => void;

  constructor(o: { wakeFd: number; totals: BigInt64Array; receive: () => SpliceRequest | undefined; notify: (n: SpliceNotice) => void }) {
    this.#waker = new Waker(o.wakeFd);
    this.#totals = o.totals;
    this.#receive = o.receive;
    this.#notify = o.notify;
  }

  /** Runs until a 'stop' request; then closes every pipe (the sockets belong to the application thread). */
  run(): void {
    const fds: number[] = [];
    const events: number[] = [];
    const order: Pair[] = [];
    for (;;) {
      fds.length = 0;
      events.length = 0;
      order.length = 0;
      fds.push(this.#waker.fd);
      events.push(POLLIN);
      for (const p of this.#pairs.values()) {
        order.push(p);
        const c = wants(p.up, p.down);
        const u = wants(p.down, p.up);
        fds.push(c === 0 ? -1 : p.client, u === 0 ? -1 : p.upstream);
        events.push(c, u);
      }
      this.#poller.set(fds, events);
      this.#poller.wait(this.#nextIdleNs());
      this.#endIdle();
      for (let i = 0; i < order.length; i++) {
        if (this.#poller.revents(1 + 2 * i) !== 0 || this.#poller.revents(2 + 2 * i) !== 0) this.#step(order[i]!);
      }
      if (this.#poller.revents(0) !== 0) {
        this.#waker.drain();
        if (!this.#requests()) break;
      }
    }
    for (const p of this.#pairs.values()) closePipes(p);
    this.#pairs.clear();
    this.#notify({ op: 'stopped' });
  }

  /** Takes every queued request; false once asked to stop. */
  #requests(): boolean {
    for (let r = this.#receive(); r; r = this.#receive()) {
      if (r.op === 'stop') return false;
      let up: Direction | undefined;
      try {
        up = direction(r.client, r.upstream);
        const pair: Pair = {
          id: r.id,
          client: r.client,
          upstream: r.upstream,
          up,
          down: direction(r.upstream, r.client),
          idleMs: r.idleTimeoutMs ?? 0,
          lastActive: performance.now(),
        };
        this.#pairs.set(r.id, pair);
        this.#step(pair);
      } catch (err) {
        // No pipe for this pair (EMFILE, ENFILE): the pair is reset, the others go on.
        if (!(err instanceof SyscallError)) throw err;
        up?.pipe.close();
        this.#notify({ op: 'done', id: r.id, reason: 'reset', error: err.message, bytesToUpstream: 0, bytesToClient: 0 });
      }
    }
    return true;
  }

  /** ppoll timeout until the first idle deadline, ns (-1: none). */
  #nextIdleNs(): number {
    let first = Infinity;
    for (const p of this.#pairs.values()) if (p.idleMs > 0) first = Math.min(first, p.lastActive + p.idleMs);
    return first === Infinity ? -1 : Math.max(0, Math.ceil((first - performance.now()) * 1e6));
  }

  #endIdle(): void {
    const now = performance.now();
    for (const p of [...this.#pairs.values()]) if (p.idleMs > 0 && now - p.lastActive >= p.idleMs) this.#end(p, 'idle');
  }

  #step(p: Pair): void {
    try {
      const before = p.up.bytes + p.down.bytes;
      this.#move(p.up, TOTAL_UP);
      this.#move(p.down, TOTAL_DOWN);
      if (p.up.bytes + p.down.bytes !== before) p.lastActive = performance.now();
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      this.#end(p, 'reset', err.message);
      return;
    }
    if (p.up.shut && p.down.shut) this.#end(p, 'closed');
  }

  #move(d: Direction, total: number): void {
    for (;;) {
      let moved = false;
      if (!d.eof && d.pending === 0) {
        const n = splice(d.from, d.pipe.writeFd, CHUNK);
        if (n === 0) d.eof = true;
        else if (n !== WOULD_BLOCK) {
          d.pending += n;
          moved = true;
        }
      }
      if (d.pending > 0) {
        const n = splice(d.pipe.readFd, d.to, d.pending);
        if (n > 0) {
          d.pending -= n;
          d.bytes += n;
          Atomics.add(this.#totals, total, BigInt(n));
          moved = true;
        }
      }
      if (!moved) break;
    }
    if (d.eof && d.pending === 0 && !d.shut) {
      shutdownWrite(d.to);
      d.shut = true;
    }
  }

  #end(p: Pair, reason: 'closed' | 'reset' | 'idle', error?: string): void {
    this.#pairs.delete(p.id);
    closePipes(p);
    this.#notify({
      op: 'done',
      id: p.id,
      reason,
      ...(error === undefined ? {} : { error }),
      bytesToUpstream: p.up.bytes,
      bytesToClient: p.down.bytes,
    });
  }
}

function direction(from: number, to: number): Direction {
  return { from, to, pipe: new SplicePipe(), pending: 0, eof: false, shut: false, bytes: 0 };
}

/** Poll events a socket needs: readable as the source of `out`, writable as the destination of `into`. */
function wants(out: Direction, into: Direction): number {
  return (!out.eof && out.pending === 0 ? POLLIN : 0) | (into.pending > 0 ? POLLOUT : 0);
}

function closePipes(p: Pair): void {
  p.up.pipe.close();
  p.down.pipe.close();
}
