/**
 * The application side of a worker thread (after mediasoup's Channel):
 * start it and wait until it says it is ready, send it requests and get
 * each one's reply, hear its notifications, learn once if it stopped on its
 * own, and close it. The worker side is port.ts; the envelopes are in
 * protocol.ts.
 *
 * Order: a notification is emitted synchronously when its message arrives,
 * in arrival order, and a reply settles its request in the same turn. Code
 * after `await request()` therefore runs after every notification the
 * worker posted before that reply. (mediasoup defers notifications to get
 * the opposite; the batched tier has always relied on this order.)
 */
import { EventEmitter } from 'node:events';
import type { TransferListItem, Worker } from 'node:worker_threads';
import { ClosedError, EngineFailedError, type SluiceError } from '../errors.js';
import { spawnWorker, type SpawnOptions } from './spawn.js';
import { fromErrorInfo, type NotificationMap, type RequestMap, type WorkerMessage } from './protocol.js';

export interface ChannelOptions<D = unknown> {
  readonly spawn: SpawnOptions<D>;
  /** Names the engine in EngineFailedError and ClosedError ("the batched tier's engine (worker thread 'sluice-batched')"). */
  readonly engine: string;
  /** Put before the message of a worker error that is no SluiceError (see fromErrorInfo). */
  readonly errorContext?: string;
  /** Called after every message posted to the worker, e.g. to signal the eventfd a worker blocked in ppoll watches. */
  readonly wake?: () => void;
  /**
   * 'always' (the default), or keep the process alive only while a request
   * is pending or this returns true: it is asked again after every request,
   * reply and updateKeepAlive() call. During close() the worker always
   * keeps it alive.
   */
  readonly keepAlive?: 'always' | (() => boolean);
}

export type ChannelEvents<N extends NotificationMap<N>> = { [K in keyof N & string]: [data: N[K]] } & {
  /** The worker stopped on its own (not by close()), once: every pending request was rejected with this error. */
  failed: [error: EngineFailedError];
  /** A failure the worker reported that no request waits for and that did not stop it (a flow's fault). */
  fault: [error: SluiceError, scope: string | undefined];
};

export interface CloseOptions<Op extends string> {
  /** Ask the worker to stop with this request (it answers, then its thread ends by itself). */
  readonly request?: Op;
  /** Or: set element 0 of this shared flag to 1 (then wake the worker) so that its loop ends. */
  readonly stopFlag?: Int32Array;
  /** Terminate the thread if it has not exited this long after being asked (default 2000; 0: at once). */
  readonly terminateAfterMs?: number;
}

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
  /** The close request: once answered, the worker's exit is expected. */
  readonly stop: boolean;
}

const DEFAULT_TERMINATE_AFTER_MS = 2000;

export class WorkerChannel<R extends RequestMap<R>, N extends NotificationMap<N> = Record<never, never>, Ready = undefined> extends EventEmitter<
  ChannelEvents<N>
