/**
 * Starts a worker thread from its entry file, compiled or from source.
 *
 * Built, an entry is the `.js` file next to the module that starts it.
 * Run from source under tsx (tests, the bench, the harness) it is the `.ts`
 * file, and Node 20 does not pass tsx's loader to worker threads: the
 * worker then starts from a two-line bootstrap that registers tsx and
 * imports the entry. Which one applies is read from the entry's own
 * extension, so an entry anywhere in the tree works (workerEntry() picks
 * the extension of the module asking).
 */
import { Worker, type TransferListItem } from 'node:worker_threads';

export interface SpawnOptions<D = unknown> {
  /** The entry file (see workerEntry()). */
  readonly entry: URL;
  /** Thread name: it shows in EngineFailedError texts, `top -H` and debuggers ('sluice-batched', …). */
  readonly name: string;
  readonly workerData?: D;
  readonly transferList?: readonly TransferListItem[];
}

/**
 * The entry `stem` (a path relative to `from`, without extension) with
 * the extension `from` has: `workerEntry(import.meta.url, './worker')` is
 * worker.js next to a built module and worker.ts next to a source one.
 */
export function workerEntry(from: string, stem: string): URL {
  return new URL(`${stem}${from.endsWith('.ts') ? '.ts' : '.js'}`, from);
}

export function spawnWorker<D>(o: SpawnOptions<D>): Worker {
  const options = {
    name: o.name,
    ...(o.workerData === undefined ? {} : { workerData: o.workerData }),
    ...(o.transferList ? { transferList: [...o.transferList] } : {}),
  };
  if (!o.entry.pathname.endsWith('.ts')) return new Worker(o.entry, options);
  const entry = JSON.stringify(o.entry.href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { ...options, eval: true });
}
