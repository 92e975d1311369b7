/**
 * Finds an engine's worker thread from outside, without a hook in the
 * product: Worker.prototype.postMessage is wrapped so that the worker sent
 * the first request with a given op is remembered (every engine speaks
 * src/worker's channel protocol, whose requests are `{ id, op, ... }`: the
 * batched tier's first is 'add', a flow; the send engine's 'aggregate' or
 * 'write'). Tests then terminate it, as a crash would, and check that the
 * failure is reported.
 */
import { Worker } from 'node:worker_threads';

export interface WorkerCapture {
  /** Resolves with the first worker sent a request with the op asked for. */
  readonly engine: Promise<Worker>;
  restore(): void;
}

export function captureEngineWorker(op = 'add'): WorkerCapture {
  const original = Worker.prototype.postMessage;
  let found: (w: Worker) => void = () => undefined;
  const engine = new Promise<Worker>((resolve) => (found = resolve));
  Worker.prototype.postMessage = function (this: Worker, value: unknown, transfer?: readonly never[]) {
    if ((value as { op?: unknown } | null)?.op === op) found(this);
    return original.call(this, value, transfer as never);
  };
  return { engine, restore: () => (Worker.prototype.postMessage = original) };
}
