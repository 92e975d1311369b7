/**
 * The send worker's aggregate job: paces the aggregate with absolute
 * deadlines (a futex wait on the thread for the bulk of a gap, then a short
 * spin: Node timers are 1 ms coarse and this thread has nothing else to
 * do), and hands every group of messages due together to the kernel in one
 * sendmmsg per address family, straight from the job's buffer (iovecs into
 * it, no copy).
 */
import { RawUdpSocket } from '../sys/udp-socket.js';
import { SendVector } from '../sys/send-vector.js';
import { NativeRegion, addressOf } from '../sys/memory.js';
import { writeSockaddr } from '../sys/sockaddr.js';
import { EAGAIN, errnoName } from '../sys/errno.js';
import { GSO_MAX_BYTES, sendAll, type BatchSendPolicy } from '../sys/batch-send.js';
import { ReasonCodes } from './results.js';
import { Interleaver } from './interleave.js';
import { MAX_BATCH, SOCKADDR_SIZE, sleep } from './send-thread.js';
import type { AggregateJob, JobOutcome } from './send-protocol.js';

/** Spin for the last part of a wait: a futex wake-up is late by tens of µs. */
const SPIN_MS = 0.25;
/** A send refused for a full socket buffer is retried this long, then dropped. */
const EAGAIN_GIVE_UP_MS = 1000;

const vector = new SendVector(MAX_BATCH, MAX_BATCH);
/** Per vector message of an aggregate: its run of messages, as a slice of the group's order. */
const runStart = new Int32Array(MAX_BATCH);
const runLength = new Int32Array(MAX_BATCH);

function waitUntil(t: number): void {
  for (;;) {
    const left = t - performance.now();
    if (left <= 0) return;
    if (left > SPIN_MS) sleep(left - SPIN_MS);
  }
}

export function runAggregate(job: AggregateJob): JobOutcome {
  const n = job.dueMs.length;
  const d = job.destAddress.length;
  const sentAtMs = new Float64Array(n);
  const reason = new Uint16Array(n);
  const reasons = new ReasonCodes();
  const sockets = new Map<4 | 6, RawUdpSocket>();
  let sendCalls = 0;
  let gsoMessages = 0;
  const blob = new Uint8Array(job.blob);
  const blobAddress = addressOf(blob);
  const names = new NativeRegion(Math.max(1, d) * SOCKADDR_SIZE);
  const nameLen = new Int32Array(d);
  /** Vector message m's run was handed over at t (or refused with err). No closure per group: the pacer should not make garbage. */
  const mark = (m: number, t: number, err: string): void => {
    for (let q = runStart[m]!; q < runStart[m]! + runLength[m]!; q++) {
      sentAtMs[order[q]!] = t;
      if (err) reason[order[q]!] = reasons.code(err);
    }
  };
  // The current group's candidates (plan order), then their sending order (turns by destination).
  const candidates = new Int32Array(n);
  const order = new Int32Array(n);
  const interleaver = new Interleaver(d);
  try {
    for (const family of new Set(job.destFamily) as Set<4 | 6>) {
      const s = RawUdpSocket.open(family);
      sockets.set(family, s);
      if (job.from && job.from.family === family) s.bind(job.from);
    }
    for (let i = 0; i < d; i++) nameLen[i] = writeSockaddr(names.bytes, i * SOCKADDR_SIZE, job.destFamily[i] as 4 | 6, job.destAddress[i]!, job.destPort[i]!);
    const start = job.startAt === undefined ? performance.now() : performance.now() + (job.startAt - Date.now());
    let giveUp = 0;
    /** Per vector: what went is marked sent; a full socket is waited for up to 1 s, then its message dropped; refusals are marked with their errno. */
    const policy: BatchSendPolicy = {
      begin: () => (giveUp = performance.now() + EAGAIN_GIVE_UP_MS),
      onCall: () => sendCalls++,
      onSent: (at, count) => {
        const t = performance.now() - start;
        for (let m = at; m < at + count; m++) {
          mark(m, t, '');
          if (runLength[m]! > 1) gsoMessages++;
        }
      },
      onFull: (_at, errno) => {
        // ENOBUFS is no full socket buffer here: refused at once, as always.
        if (errno !== EAGAIN || performance.now() >= giveUp) return 'drop';
        sleep(0.2);
        return 'retry';
      },
      // The kernel refused message `at`: count it against its destination and go on.
      onRefused: (at, errno) => mark(at, performance.now() - start, errnoName(errno)),
    };
    for (let i = 0; i < n;) {
      const due = job.dueMs[i]!;
      let j = i;
      while (j < n && job.dueMs[j] === due) j++;
      waitUntil(start + due);
      for (const [family, sock] of sockets) {
        // Messages of this family due now and not too late, in turns by
        // destination (interleave.ts): at most job.burst in a row to one
        // destination, and such a run of equal-size messages can go as one
        // UDP GSO message.
        const now = performance.now() - start;
        let candidateCount = 0;
        for (let k = i; k < j; k++) {
          if (job.destFamily[job.dest[k]!] !== family) continue;
          if (now - job.dueMs[k]! > job.maxLatenessMs) {
            reason[k] = reasons.code('late');
            sentAtMs[k] = now;
            continue;
          }
          candidates[candidateCount++] = k;
        }
        const orderLength = candidateCount;
        interleaver.order(candidates, candidateCount, job.dest, job.burst, order);
        let r0 = 0;
        while (r0 < orderLength) {
          vector.clear();
          // Each vector message carries a run of `order`: one message, or a GSO run.
          let count = 0;
          while (r0 < orderLength && vector.hasRoom(1)) {
            const k = order[r0]!;
            const size = job.length[k]!;
            let len = 1;
            // Extend the run: same destination, same size (the last may be
            // shorter), within the segment and byte limits and the iovecs left.
            while (
              job.gsoMaxSegments > 1 &&
              size > 0 &&
              r0 + len < orderLength &&
              len < job.gsoMaxSegments &&
              (len + 1) * size <= GSO_MAX_BYTES &&
              vector.hasRoom(len + 1) &&
              job.length[order[r0 + len - 1]!] === size
            ) {
              const next = order[r0 + len]!;
              if (job.dest[next] !== job.dest[k] || job.length[next]! > size) break;
              len++;
            }
            const dk = job.dest[k]!;
            vector.begin(names.address + dk * SOCKADDR_SIZE, nameLen[dk]!, len > 1 ? size : 0);
            for (let q = r0; q < r0 + len; q++) vector.addIov(blobAddress + job.offset[order[q]!]!, job.length[order[q]!]!);
            runStart[count] = r0;
            runLength[count] = len;
            count++;
            r0 += len;
          }
          sendAll(vector, sock.fd, policy, count);
        }
      }
      i = j;
    }
    return { sentAtMs, reason, reasons: reasons.list, sendCalls, gsoMessages, elapsedMs: performance.now() - start };
  } catch (err) {
    return {
      sentAtMs,
      reason,
      reasons: reasons.list,
      sendCalls,
      gsoMessages,
      elapsedMs: 0,
      fatal: err instanceof Error ? err.message : String(err),
    };
  } finally {
    for (const s of sockets.values()) s.close();
  }
}
