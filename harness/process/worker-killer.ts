/**
 * Finds the batched tier's worker thread from outside, without a hook in
 * the product: Worker.prototype.postMessage is wrapped so that the worker
 * that receives the first 'add' request (a flow) is remembered. Tests then
 * terminate it, as a crash would, and check that the failure is reported.
 */
import { Worker } from 'node:worker_threads';

export interface WorkerCapture {
  /** Resolves with the first worker sent a matching message (default: an `{ op: 'add' }` request). */
  readonly engine: Promise<Worker>;
  restore(): void;
}

export function captureEngineWorker(isFirstMessage: (message: unknown) => boolean = (m) => (m as { op?: unknown } | null)?.op === 'add'): WorkerCapture {
  const original = Worker.prototype.postMessage;
  let found: (w: Worker) => void = () => undefined;
  const engine = new Promise<Worker>((resolve) => (found = resolve));
  Worker.prototype.postMessage = function (this: Worker, value: unknown, transfer?: readonly never[]) {
    if (isFirstMessage(value)) found(this);
    return original.call(this, value, transfer as never);
  };
  return { engine, restore: () => (Worker.prototype.postMessage = original) };
}