> {
  readonly #worker: Worker;
  readonly #engine: string;
  readonly #errorContext: string | undefined;
  readonly #wake: (() => void) | undefined;
  readonly #keepAlive: 'always' | (() => boolean);
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #ready = false;
  #readyInfo: Ready | undefined;
  /** Settles start(): set until 'ready' or a failure before it. */
  #starting: { resolve(): void; reject(e: Error): void } | undefined;
  #failure: EngineFailedError | undefined;
  #closing: Promise<boolean> | undefined;
  /** The worker was asked to stop (or answered the stop request): its exit is no failure. */
  #stopping = false;
  /** The worker answered the close request. */
  #stopAnswered = false;
  #exitCode: number | undefined;
  /** Resolves with the thread's exit code once it has exited, whatever the reason. */
  readonly exited: Promise<number>;

  private constructor(worker: Worker, o: ChannelOptions<unknown>) {
    super();
    this.#worker = worker;
    this.#engine = o.engine;
    this.#errorContext = o.errorContext;
    this.#wake = o.wake;
    this.#keepAlive = o.keepAlive ?? 'always';
    worker.on('message', (m: WorkerMessage) => this.#onMessage(m));
    // An uncaught exception in the worker: 'error', then 'exit'.
    worker.on('error', (e: unknown) => this.#onError(e));
    this.exited = new Promise((resolve) => {
      worker.once('exit', (code: number) => {
        this.#onExit(code);
        resolve(code);
      });
    });
  }

  /**
   * Starts the worker and waits for its 'ready'. A fault, an uncaught error
   * or an exit before it rejects (with the worker's error, rebuilt; or an
   * EngineFailedError for the exit), and leaves no thread behind.
   */
  static async start<R extends RequestMap<R>, N extends NotificationMap<N> = Record<never, never>, Ready = undefined, D = unknown>(
    o: ChannelOptions<D>,
  ): Promise<WorkerChannel<R, N, Ready>> {
    const channel = new WorkerChannel<R, N, Ready>(spawnWorker(o.spawn), o);
    try {
      await new Promise<void>((resolve, reject) => (channel.#starting = { resolve, reject }));
    } catch (e) {
      channel.#stopping = true;
      await channel.#worker.terminate();
      await channel.exited;
      throw e;
    }
    channel.#updateRef();
    return channel;
  }

  /** What the worker sent with 'ready'. */
  get readyInfo(): Ready | undefined {
    return this.#readyInfo;
  }

  /** Requests sent and not answered yet. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Set once the worker stopped on its own. */
  get failure(): EngineFailedError | undefined {
    return this.#failure;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The thread's exit code, once it has exited. */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** Posts `{ id, op, ...body }`; resolves with the reply's result, rejects with its error rebuilt. */
  request<Op extends keyof R & string>(op: Op, body: R[Op]['request'], transfer?: readonly TransferListItem[]): Promise<R[Op]['result']> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing) return Promise.reject(new ClosedError(this.#engine));
    return this.#send(op, body, transfer, false) as Promise<R[Op]['result']>;
  }

  /** Posts `{ op, ...body }`, which gets no reply. Ignored once the channel failed or is closing. */
  post(op: string, body: object, transfer?: readonly TransferListItem[]): void {
    if (this.#failure || this.#closing) return;
    this.#worker.postMessage({ ...body, op }, transfer);
    this.#wake?.();
  }

  /** Asks keepAlive again (the owner's own state, e.g. its flows, changed). */
  updateKeepAlive(): void {
    this.#updateRef();
  }

  /**
   * Stops the worker and waits until its thread has exited; idempotent.
   * How: the `request` (awaited), or the `stopFlag` plus wake, or neither;
   * then the thread is terminated if it has not exited after
   * `terminateAfterMs`. Requests still pending when it is gone reject with
   * ClosedError. Resolves true when the worker answered the close request
   * (it released what it held itself).
   */
  close(how: CloseOptions<keyof R & string> = {}): Promise<boolean> {
    this.#closing ??= this.#close(how);
    return this.#closing;
  }

  async #close(how: CloseOptions<keyof R & string>): Promise<boolean> {
    // Stay referenced until the thread has exited, or the wait below could be abandoned.
    this.#worker.ref();
    if (how.request !== undefined && !this.#failure && this.#exitCode === undefined) {
      try {
        await this.#send(how.request, {}, undefined, true);
      } catch {
        // It failed meanwhile ('failed' told the owner), or refused: it is terminated below.
      }
    }
    this.#stopping = true;
    if (how.stopFlag) Atomics.store(how.stopFlag, 0, 1);
    if (how.stopFlag || how.request === undefined) this.#wake?.();
    const after = how.terminateAfterMs ?? DEFAULT_TERMINATE_AFTER_MS;
    const timer = setTimeout(() => void this.#worker.terminate(), after);
    await this.exited;
    clearTimeout(timer);
    return this.#stopAnswered;
  }

  #send(op: string, body: object, transfer: readonly TransferListItem[] | undefined, stop: boolean): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, stop });
      try {
        this.#worker.postMessage({ ...body, id, op }, transfer);
      } catch (e) {
        // Not cloneable: nothing was sent.
        this.#pending.delete(id);
        reject(e as Error);
        return;
      }
      this.#updateRef();
      this.#wake?.();
    });
  }

  #onMessage(m: WorkerMessage): void {
    switch (m.kind) {
      case 'ready':
        if (this.#ready) return;
        this.#ready = true;
        this.#readyInfo = m.info as Ready;
        this.#starting?.resolve();
        this.#starting = undefined;
        return;
      case 'reply': {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (p.stop) {
          this.#stopping = true;
          this.#stopAnswered = !m.error;
        }
        this.#updateRef();
        if (m.error) p.reject(fromErrorInfo(m.error, this.#errorContext));
        else p.resolve(m.result);
        return;
      }
      case 'notify':
        // Notification names are the protocol's own (N); the map is typed, the wire is not.
        (this.emit as (event: string, data: unknown) => boolean)(m.event, m.data);
        return;
      case 'fault': {
        const error = fromErrorInfo(m.error, this.#errorContext);
        if (!this.#ready) this.#startFailed(error);
        else if (m.fatal) this.#fail(error.message, error);
        else (this.emit as (event: 'fault', error: SluiceError, scope: string | undefined) => boolean)('fault', error, m.scope);
        return;
      }
    }
  }

  #onError(e: unknown): void {
    if (!this.#ready) this.#startFailed(e instanceof Error ? e : new Error(String(e)));
    else this.#fail(e instanceof Error ? `uncaught ${e.name}: ${e.message}` : `uncaught ${String(e)}`, e);
  }

  #onExit(code: number): void {
    this.#exitCode = code;
    if (!this.#ready) this.#startFailed(new EngineFailedError(this.#engine, `its thread exited (code ${code}) before it was ready`));
    else this.#fail(`its thread exited (code ${code})`);
    // Stopped (closed, or failed already): whatever is left never gets an answer.
    const closed = new ClosedError(this.#engine);
    for (const p of this.#pending.values()) p.reject(this.#failure ?? closed);
    this.#pending.clear();
  }

  #startFailed(e: Error): void {
    this.#starting?.reject(e);
    this.#starting = undefined;
  }

  /** The worker stopped, or is stopping, without being asked: every caller learns it once. */
  #fail(how: string, cause?: unknown): void {
    if (this.#failure || this.#stopping) return;
    const e = new EngineFailedError(this.#engine, how, cause === undefined ? undefined : { cause });
    this.#failure = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    this.#updateRef();
    (this.emit as (event: 'failed', error: EngineFailedError) => boolean)('failed', e);
  }

  #updateRef(): void {
    if (this.#closing || this.#keepAlive === 'always' || this.#pending.size > 0 || this.#keepAlive()) this.#worker.ref();
    else this.#worker.unref();
  }
}
