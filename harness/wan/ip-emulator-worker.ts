/**
 * Entry point of the IP-level WAN emulator's worker thread (see
 * ip-wan-engine.ts). Reports 'ready' or the start-up error, then runs the
 * loop until the controller sets the stop flag.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SyscallError } from '../../src/errors.js';
import { IpWanEngine } from './ip-emulator-engine.js';
import type { IpWanWorkerData } from './ip-emulator-protocol.js';

if (!parentPort) throw new Error('the IP WAN emulator engine must run in a worker thread');
const port = parentPort;
let engine: IpWanEngine | undefined;
try {
  engine = new IpWanEngine(workerData as IpWanWorkerData);
  port.postMessage({ kind: 'ready', scheduling: engine.scheduling });
  engine.run();
  engine.close();
  port.postMessage({ kind: 'stopped' });
} catch (err) {
  engine?.close();
  const e = err as Error;
  port.postMessage(
    e instanceof SyscallError
      ? { kind: 'error', message: e.message, op: e.op, errno: e.errno, detail: e.detail }
      : { kind: 'error', message: e.stack ?? e.message },
  );
}
