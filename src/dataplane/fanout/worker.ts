/**
 * Entry point of the fan-out thread (loop.ts): the inputs' sockets and all
 * pipes live here; client sockets arrive by descriptor. An exception in
 * the loop stays uncaught: the engine reports the worker's error.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { FanoutLoop, type FanoutNotice, type FanoutRequest } from './loop.js';
import type { FanoutLimits } from './config.js';

const port = parentPort!;
const data = workerData as { wakeFd: number; limits: FanoutLimits; interface?: string };
new FanoutLoop({
  wakeFd: data.wakeFd,
  limits: data.limits,
  interface: data.interface,
  receive: () => receiveMessageOnPort(port)?.message as FanoutRequest | undefined,
  notify: (n: FanoutNotice) => port.postMessage(n),
}).run();
