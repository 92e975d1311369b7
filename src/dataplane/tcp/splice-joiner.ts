/**
 * The splice path's application side: the sockets stay node:net sockets
 * (accepted and connected by Node, never read by it: they are paused), and
 * their descriptors go to the splice thread (splice-loop.ts), which moves
 * the bytes inside the kernel. When the thread says a pair has ended, the
 * sockets are closed here (both directions shut: a clean close) or reset.
 * A socket is closed only after the thread has let go of its descriptor.
 */
import type { Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { Waker } from '../../sys/poller.js';
import { spliceUnavailable } from '../../sys/splice.js';
import { spawnWorker, workerEntry } from '../../worker/spawn.js';
import { EngineFailedError } from '../../errors.js';
import { TOTAL_DOWN, TOTAL_UP, type SpliceNotice, type SpliceRequest } from './splice-loop.js';
import type { Joiner, PairEnd } from './joiner.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';

interface Open {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly done: (end: PairEnd) => void;
}

/** The socket's descriptor (Node's TCP handle has it on POSIX), or undefined. */
export function socketFd(s: Socket): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export { spliceUnavailable };

export class SpliceJoiner implements Joiner {
  readonly mode = 'splice';
  idleTimeoutMs: number | undefined;
  readonly #worker: Worker;
  readonly #waker: Waker;
  readonly #totals = new BigInt64Array(new SharedArrayBuffer(16));
  readonly #open = new Map<number, Open>();
  #next = 1;
  #failure: Error | undefined;
  #stopped: Promise<void>;

  constructor(onFailure: (err: Error) => void) {
    this.#waker = new Waker();
    this.#worker = spawnWorker({
      entry: workerEntry(import.meta.url, './worker'),
      name: 'sluice-tcp-splice',
      workerData: { wakeFd: this.#waker.fd, totals: this.#totals.buffer },
    });
    this.#stopped = new Promise((resolve) => {
      this.#worker.on('message', (n: SpliceNotice) => {
        if (n.op === 'stopped') resolve();
        else this.#ended(n);
      });
      this.#worker.on('exit', () => resolve());
    });
    this.#worker.on('error', (err) => {
      this.#failure = new EngineFailedError('the tcp-redirect splice thread', err.message, { cause: err });
      for (const o of this.#open.values()) this.#finish(o, { reason: 'reset', error: 'splice thread stopped', bytesToUpstream: 0, bytesToClient: 0 });
      this.#open.clear();
      onFailure(this.#failure);
    });
    // Pairs keep the process alive through their sockets, not through this thread.
    this.#worker.unref();
  }

  join(client: Socket, upstream: Socket, done: (end: PairEnd) => void): void {
    const c = socketFd(client);
    const u = socketFd(upstream);
    if (this.#failure || c === undefined || u === undefined) {
      resetTcpSocket(client);
      resetTcpSocket(upstream);
      done({ reason: 'reset', error: this.#failure ? 'splice thread stopped' : 'socket has no descriptor', bytesToUpstream: 0, bytesToClient: 0 });
      return;
    }
    const id = this.#next++;
    this.#open.set(id, { client, upstream, done });
    this.#post({ op: 'add', id, client: c, upstream: u, idleTimeoutMs: this.idleTimeoutMs });
  }

  bytes(): { toUpstream: number; toClient: number } {
    return { toUpstream: Number(Atomics.load(this.#totals, TOTAL_UP)), toClient: Number(Atomics.load(this.#totals, TOTAL_DOWN)) };
  }

  async close(): Promise<void> {
    // The thread is unref'd; waiting for it to stop must keep the process alive.
    this.#worker.ref();
    if (!this.#failure) this.#post({ op: 'stop' });
    await this.#stopped;
    for (const o of this.#open.values()) this.#finish(o, { reason: 'reset', error: 'relay closed', bytesToUpstream: 0, bytesToClient: 0 });
    this.#open.clear();
    await this.#worker.terminate();
    this.#waker.close();
  }

  #post(r: SpliceRequest): void {
    this.#worker.postMessage(r);
    this.#waker.signal();
  }

  #ended(n: Extract<SpliceNotice, { op: 'done' }>): void {
    const o = this.#open.get(n.id);
    if (!o) return;
    this.#open.delete(n.id);
    this.#finish(o, {
      reason: n.reason,
      ...(n.error === undefined ? {} : { error: n.error }),
      bytesToUpstream: n.bytesToUpstream,
      bytesToClient: n.bytesToClient,
    });
  }

  #finish(o: Open, end: PairEnd): void {
    if (end.reason === 'reset') {
      resetTcpSocket(o.client);
      resetTcpSocket(o.upstream);
    } else {
      o.client.destroy();
      o.upstream.destroy();
    }
    o.done(end);
  }
}
