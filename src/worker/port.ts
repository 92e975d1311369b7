/**
 * The worker side of a channel (channel.ts): say 'ready', answer requests,
 * post notifications and faults. Two ways to take requests:
 *
 * - serve(): one handler per op, called from the worker's event loop (a
 *   worker that waits for work, such as the send worker);
 * - poll(): the same handlers, run synchronously for every request queued
 *   right now (a worker that blocks in ppoll and has no event loop to
 *   spare, such as the batched engine: it polls when its eventfd fires).
 *
 * A handler's return value is the reply's result (withTransfer() to move
 * buffers instead of copying them); a throw becomes the reply's error.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { toErrorInfo, type NotificationMap, type RequestEnvelope, type RequestMap, type WorkerMessage } from './protocol.js';

/** A result whose buffers move to the application thread (see withTransfer). */
export class Transfer<T> {
  readonly value: T;
  readonly list: readonly TransferListItem[];
  constructor(value: T, list: readonly TransferListItem[]) {
    this.value = value;
    this.list = list;
  }
}

/** Replies with `value`, moving `list` (its buffers) rather than copying them. */
export function withTransfer<T>(value: T, list: readonly TransferListItem[]): Transfer<T> {
  return new Transfer(value, list);
}

/** Per op: the request as it arrived (with `id` and `op`) → the result. */
export type Handlers<R extends RequestMap<R>> = {
  readonly [Op in keyof R & string]: (request: R[Op]['request'] & { readonly id: number; readonly op: Op }) => R[Op]['result'] | Transfer<R[Op]['result']>;
};

export interface WorkerPort<R extends RequestMap<R>, N extends NotificationMap<N>, D> {
  /** The workerData the channel was started with. */
  readonly data: D;
  /** Tells the channel the worker is ready (start() resolves); `info` becomes its readyInfo. */
  ready(info?: unknown): void;
  /** Handles every request queued now, synchronously; returns how many there were. */
  poll(handlers: Handlers<R>): number;
  /** Handles requests as they arrive, from the worker's event loop. */
  serve(handlers: Handlers<R>): void;
  notify<E extends keyof N & string>(event: E, data: N[E], transfer?: readonly TransferListItem[]): void;
  /** A failure no request waits for. `fatal`: the worker is stopping (the channel fails); before ready any fault fails start(). */
  fault(error: unknown, o: { readonly fatal: boolean; readonly scope?: string }): void;
}

export function workerPort<
  R extends RequestMap<R> = Record<string, { request: object; result: unknown }>,
  N extends NotificationMap<N> = Record<string, unknown>,
  D = unknown,
>(): WorkerPort<R, N, D> {
  if (!parentPort) throw new Error('this module must run in a worker thread');
  return new Port<R, N, D>(parentPort, workerData as D);
}

/**
 * Runs a worker's `main` with its port; a throw (or a rejection) becomes a
 * fatal fault, so the channel hears why the worker stopped rather than
 * only that it exited.
 */
export function runWorker<
  R extends RequestMap<R> = Record<string, { request: object; result: unknown }>,
  N extends NotificationMap<N> = Record<string, unknown>,
  D = unknown,
>(main: (port: WorkerPort<R, N, D>) => void | Promise<void>): void {
  const port = workerPort<R, N, D>();
  try {
    const done = main(port);
    if (done) done.catch((e: unknown) => port.fault(e, { fatal: true }));
  } catch (e) {
    port.fault(e, { fatal: true });
  }
}

class Port<R extends RequestMap<R>, N extends NotificationMap<N>, D> implements WorkerPort<R, N, D> {
  readonly #port: MessagePort;
  readonly data: D;

  constructor(port: MessagePort, data: D) {
    this.#port = port;
    this.data = data;
  }

  ready(info?: unknown): void {
    this.#post(info === undefined ? { kind: 'ready' } : { kind: 'ready', info });
  }

  poll(handlers: Handlers<R>): number {
    let n = 0;
    for (let m = receiveMessageOnPort(this.#port); m; m = receiveMessageOnPort(this.#port)) {
      n++;
      this.#handle(handlers, m.message as RequestEnvelope);
    }
    return n;
  }

  serve(handlers: Handlers<R>): void {
    this.#port.on('message', (m: RequestEnvelope) => this.#handle(handlers, m));
  }

  notify<E extends keyof N & string>(event: E, data: N[E], transfer?: readonly TransferListItem[]): void {
    this.#post({ kind: 'notify', event, data }, transfer);
  }

  fault(error: unknown, o: { readonly fatal: boolean; readonly scope?: string }): void {
    this.#post({ kind: 'fault', error: toErrorInfo(error), fatal: o.fatal, ...(o.scope === undefined ? {} : { scope: o.scope }) });
  }

  #handle(handlers: Handlers<R>, req: RequestEnvelope): void {
    let out: unknown;
    try {
      const handler = Object.hasOwn(handlers, req.op) ? ((handlers as Record<string, unknown>)[req.op] as (r: RequestEnvelope) => unknown) : undefined;
      if (!handler) throw new Error(`unknown request '${req.op}'`);
      out = handler(req);
    } catch (e) {
      this.#post({ kind: 'reply', id: req.id, error: toErrorInfo(e) });
      return;
    }
    if (out instanceof Transfer) this.#post({ kind: 'reply', id: req.id, result: out.value }, out.list);
    else this.#post(out === undefined ? { kind: 'reply', id: req.id } : { kind: 'reply', id: req.id, result: out });
  }

  #post(m: WorkerMessage, transfer?: readonly TransferListItem[]): void {
    this.#port.postMessage(m, transfer);
  }
}
