/**
 * What the send worker's two jobs (an aggregate: send-worker.ts; a write:
 * send-write.ts) share. The worker runs one job at a time, so one sendmmsg
 * vector serves both.
 */
import { SendVector } from '../sys/send-vector.js';

/** Messages per sendmmsg call. */
export const MAX_BATCH = 1024;
/** Bytes of UDP payload one GSO message may carry (the IP datagram limit, less headers). */
export const GSO_MAX_BYTES = 65_000;
/** The worker's sendmmsg vector: MAX_BATCH messages and iovecs. */
export const vector = new SendVector(MAX_BATCH, MAX_BATCH);

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` (a futex wait: the worker has nothing else to do meanwhile). */
export function sleep(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}
