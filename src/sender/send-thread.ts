/**
 * What the send worker's two jobs (send-aggregate.ts, send-write.ts) share:
 * the limits of one sendmmsg call and how the thread sleeps. (A GSO
 * message's limit is sys/batch-send.ts's GSO_MAX_BYTES.) Loaded only in the
 * send worker.
 */

/** Bytes per encoded destination in a job's name region (a sockaddr_in6). */
export const SOCKADDR_SIZE = 28;
/** Messages per sendmmsg call (UIO_MAXIOV). */
export const MAX_BATCH = 1024;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` (a futex wait: the send worker has nothing else to do meanwhile). */
export function sleep(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}
