/**
 * Entry point of a tcp-redirect's splice thread: it owns no socket, only
 * the pipes between the pairs the application thread hands it (by
 * descriptor), and tells it when a pair has ended. An exception in the
 * loop stays uncaught: the relay reports the worker's error.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { SpliceLoop, type SpliceNotice, type SpliceRequest } from './splice-loop.js';

const port = parentPort!;
const data = workerData as { wakeFd: number; totals: SharedArrayBuffer };
new SpliceLoop({
  wakeFd: data.wakeFd,
  totals: new BigInt64Array(data.totals),
  receive: () => receiveMessageOnPort(port)?.message as SpliceRequest | undefined,
  notify: (n: SpliceNotice) => port.postMessage(n),
}).run();
