/**
 * The send worker's segmented write job: destinations interleaved `burst`
 * packets at a time. A run of several packets for one destination is one
 * sendmmsg message with a single iovec over the run's bytes (contiguous in
 * the entry) and UDP_SEGMENT = packetSize: the kernel cuts it (GSO; the
 * last packet may be shorter). Messages go to the kernel 1024 per
 * sendmmsg. With `job.zeroCopy`, large messages go with MSG_ZEROCOPY
 * (zero-copy-policy.ts), and the outcome is posted only after every such
 * send's completion was read from the socket's error queue: the caller's
 * buffers are then free.
 */
import { RawUdpSocket } from '../sys/udp-socket.js';
import { SendVector } from '../sys/send-vector.js';
import { NativeRegion } from '../sys/memory.js';
import { writeSockaddr } from '../sys/sockaddr.js';
import { EAGAIN, errnoName } from '../sys/errno.js';
import { MSG_ZEROCOPY } from '../sys/constants.js';
import { GSO_MAX_BYTES, sendAll, type BatchSendPolicy, type SendRun } from '../sys/batch-send.js';
import type { ZeroCopyCompletions } from '../sys/zerocopy.js';
import { MAX_BATCH, SOCKADDR_SIZE, sleep } from './send-thread.js';
import { ZeroCopyPolicy } from './zero-copy-policy.js';
import type { WriteJob, WriteOutcome } from './send-protocol.js';

/** A write that makes no progress for this long (socket buffer never drains) fails. */
const STALL_MS = 10_000;

const vector = new SendVector(MAX_BATCH, MAX_BATCH);

/** One sendmmsg message of a write: `count` packets of entry `entry` from byte `offset`. */
interface WriteMessage {
  entry: number;
  offset: number;
  bytes: number;
  count: number;
}

/** Per-entry counters of a write, as the outcome reports them. */
interface WriteTally {
  readonly sentPackets: Float64Array;
  readonly sentBytes: Float64Array;
  readonly errors: Float64Array;
  readonly lastError: string[];
  sendCalls: number;
  gsoMessages: number;
}

