/**
 * The batched engine's send worker: takes an aggregate job, paces it with
 * absolute deadlines (a futex wait on the thread for the bulk of a gap,
 * then a short spin: Node timers are 1 ms coarse and this thread has
 * nothing else to do), and hands every group of messages due together to
 * the kernel in one sendmmsg per address family, straight from the job's
 * buffer (iovecs into it, no copy). Outcomes go back in one message.
 */
import { runWorker, withTransfer } from '../worker/port.js';
import { RawUdpSocket } from '../sys/udp-socket.js';
import { SendVector } from '../sys/send-vector.js';
import { NativeRegion, addressOf } from '../sys/memory.js';
import { setThreadNice, setTimerSlack } from '../sys/thread.js';
import { writeSockaddr } from '../sys/sockaddr.js';
import { EAGAIN, ENOBUFS, errnoName } from '../sys/errno.js';
import { MSG_ZEROCOPY } from '../sys/constants.js';
import { enableZeroCopy, ZeroCopyCompletions } from '../sys/zerocopy.js';
import { ReasonCodes } from './results.js';
import { Interleaver } from './interleave.js';
import type { AggregateJob, JobOutcome, SendRequests, WriteJob, WriteOutcome, WriteZeroCopy } from './send-protocol.js';

const SOCKADDR_SIZE = 28;
const MAX_BATCH = 1024;
/** Spin for the last part of a wait: a futex wake-up is late by tens of µs. */
const SPIN_MS = 0.25;
/** Bytes of UDP payload one GSO message may carry (the IP datagram limit, less headers). */
const GSO_MAX_BYTES = 65_000;
/** A write that makes no progress for this long (socket buffer never drains) fails. */
const STALL_MS = 10_000;
/** A send refused for a full socket buffer is retried this long, then dropped. */
const EAGAIN_GIVE_UP_MS = 1000;
/**
 * Smallest sendmmsg message (bytes) sent with MSG_ZEROCOPY. Pinning pages
 * and reading a completion cost more than copying small sends: the kernel
 * docs (networking/msg_zerocopy.rst) put the break-even at writes of
 * around 10 KB per send call, and for sendmmsg each message is a send call.
 * In practice: GSO runs (burst ≥ 7 of 1472-byte packets) qualify, single
 * MTU-sized datagrams do not.
 */
const ZEROCOPY_MIN_BYTES = 10 * 1024;
/**
 * How long a write waits, after its last send, for the kernel to release
 * the caller's pages. Completions normally arrive within a transmit
 * (microseconds to milliseconds); this bounds a wedged device queue.
 */
const ZEROCOPY_WAIT_MS = 5000;
/**
 * When every completion of a write came back flagged "copied" (the path
 * delivers locally or crosses a veth into another namespace, where the
 * kernel copies the pinned pages anyway), zerocopy only adds pinning and
 * notifications: later writes copy for this long, then try again (the
 * kernel docs advise exactly this). Per family, for this worker.
 */
const ZEROCOPY_COPIED_BACKOFF_MS = 10_000;
const zeroCopyCopiedUntil = new Map<4 | 6, number>();

/**
 * The pacer's nice value, where the process may lower it (root, or
 * CAP_SYS_NICE, or RLIMIT_NICE): the worker sleeps most of the time and
 * must run the moment a deadline comes, but the application's threads (V8's
 * GC helpers included) on the same core otherwise keep it waiting for their
 * slice, milliseconds at a time. -10 gives it about 9 times their weight; it
 * only ever runs short bursts. Refused (an ordinary user): it keeps nice 0.
 */
const PACER_NICE = -10;
setThreadNice(PACER_NICE);

/**
 * Timer slack for this thread: the kernel may delay a sleeping
 * thread's wake-up by its timer slack (50 µs by default) to batch timers;
 * the pacer asks for 1 ns, so its futex sleeps end on time and the spin
 * that follows stays short. Per thread: the application's threads keep
 * theirs. A refusal only costs precision.
 */
setTimerSlack(1);

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const vector = new SendVector(MAX_BATCH, MAX_BATCH);
/** Per vector message of an aggregate: its run of messages, as a slice of the group's order. */
const runStart = new Int32Array(MAX_BATCH);
const runLength = new Int32Array(MAX_BATCH);

function waitUntil(t: number): void {
  for (;;) {
    const left = t - performance.now();
    if (left <= 0) return;
    if (left > SPIN_MS) Atomics.wait(sleeper, 0, 0, left - SPIN_MS);
  }
}

