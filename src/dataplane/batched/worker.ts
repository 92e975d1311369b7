/**
 * Entry point of the batched tier's worker thread. Packets are received,
 * checked and sent here; the application thread only exchanges requests
 * and reads shared counters.
 */
import { workerPort } from '../../worker/port.js';
import { BatchedEngine } from './engine.js';
import type { BatchedNotifications, BatchedRequests, WorkerData } from './protocol.js';

// An exception in the loop stays uncaught: the plane reports "uncaught <name>: <message>".
new BatchedEngine(workerPort<BatchedRequests, BatchedNotifications, WorkerData>()).run();