export function runWrite(job: WriteJob): WriteOutcome {
  const n = job.address.length;
  const tally: WriteTally = {
    sentPackets: new Float64Array(n),
    sentBytes: new Float64Array(n),
    errors: new Float64Array(n),
    lastError: new Array<string>(n).fill(''),
    sendCalls: 0,
    gsoMessages: 0,
  };
  const sockets = new Map<4 | 6, RawUdpSocket>();
  const names = new NativeRegion(Math.max(1, n) * SOCKADDR_SIZE);
  const nameLen = new Int32Array(n);
  const t0 = performance.now();
  let packets = 0;
  const size = job.packetSize;
  const perRun = Math.max(1, Math.min(job.burst, job.gsoMaxSegments > 1 ? Math.min(job.gsoMaxSegments, Math.floor(GSO_MAX_BYTES / size)) : 1));
  const zeroCopy = new ZeroCopyPolicy(job.zeroCopy, (family) => sockets.get(family)!.fd);
  const policy = new WriteSendPolicy(zeroCopy, tally);
  const outcome = (fatal?: string): WriteOutcome => {
    // Sends that did go out may still hold the caller's pages: wait for them, even after a failure.
    const zc = zeroCopy.report(zeroCopy.awaitCompletions());
    const { sentPackets, sentBytes, errors, lastError, sendCalls, gsoMessages } = tally;
    return {
      packets,
      sentPackets,
      sentBytes,
      errors,
      lastError,
      sendCalls,
      gsoMessages,
      ...(zc ? { zeroCopy: zc } : {}),
      elapsedMs: performance.now() - t0,
      ...(fatal === undefined ? {} : { fatal }),
    };
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
    // Messages queued per family, in plan order.
    const next = new Float64Array(n);
    const queue = new Map<4 | 6, WriteMessage[]>([...sockets.keys()].map((f) => [f, []]));
    const flush = (family: 4 | 6, all: boolean): void => {
      const q = queue.get(family)!;
      while (q.length >= MAX_BATCH || (all && q.length > 0)) {
        vector.clear();
        const batch = q.splice(0, MAX_BATCH);
        for (const m of batch) {
          vector.begin(names.address + m.entry * SOCKADDR_SIZE, nameLen[m.entry]!, m.count > 1 ? size : 0);
          vector.addIov(job.address[m.entry]! + m.offset, m.bytes);
        }
        policy.batch = batch;
        policy.family = family;
        sendAll(vector, sockets.get(family)!.fd, policy);
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
    return outcome();
  } catch (err) {
    return outcome(err instanceof Error ? err.message : String(err));
  } finally {
    for (const s of sockets.values()) s.close();
  }
}

/**
 * How a write's batch goes (sys/batch-send.ts runs the loop): runs of
 * messages that all want MSG_ZEROCOPY or all do not, per-entry counters,
 * a full socket waited for (failing the write after 10 s without
 * progress), zerocopy's own ENOBUFS left to the ZeroCopyPolicy, and every
 * other refusal counted against its entry.
 */
class WriteSendPolicy implements BatchSendPolicy {
  /** The batch in `vector` and its address family (set before each sendAll). */
  batch: readonly WriteMessage[] = [];
  family: 4 | 6 = 4;
  readonly #zeroCopy: ZeroCopyPolicy;
  readonly #tally: WriteTally;
  /** The zerocopy tracker of the run being sent (undefined: it copies). */
  #tracker: ZeroCopyCompletions | undefined;
  #stallAt = 0;

  constructor(zeroCopy: ZeroCopyPolicy, tally: WriteTally) {
    this.#zeroCopy = zeroCopy;
    this.#tally = tally;
  }

  begin(): void {
    this.#stallAt = performance.now() + STALL_MS;
  }

  planRun(at: number, end: number, run: SendRun): void {
    // sendmmsg's flags cover the whole call: send the run of messages
    // from `at` that all want MSG_ZEROCOPY, or all do not.
    const batch = this.batch;
    const zero = this.#zeroCopy.wants(batch[at]!.bytes);
    let until = at + 1;
    while (until < end && this.#zeroCopy.wants(batch[until]!.bytes) === zero) until++;
    this.#tracker = zero ? this.#zeroCopy.trackerFor(this.family) : undefined;
    run.until = until;
    run.flags = this.#tracker ? MSG_ZEROCOPY : 0;
  }

  onCall(): void {
    this.#tally.sendCalls++;
  }

  onSent(at: number, count: number): void {
    const tally = this.#tally;
    for (let k = at; k < at + count; k++) {
      const m = this.batch[k]!;
      tally.sentPackets[m.entry] = tally.sentPackets[m.entry]! + m.count;
      tally.sentBytes[m.entry] = tally.sentBytes[m.entry]! + m.bytes;
      if (m.count > 1) tally.gsoMessages++;
    }
    this.#stallAt = performance.now() + STALL_MS;
    const tracker = this.#tracker;
    if (tracker) {
      tracker.sends += count;
      // Reading completions as they come keeps the error queue (and
      // the optmem it is charged to) short.
      tracker.drain();
    }
  }

  onFull(_at: number, errno: number): 'retry' | 'drop' {
    const tracker = this.#tracker;
    if (errno === EAGAIN) {
      if (performance.now() > this.#stallAt) throw new Error('sendmmsg: EAGAIN for 10 s, the socket buffer never drained');
      tracker?.drain();
      sleep(0.2);
      return 'retry';
    }
    // ENOBUFS: zerocopy's own limits when zerocopy was asked for; a refusal like any other when copying.
    if (!tracker) return 'drop';
    this.#zeroCopy.onNoBuffers(this.family, tracker, this.#stallAt);
    return 'retry';
  }

  onRefused(at: number, errno: number): void {
    const m = this.batch[at]!;
    this.#tally.errors[m.entry] = this.#tally.errors[m.entry]! + m.count;
    this.#tally.lastError[m.entry] = errnoName(errno);
  }
}