function run(job: AggregateJob): JobOutcome {
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
          let at = 0;
          const giveUp = performance.now() + EAGAIN_GIVE_UP_MS;
          while (at < count) {
            sendCalls++;
            const r = vector.send(sock.fd, at);
            const t = performance.now() - start;
            if (r > 0) {
              for (let m = at; m < at + r; m++) {
                mark(m, t, '');
                if (runLength[m]! > 1) gsoMessages++;
              }
              at += r;
            } else if (-r === EAGAIN && performance.now() < giveUp) {
              Atomics.wait(sleeper, 0, 0, 0.2);
            } else {
              // The kernel refused message `at`: count it against its destination and go on.
              mark(at, t, errnoName(-r));
              at++;
            }
          }
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

/**
 * A segmented write: destinations interleaved `burst` packets at a time.
 * A run of several packets for one destination is one sendmmsg message
 * with a single iovec over the run's bytes (contiguous in the entry) and
 * UDP_SEGMENT = packetSize: the kernel cuts it (GSO; the last packet may
 * be shorter). Messages go to the kernel 1024 per sendmmsg. With
 * `job.zeroCopy`, messages of ZEROCOPY_MIN_BYTES or more go with
 * MSG_ZEROCOPY (the kernel pins the caller's pages instead of copying),
 * and the outcome is posted only after every such send's completion was
 * read from the socket's error queue: the caller's buffers are then free.
 */
function runWrite(job: WriteJob): WriteOutcome {
  const n = job.address.length;
  const sentPackets = new Float64Array(n);
  const sentBytes = new Float64Array(n);
  const errors = new Float64Array(n);
  const lastError = new Array<string>(n).fill('');
  const sockets = new Map<4 | 6, RawUdpSocket>();
  const names = new NativeRegion(Math.max(1, n) * SOCKADDR_SIZE);
  const nameLen = new Int32Array(n);
  const t0 = performance.now();
  let sendCalls = 0;
  let gsoMessages = 0;
  let packets = 0;
  const size = job.packetSize;
  const perRun = Math.max(1, Math.min(job.burst, job.gsoMaxSegments > 1 ? Math.min(job.gsoMaxSegments, Math.floor(GSO_MAX_BYTES / size)) : 1));
  // Per family: its completion tracker once SO_ZEROCOPY is on; families
  // whose socket copies whatever the size (option refused, zerocopy gave up).
  const zc = new Map<4 | 6, ZeroCopyCompletions>();
  const copyOnly = new Set<4 | 6>();
  let zcFallback: string | undefined;
  const zeroCopyFor = (family: 4 | 6): ZeroCopyCompletions | undefined => {
    if (copyOnly.has(family)) return undefined;
    if (performance.now() < (zeroCopyCopiedUntil.get(family) ?? 0)) {
      zcFallback ??= `the kernel copied every zerocopy send of a recent write on this path (local or veth delivery): copying for up to ${ZEROCOPY_COPIED_BACKOFF_MS / 1000} s`;
      copyOnly.add(family);
      return undefined;
    }
    let t = zc.get(family);
    if (!t) {
      const fd = sockets.get(family)!.fd;
      const refused = enableZeroCopy(fd);
      if (refused) {
        zcFallback ??= `${refused}: copying instead`;
        copyOnly.add(family);
        return undefined;
      }
      zc.set(family, (t = new ZeroCopyCompletions(fd)));
    }
    return t;
  };
  const wantsZeroCopy = (bytes: number): boolean => job.zeroCopy && bytes >= ZEROCOPY_MIN_BYTES;
  /**
   * Holds the write until the kernel has released every page it pinned:
   * only then may the main thread let the caller reuse the buffers.
   * Returns what went wrong, if anything.
   */
  const awaitCompletions = (): string | undefined => {
    const problems: string[] = [];
    for (const [family, t] of zc) {
      try {
        if (!t.waitAll(ZEROCOPY_WAIT_MS))
          problems.push(
            `IPv${family}: ${t.outstanding} of ${t.sends} zerocopy sends not completed after ${ZEROCOPY_WAIT_MS} ms (the kernel may still read the buffers)`,
          );
      } catch (err) {
        problems.push(`IPv${family}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (t.malformed) problems.push(`IPv${family}: ${t.malformed} undecodable error-queue notifications`);
      if (t.completed > 0 && t.copied === t.completed) zeroCopyCopiedUntil.set(family, performance.now() + ZEROCOPY_COPIED_BACKOFF_MS);
    }
    return problems.length ? problems.join('; ') : undefined;
  };
  const zeroCopyReport = (error: string | undefined): WriteZeroCopy | undefined => {
    if (!job.zeroCopy) return undefined;
    let sends = 0;
    let completed = 0;
    let copied = 0;
    for (const t of zc.values()) {
      sends += t.sends;
      completed += t.completed;
      copied += t.copied;
    }
    return { sends, completed, copied, ...(zcFallback ? { fallback: zcFallback } : {}), ...(error ? { error } : {}) };
  };
  try {
    for (const family of new Set(job.toFamily) as Set<4 | 6>) {
      const s = RawUdpSocket.open(family);
      sockets.set(family, s);
      if (job.from && job.from.family === family) s.bind(job.from);
    }
    for (let i = 0; i < n; i++) {
      nameLen[i] = writeSockaddr(names.bytes, i * SOCKADDR_SIZE, job.toFamily[i] as 4 | 6, job.toAddress[i]!, job.toPort[i]!);
      packets += Math.ceil(job.length[i]! / size);
    }
    // Messages queued per family, in plan order: entry, offset, bytes, packets.
    const next = new Float64Array(n);
    interface Msg {
      entry: number;
      offset: number;
      bytes: number;
      count: number;
    }
    const queue = new Map<4 | 6, Msg[]>([...sockets.keys()].map((f) => [f, []]));
    const flush = (family: 4 | 6, all: boolean): void => {
      const q = queue.get(family)!;
      const sock = sockets.get(family)!;
      while (q.length >= MAX_BATCH || (all && q.length > 0)) {
        vector.clear();
        const batch = q.splice(0, MAX_BATCH);
        for (const m of batch) {
          vector.begin(names.address + m.entry * SOCKADDR_SIZE, nameLen[m.entry]!, m.count > 1 ? size : 0);
          vector.addIov(job.address[m.entry]! + m.offset, m.bytes);
        }
        let at = 0;
        let stallAt = performance.now() + STALL_MS;
        while (at < batch.length) {
          // sendmmsg's flags cover the whole call: send the run of messages
          // from `at` that all want MSG_ZEROCOPY, or all do not.
          const zero = wantsZeroCopy(batch[at]!.bytes);
          let end = at + 1;
          while (end < batch.length && wantsZeroCopy(batch[end]!.bytes) === zero) end++;
          const tracker = zero ? zeroCopyFor(family) : undefined;
          sendCalls++;
          const r = vector.send(sock.fd, at, tracker ? MSG_ZEROCOPY : 0, end);
          if (r > 0) {
            for (let k = at; k < at + r; k++) {
              const m = batch[k]!;
              sentPackets[m.entry] = sentPackets[m.entry]! + m.count;
              sentBytes[m.entry] = sentBytes[m.entry]! + m.bytes;
              if (m.count > 1) gsoMessages++;
            }
            at += r;
            stallAt = performance.now() + STALL_MS;
            if (tracker) {
              tracker.sends += r;
              // Reading completions as they come keeps the error queue (and
              // the optmem it is charged to) short.
              tracker.drain();
            }
          } else if (-r === EAGAIN) {
            if (performance.now() > stallAt) throw new Error('sendmmsg: EAGAIN for 10 s, the socket buffer never drained');
            tracker?.drain();
            Atomics.wait(sleeper, 0, 0, 0.2);
          } else if (tracker && -r === ENOBUFS) {
            // Zerocopy's own limits: notifications pending past the
            // socket's optmem, or pinned pages past RLIMIT_MEMLOCK. Waiting
            // for completions frees both; with none outstanding it will not
            // pass, so this socket copies from here on.
            tracker.drain();
            if (tracker.outstanding > 0) {
              if (performance.now() > stallAt) throw new Error('sendmmsg(MSG_ZEROCOPY): ENOBUFS for 10 s, zerocopy completions never freed room');
              tracker.waitAll(1);
            } else {
              copyOnly.add(family);
              zcFallback ??= 'sendmmsg(MSG_ZEROCOPY): ENOBUFS with no completion pending (locked-page or optmem limit): copying instead';
            }
          } else {
            const m = batch[at]!;
            errors[m.entry] = errors[m.entry]! + m.count;
            lastError[m.entry] = errnoName(-r);
            at++;
          }
        }
      }
    };
    let remaining = packets;
    while (remaining > 0) {
      for (let e = 0; e < n; e++) {
        // One round: up to `burst` packets for entry e, in runs of perRun.
        let left = job.burst;
        while (left > 0 && next[e]! < job.length[e]!) {
          const offset = next[e]!;
          const count = Math.min(left, perRun, Math.ceil((job.length[e]! - offset) / size));
          const bytes = Math.min(count * size, job.length[e]! - offset);
          queue.get(job.toFamily[e] as 4 | 6)!.push({ entry: e, offset, bytes, count });
          next[e] = offset + bytes;
          left -= count;
          remaining -= count;
        }
      }
      for (const f of queue.keys()) flush(f, false);
    }
    for (const f of queue.keys()) flush(f, true);
    const zeroCopy = zeroCopyReport(awaitCompletions());
    return {
      packets,
      sentPackets,
      sentBytes,
      errors,
      lastError,
      sendCalls,
      gsoMessages,
      ...(zeroCopy ? { zeroCopy } : {}),
      elapsedMs: performance.now() - t0,
    };
  } catch (err) {
    // Sends that did go out may still hold the caller's pages: wait for them here too.
    const zeroCopy = zeroCopyReport(awaitCompletions());
    return {
      packets,
      sentPackets,
      sentBytes,
      errors,
      lastError,
      sendCalls,
      gsoMessages,
      ...(zeroCopy ? { zeroCopy } : {}),
      elapsedMs: performance.now() - t0,
      fatal: err instanceof Error ? err.message : String(err),
    };
  } finally {
    for (const s of sockets.values()) s.close();
  }
}

runWorker<SendRequests>((port) => {
  port.serve({
    write: (job) => runWrite(job),
    aggregate: (job) => {
      const o = { ...run(job), blob: job.blob };
      // The per-message arrays move back instead of being copied, and the blob for reuse.
      return withTransfer(o, [o.sentAtMs.buffer as ArrayBuffer, o.reason.buffer as ArrayBuffer, job.blob]);
    },
  });
  port.ready();
});
