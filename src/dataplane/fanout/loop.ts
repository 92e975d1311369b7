/**
 * The fan-out thread's loop (issue 22, part 3). It owns the inputs' UDP
 * sockets and every pipe; the clients' sockets belong to the application
 * thread, which hands them over by descriptor and closes them when told a
 * client has ended.
 *
 * Data path, per chunk of whole datagrams: read(2) from the UDP socket
 * into one buffer, write(2) once into the input's source pipe, tee(2) into
 * each client's pipe (page references: the payload is not copied per
 * client), splice(2) from that pipe into the client's socket, and splice
 * the source pipe empty into /dev/null. A client whose pipe cannot take a
 * chunk whole skips it (counted); one that could take none for
 * `dropAfterMs` is dropped. No client can stall another: every descriptor
 * is non-blocking and a full socket only leaves data in its own pipe.
 *
 * Inputs open with their first client and close with their last.
 */
import { openSync, closeSync } from 'node:fs';
import { Poller, Waker } from '../../sys/poller.js';
import { WOULD_BLOCK, splice, writeSome } from '../../sys/splice.js';
import { POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLRDHUP } from '../../sys/constants.js';
import { SyscallError } from '../../errors.js';
import type { FanoutInput, FanoutLimits } from './config.js';
import { LiveInput, MAX_DATAGRAM, pagesOf, type InputStats } from './input.js';
import { FanClient, type ClientStats } from './client.js';

const RECEIVE_BUFFER = 4 << 20;

/** Why a client's stream ended; `removed`: its input was taken out of the configuration (Fanout.update). */
export type EndReason = 'closed' | 'dropped' | 'error' | 'input-failed' | 'removed' | 'stopped';

export type FanoutRequest =
  | {
      readonly op: 'add';
      readonly id: number;
      readonly fd: number;
      readonly peer: string;
      readonly via: 'http' | 'tcp';
      readonly input: FanoutInput;
      /** Written to the socket first (the HTTP 200 header), or when the input cannot open (a 503). */
      readonly greeting: string;
      readonly failure: string;
    }
  | { readonly op: 'stats'; readonly req: number }
  /** Ends these clients (ids already ended are ignored). */
  | { readonly op: 'end'; readonly ids: readonly number[]; readonly reason: EndReason; readonly error: string }
  | { readonly op: 'stop' };

export interface LoopTotals {
  readonly clients: number;
  readonly inputs: number;
  readonly bytesSent: number;
  readonly skippedChunks: number;
  readonly skippedBytes: number;
  readonly ended: Readonly<Record<EndReason, number>>;
  readonly datagrams: number;
}

export interface LoopStats {
  readonly totals: LoopTotals;
  readonly inputs: readonly InputStats[];
  readonly clients: readonly ClientStats[];
}

export type FanoutNotice =
  | { readonly op: 'done'; readonly id: number; readonly reason: EndReason; readonly error?: string; readonly client: ClientStats | undefined }
  | { readonly op: 'stats'; readonly req: number; readonly stats: LoopStats }
  | { readonly op: 'ready' }
  | { readonly op: 'stopped' };

interface Entry {
  readonly input: LiveInput;
  readonly clients: Set<FanClient>;
}

export class FanoutLoop {
  readonly #limits: FanoutLimits;
  readonly #interface: string | undefined;
  readonly #inputs = new Map<string, Entry>();
  readonly #clients = new Map<number, { c: FanClient; e: Entry }>();
  readonly #poller = new Poller();
  readonly #waker: Waker;
  readonly #receive: () => FanoutRequest | undefined;
  readonly #notify: (n: FanoutNotice) => void;
  readonly #devNull = openSync('/dev/null', 'w');
  readonly #ended: Record<EndReason, number> = { closed: 0, dropped: 0, error: 0, 'input-failed': 0, removed: 0, stopped: 0 };
  #endedBytes = 0;
  #endedSkippedChunks = 0;
  #endedSkippedBytes = 0;
  #closedDatagrams = 0;

