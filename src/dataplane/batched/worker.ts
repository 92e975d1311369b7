/**
 * Entry point of the batched tier's worker thread. Packets are received,
 * checked and sent here; the application thread only exchanges requests
 * and reads shared counters.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BatchedEngine } from './engine.js';
import type { WorkerData } from './protocol.js';

if (!parentPort) throw new Error('the batched engine must run in a worker thread');
const data = workerData as WorkerData;
new BatchedEngine(parentPort, data.wakeFd, data.options).run();
