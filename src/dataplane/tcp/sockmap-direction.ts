/**
 * One direction of a pair on the sockmap path (sockmap-joiner.ts): the
 * receiving socket `src`, its peer `dst`. What the verdict passes arrives
 * here as Node 'data' and is written to `dst` once every byte the kernel
 * already redirected in this direction is in `dst`'s send queue; the count
 * written then goes to the verdict (tcp_ctl.forwarded), which arms the
 * direction once it equals what it passed. An end of file is passed on the
 * same way: `dst` is shut for writing once the redirected bytes before it
 * are delivered.
 */
import type { Socket } from 'node:net';
import { tcpWrittenBytes } from '../../sys/tcp-info.js';
import type { SockmapProgram } from './sockmap-program.js';

/** Bytes a direction may hold in the kernel beyond the peer's send buffer before it is throttled. */
export const BACKLOG_LIMIT = 4 << 20;
/** How often a direction waiting for the peer's backlog to drain looks again (ms). */
const DRAIN_POLL_MS = 1;
/** Passed bytes Node holds for a direction before it stops reading that socket. */
const QUEUE_HIGH = 1 << 20;

export class Direction {
  forwarded = 0n;
  armGen = 1;
  readonly #queue: Buffer[] = [];
  #queued = 0;
  #writing = false;
  #ended = false;
  #shut = false;
  #timer: NodeJS.Timeout | undefined;
  /** Bytes of the write in progress, and its number (a write is confirmed once: at once, or by its callback). */
  #writeLen = 0;
  #writeId = 0;
  #stopped = false;

  constructor(
    readonly prog: SockmapProgram,
    readonly src: Socket,
    readonly dst: Socket,
    readonly srcCookie: bigint,
    readonly dstCookie: bigint,
    readonly dstFd: number,
  ) {
    this.#ctl();
    src.on('data', (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued >= QUEUE_HIGH) src.pause();
      this.#pump();
    });
    src.on('end', () => {
      this.#ended = true;
      this.#pump();
    });
  }

  /** Bytes this direction has delivered to the peer's send queue or has on the way there. */
  moved(): bigint {
    const d = this.prog.dir(this.srcCookie);
    return this.forwarded + (d?.redirected ?? 0n);
  }

  /** No more reads of the maps from this direction's own activity (the pair is done, or the programs go). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Bytes redirected in the kernel and bytes Node forwarded, and the throttles, so far. */
  split(): { kernel: bigint; user: bigint; throttles: number } {
    const d = this.prog.dir(this.srcCookie);
    return { kernel: d?.redirected ?? 0n, user: this.forwarded, throttles: d?.throttles ?? 0 };
  }

  #ctl(): void {
    this.prog.setCtl(this.srcCookie, { peer: this.dstCookie, forwarded: this.forwarded, armGen: this.armGen, limit: BACKLOG_LIMIT });
  }

  /** True when every byte the verdict redirected in this direction is in the peer's send queue. */
  #drained(): boolean {
    try {
      const d = this.prog.dir(this.srcCookie);
      if (!d) return true; // forgotten: the pair is ending
      return tcpWrittenBytes(this.dstFd) >= this.forwarded + d.redirected;
    } catch {
      // The peer's socket can no longer be asked (closing): the write that follows fails and ends the pair.
      return true;
    }
  }

  #pump(): void {
    if (this.#stopped || this.#writing || this.#timer || this.dst.destroyed) return;
    if (this.#queued === 0 && !(this.#ended && !this.#shut)) return;
    if (!this.#drained()) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, DRAIN_POLL_MS);
      return;
    }
    if (this.#queued === 0) {
      // End of file, everything before it delivered: half-close the peer.
      this.#shut = true;
      this.dst.end();
      return;
    }
    const chunk = this.#queue.length === 1 ? this.#queue[0]! : Buffer.concat(this.#queue);
    this.#queue.length = 0;
    this.#queued = 0;
    this.#writing = true;
    this.#writeLen = chunk.length;
    const id = ++this.#writeId;
    this.dst.write(chunk, (err) => this.#written(id, err));
    // Taken by the kernel at once (nothing left in Node's buffer): say so now, not a tick later,
    // so that a direction waiting to be armed is armed before the sender's next bytes arrive.
    if (this.dst.writableLength === 0) this.#written(id);
  }

  #written(id: number, err?: Error | null): void {
    if (id !== this.#writeId || !this.#writing) return;
    this.#writing = false;
    if (err || this.#stopped) return;
    this.forwarded += BigInt(this.#writeLen);
    // Throttled since the last arming: ask again (taken once forwarded equals passed).
    const d = this.prog.dir(this.srcCookie);
    if (d && d.armedGen === this.armGen && d.throttledGen === this.armGen) this.armGen++;
    this.#ctl();
    if (this.src.isPaused() && !this.src.destroyed) this.src.resume();
    this.#pump();
  }
}
