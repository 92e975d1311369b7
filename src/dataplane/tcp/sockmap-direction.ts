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
import { WOULD_BLOCK, peekSome, takeSome, writeSome } from '../../sys/splice.js';
import { holdReading, releaseReading } from '../common/socket-reading.js';
import type { SockmapProgram } from './sockmap-program.js';

/** Bytes a direction may hold in the kernel beyond the peer's send buffer before it is throttled. */
export const BACKLOG_LIMIT = 4 << 20;
/** How often a direction waiting for the peer's backlog to drain looks again (ms). */
const DRAIN_POLL_MS = 1;
/** Passed bytes Node holds for a direction before it stops reading that socket. */
const QUEUE_HIGH = 1 << 20;
/**
 * What one re-arming (#rearm) can copy: a throttled direction's receive
 * queue, which its closed window bounds (net.ipv4.tcp_rmem's maximum: 6
 * MiB by default, often raised). More waiting than the bound is left to
 * Node's reads.
 */
const REARM_FIRST_BYTES = 4 << 20;
const REARM_MAX_BYTES = 64 << 20;
/** One per process, grown as needed: a re-arming runs synchronously, so directions share it. */
let rearmBuffer: Buffer | undefined;

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
  /** Throttled: Node's reads are stopped until #rearm has run. */
  #rearming = false;
  /** Bytes at the head of the receive queue #rearm has written to the peer but not yet taken. */
  #headWritten = 0;

  constructor(
    readonly prog: SockmapProgram,
    readonly src: Socket,
    readonly dst: Socket,
    readonly srcCookie: bigint,
    readonly dstCookie: bigint,
    readonly srcFd: number,
    readonly dstFd: number,
  ) {
    this.#ctl();
    src.on('data', (chunk: Buffer) => {
      if (this.#headWritten > 0) return this.#corrupt('Node read bytes already written from the receive queue');
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
    if (this.#queued === 0 && !(this.#ended && !this.#shut) && !this.#rearming) return;
    if (!this.#drained()) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, DRAIN_POLL_MS);
      return;
    }
    if (this.#queued === 0 && this.#rearming && !this.#ended) {
      // Never inside a 'data' event: Node's stream reads again (restarts the handle) once its handlers return.
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (!this.#stopped && !this.#writing && this.#queued === 0 && this.#rearming && !this.#ended) this.#rearm();
        else this.#pump();
      }, 0);
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
    // Throttled since the last arming: ask again (taken once forwarded equals passed), and stop reading until #rearm.
    const d = this.prog.dir(this.srcCookie);
    if (d && d.armedGen === this.armGen && d.throttledGen === this.armGen) {
      this.armGen++;
      this.#rearming = true;
      holdReading(this.src);
    }
    this.#ctl();
    // While re-arming the handle is held: resuming only lets out what Node holds already.
    if (this.src.isPaused() && !this.src.destroyed) this.src.resume();
    this.#pump();
  }

  /** See the class comment. Runs with Node holding no byte of this direction and the peer's backlog drained. */
  #rearm(): void {
    if (this.src.readableLength > 0) {
      // Node read more before its reads stopped: those go first, through 'data' (resuming lets Node read on too).
      if (this.#headWritten > 0) return this.#corrupt('Node read bytes already written from the receive queue');
      if (this.src.isPaused()) this.src.resume();
      return;
    }
    // From the first peek until the commit, nothing but #take may read the queue: its head may be written already.
    holdReading(this.src);
    if (this.dst.writableLength > 0) return this.#retry();
    const buf = (rearmBuffer ??= Buffer.allocUnsafe(REARM_FIRST_BYTES));
    try {
      const peeked = peekSome(this.srcFd, buf);
      const q = peeked === WOULD_BLOCK ? 0 : peeked;
      if (q === buf.length) {
        // More waits than the buffer holds: a larger one, up to the bound; past it Node's reads carry on.
        if (buf.length < REARM_MAX_BYTES) {
          rearmBuffer = Buffer.allocUnsafe(buf.length * 2);
          return this.#retry();
        }
        this.#commit(buf, this.#headWritten);
        this.#release();
        return;
      }
      if (q > this.#headWritten) {
        const sent = writeSome(this.dstFd, buf.subarray(this.#headWritten), q - this.#headWritten);
        if (sent !== WOULD_BLOCK) this.#headWritten += sent;
      }
      // The peer's send buffer took part of it: the rest once that has left (the window closes meanwhile).
      if (this.#headWritten < q) return this.#retry();
      // Commit only what covers every byte the verdict passed; while the window is still open more arrive: look again.
      const d = this.prog.dir(this.srcCookie);
      if (d && d.passed !== this.forwarded + BigInt(q)) return this.#retry();
      this.#commit(buf, q);
    } catch (err) {
      return this.#corrupt((err as Error).message);
    }
    this.#release();
  }

  #release(): void {
    this.#rearming = false;
    releaseReading(this.src);
    if (this.src.isPaused() && !this.src.destroyed) this.src.resume();
  }

  /** A byte written from the queue that Node would read again would be sent twice: the pair ends instead (reset). */
  #corrupt(why: string): void {
    const err = new Error(`sockmap re-arm: ${why}`);
    this.src.destroy(err);
    this.dst.destroy(err);
  }

  /** `n` bytes at the head of the receive queue are written to the peer: count them (the verdict arms once that equals what it passed), then take them. */
  #commit(buf: Buffer, n: number): void {
    this.#headWritten = 0;
    this.forwarded += BigInt(n);
    this.#ctl();
    this.#take(buf, n);
  }

  #retry(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, DRAIN_POLL_MS);
  }

  /** Takes `n` peeked bytes out of the receive queue (they are already written to the peer). */
  #take(buf: Buffer, n: number): void {
    for (let left = n; left > 0;) {
      const r = takeSome(this.srcFd, buf, left);
      if (r === WOULD_BLOCK || r === 0) throw new Error(`${left} of ${n} peeked bytes could not be taken`);
      left -= r;
    }
  }
}
