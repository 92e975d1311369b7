/**
 * The batched engine's send worker: takes an aggregate job, paces it with
 * absolute deadlines (a futex wait on the thread for the bulk of a gap,
 * then a short spin: Node timers are 1 ms coarse and this thread has
 * nothing else to do), and hands every group of messages due together to
 * the kernel in one sendmmsg per address family, straight from the job's
 * buffer (iovecs into it, no copy). Outcomes go back in one message.
 */
import { parentPort } from 'node:worker_threads';
import { RawUdpSocket } from '../sys/udp-socket.js';
import { SendVector } from '../sys/send-vector.js';
import { NativeRegion } from '../sys/memory.js';
import { libc } from '../sys/ffi.js';
import { writeSockaddr } from '../sys/sockaddr.js';
import { EAGAIN, errnoName } from '../sys/errno.js';
import type { AggregateJob, JobOutcome } from './send-protocol.js';

const SOCKADDR_SIZE = 28;
const MAX_BATCH = 1024;
/** Spin for the last part of a wait: a futex wake-up is late by tens of µs. */
const SPIN_MS = 0.25;
/** A send refused for a full socket buffer is retried this long, then dropped. */
const EAGAIN_GIVE_UP_MS = 1000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const vector = new SendVector(MAX_BATCH, MAX_BATCH);

function waitUntil(t: number): void {
  for (;;) {
    const left = t - performance.now();
    if (left <= 0) return;
    if (left > SPIN_MS) Atomics.wait(sleeper, 0, 0, left - SPIN_MS);
  }
}

function run(job: AggregateJob): JobOutcome {
  const n = job.index.length;
  const sentAtMs = new Float64Array(n);
  const error = new Array<string>(n).fill('');
  const sockets = new Map<4 | 6, RawUdpSocket>();
  let sendCalls = 0;
  const blob = new Uint8Array(job.blob);
  const blobAddress = blob.length ? libc().memcpyAddr(blob, blob, 0) : 0;
  const names = new NativeRegion(Math.max(1, n) * SOCKADDR_SIZE);
  const nameLen = new Int32Array(n);
  try {
    for (const family of new Set(job.toFamily) as Set<4 | 6>) {
      const s = RawUdpSocket.open(family);
      sockets.set(family, s);
      if (job.from && job.from.family === family) s.bind(job.from);
    }
    for (let i = 0; i < n; i++) nameLen[i] = writeSockaddr(names.bytes, i * SOCKADDR_SIZE, job.toFamily[i] as 4 | 6, job.toAddress[i]!, job.toPort[i]!);
    const start = job.startAt === undefined ? performance.now() : performance.now() + (job.startAt - Date.now());
    for (let i = 0; i < n; ) {
      const due = job.dueMs[i]!;
      let j = i;
      while (j < n && job.dueMs[j] === due) j++;
      waitUntil(start + due);
      for (const [family, sock] of sockets) {
        let k = i;
        while (k < j) {
          vector.clear();
          const members: number[] = [];
          const now = performance.now() - start;
          for (; k < j && vector.hasMessageRoom(); k++) {
            if (job.toFamily[k] !== family) continue;
            if (now - job.dueMs[k]! > job.maxLatenessMs) {
              error[k] = 'late';
              sentAtMs[k] = now;
              continue;
            }
            vector.begin(names.address + k * SOCKADDR_SIZE, nameLen[k]!, 0);
            vector.addIov(blobAddress + job.offset[k]!, job.length[k]!);
            members.push(k);
          }
          let at = 0;
          const giveUp = performance.now() + EAGAIN_GIVE_UP_MS;
          while (at < members.length) {
            sendCalls++;
            const r = vector.send(sock.fd, at);
            const t = performance.now() - start;
            if (r > 0) {
              for (let m = at; m < at + r; m++) sentAtMs[members[m]!] = t;
              at += r;
            } else if (-r === EAGAIN && performance.now() < giveUp) {
              Atomics.wait(sleeper, 0, 0, 0.2);
            } else {
              // The kernel refused message `at`: count it against its destination and go on.
              error[members[at]!] = errnoName(-r);
              sentAtMs[members[at]!] = t;
              at++;
            }
          }
        }
      }
      i = j;
    }
    return { id: job.id, sentAtMs, error, sendCalls, elapsedMs: performance.now() - start };
  } catch (err) {
    return { id: job.id, sentAtMs, error, sendCalls, elapsedMs: 0, fatal: err instanceof Error ? err.message : String(err) };
  } finally {
    for (const s of sockets.values()) s.close();
  }
}

parentPort!.on('message', (job: AggregateJob) => {
  parentPort!.postMessage(run(job));
});