  constructor(o: {
    wakeFd: number;
    limits: FanoutLimits;
    interface?: string | undefined;
    receive: () => FanoutRequest | undefined;
    notify: (n: FanoutNotice) => void;
  }) {
    this.#waker = new Waker(o.wakeFd);
    this.#limits = o.limits;
    this.#interface = o.interface;
    this.#receive = o.receive;
    this.#notify = o.notify;
  }

  run(): void {
    const fds: number[] = [];
    const events: number[] = [];
    const inputs: Entry[] = [];
    const clients: FanClient[] = [];
    this.#notify({ op: 'ready' });
    for (;;) {
      fds.length = events.length = inputs.length = clients.length = 0;
      fds.push(this.#waker.fd);
      events.push(POLLIN);
      for (const e of this.#inputs.values()) {
        inputs.push(e);
        fds.push(e.input.socket.fd);
        events.push(POLLIN);
      }
      for (const { c } of this.#clients.values()) {
        clients.push(c);
        fds.push(c.fd);
        events.push((c.queuedBytes > 0 ? POLLOUT : 0) | POLLRDHUP);
      }
      this.#poller.set(fds, events);
      this.#poller.wait(this.#timeoutNs());
      const now = performance.now();
      inputs.forEach((e, i) => {
        if (this.#poller.revents(1 + i) === 0) return;
        try {
          if (e.input.receive(now)) this.#dispatch(e, now);
        } catch (err) {
          if (!(err instanceof SyscallError)) throw err;
          this.#failInput(e, err.message);
        }
      });
      for (const e of [...this.#inputs.values()]) if (e.input.count > 0 && now - e.input.firstAt >= this.#limits.flushMs) this.#dispatch(e, now);
      clients.forEach((c, i) => {
        const r = this.#poller.revents(1 + inputs.length + i);
        if (r === 0 || !this.#clients.has(c.id)) return;
        if (r & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) this.#end(c, 'closed');
        else if (r & POLLOUT) this.#flush(c);
      });
      for (const { c } of [...this.#clients.values()]) if (c.behindSince > 0 && now - c.behindSince >= this.#limits.dropAfterMs) this.#end(c, 'dropped');
      if (this.#poller.revents(0) !== 0) {
        this.#waker.drain();
        if (!this.#requests()) break;
      }
    }
    for (const { c } of [...this.#clients.values()]) this.#end(c, 'stopped');
    closeSync(this.#devNull);
    this.#notify({ op: 'stopped' });
  }

  /** Until the first partial chunk is due or a lagging client's drop time, ns (-1: none). */
  #timeoutNs(): number {
    let first = Infinity;
    for (const e of this.#inputs.values()) if (e.input.count > 0) first = Math.min(first, e.input.firstAt + this.#limits.flushMs);
    for (const { c } of this.#clients.values()) if (c.behindSince > 0) first = Math.min(first, c.behindSince + this.#limits.dropAfterMs);
    return first === Infinity ? -1 : Math.max(0, Math.ceil((first - performance.now()) * 1e6));
  }

  #requests(): boolean {
    for (let r = this.#receive(); r; r = this.#receive()) {
      if (r.op === 'stop') return false;
      if (r.op === 'stats') this.#notify({ op: 'stats', req: r.req, stats: this.stats() });
      else if (r.op === 'end') {
        for (const id of r.ids) {
          const o = this.#clients.get(id);
          if (o) this.#end(o.c, r.reason, r.error);
        }
      } else this.#add(r);
    }
    return true;
  }

  #add(r: Extract<FanoutRequest, { op: 'add' }>): void {
    let e = this.#inputs.get(r.input.key);
    let c: FanClient | undefined;
    try {
      if (!e) {
        e = {
          input: new LiveInput(r.input, { chunkBytes: this.#limits.chunkBytes, interface: this.#interface, receiveBuffer: RECEIVE_BUFFER }),
          clients: new Set(),
        };
        this.#inputs.set(r.input.key, e);
      }
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      this.#refuse(r, 'input-failed', err.message);
      return;
    }
    try {
      c = new FanClient({
        id: r.id,
        fd: r.fd,
        peer: r.peer,
        via: r.via,
        input: r.input.key,
        pipeBytes: this.#limits.pipeBytes,
        minPipeBytes: 2 * (this.#limits.chunkBytes + MAX_DATAGRAM),
      });
      if (!c.greet(Buffer.from(r.greeting, 'latin1'))) throw new SyscallError('write', 'EAGAIN', 'the response header did not fit the socket');
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      c?.close();
      if (e.clients.size === 0) this.#closeInput(e);
      this.#refuse(r, 'error', err.message);
      return;
    }
    e.clients.add(c);
    this.#clients.set(c.id, { c, e });
  }

  #refuse(r: Extract<FanoutRequest, { op: 'add' }>, reason: EndReason, error: string): void {
    if (r.failure) {
      try {
        const text = Buffer.from(`${r.failure}${error}\n`, 'latin1');
        writeSome(r.fd, text, text.byteLength);
      } catch {
        /* the client is gone */
      }
    }
    this.#ended[reason]++;
    this.#notify({ op: 'done', id: r.id, reason, error, client: undefined });
  }

  #dispatch(e: Entry, now: number): void {
    const input = e.input;
    const len = input.fill;
    if (len === 0) return;
    if (e.clients.size === 0) {
      input.reset();
      return;
    }
    input.load();
    const pages = pagesOf(len);
    const torn: FanClient[] = [];
    for (const c of e.clients) {
      const r = c.offer(input.source.readFd, len, pages, input.count, now);
      if (r === 'torn') torn.push(c);
      else if (r === 'queued') this.#flush(c);
    }
    for (let left = len; left > 0;) {
      const n = splice(input.source.readFd, this.#devNull, left);
      if (n === WOULD_BLOCK || n === 0) throw new SyscallError('splice', 'EAGAIN', 'the source pipe did not drain into /dev/null');
      left -= n;
    }
    input.reset();
    for (const c of torn) this.#end(c, 'error', 'tee(2) took part of a chunk');
  }

  #flush(c: FanClient): void {
    try {
      c.flush();
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      this.#end(c, 'closed', err.message);
    }
  }

  #failInput(e: Entry, error: string): void {
    for (const c of [...e.clients]) this.#end(c, 'input-failed', error);
  }

  #end(c: FanClient, reason: EndReason, error?: string): void {
    const o = this.#clients.get(c.id);
    if (!o) return;
    this.#clients.delete(c.id);
    o.e.clients.delete(c);
    c.close();
    this.#ended[reason]++;
    this.#endedBytes += c.bytesSent;
    this.#endedSkippedChunks += c.skippedChunks;
    this.#endedSkippedBytes += c.skippedBytes;
    if (o.e.clients.size === 0) this.#closeInput(o.e);
    this.#notify({ op: 'done', id: c.id, reason, ...(error === undefined ? {} : { error }), client: c.stats() });
  }

  #closeInput(e: Entry): void {
    if (this.#inputs.get(e.input.spec.key) !== e) return;
    this.#inputs.delete(e.input.spec.key);
    this.#closedDatagrams += e.input.datagrams;
    e.input.close();
  }

  stats(): LoopStats {
    const clients = [...this.#clients.values()].map(({ c }) => c.stats());
    const inputs = [...this.#inputs.values()].map((e) => e.input.stats(e.clients.size));
    return {
      totals: {
        clients: clients.length,
        inputs: inputs.length,
        bytesSent: this.#endedBytes + clients.reduce((s, c) => s + c.bytesSent, 0),
        skippedChunks: this.#endedSkippedChunks + clients.reduce((s, c) => s + c.skippedChunks, 0),
        skippedBytes: this.#endedSkippedBytes + clients.reduce((s, c) => s + c.skippedBytes, 0),
        ended: { ...this.#ended },
        datagrams: this.#closedDatagrams + inputs.reduce((s, i) => s + i.datagrams, 0),
      },
      inputs,
      clients,
    };
  }
}
