/**
 * The send worker's write job (Sluice.write, the stream scheduler): the
 * caller's buffers go out as they are, destinations taking turns of `burst`
 * packets, a run of packets to one destination as one UDP GSO message, up
 * to MAX_BATCH messages per sendmmsg. Zerocopy is zero-copy-policy.ts's
 * call. The main thread holds the buffers until the outcome is posted.
 */
import { RawUdpSocket } from '../sys/udp-socket.js';
import { NativeRegion } from '../sys/memory.js';
import { writeSockaddr } from '../sys/sockaddr.js';
import { EAGAIN, ENOBUFS, errnoName } from '../sys/errno.js';
import { MSG_ZEROCOPY, SIZEOF_SOCKADDR_IN6 as SOCKADDR_SIZE } from '../sys/constants.js';
import { GSO_MAX_BYTES, MAX_BATCH, sleep, vector } from './send-worker-shared.js';
import { ZeroCopyPolicy } from './zero-copy-policy.js';
import type { WriteJob, WriteOutcome } from './send-protocol.js';

/** A write that makes no progress for this long (socket buffer never drains) fails. */
const STALL_MS = 10_000;

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
export function runWrite(job: WriteJob): WriteOutcome {
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
  const zc = new ZeroCopyPolicy(job.zeroCopy, sockets);
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
          const zero = zc.wants(batch[at]!.bytes);
          let end = at + 1;
          while (end < batch.length && zc.wants(batch[end]!.bytes) === zero) end++;
          const tracker = zero ? zc.trackerFor(family) : undefined;
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
            sleep(0.2);
          } else if (tracker && -r === ENOBUFS) {
            // Zerocopy's own limits: wait for completions, or copy from here on.
            zc.onNoBuffers(family, tracker, stallAt);
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
    const zeroCopy = zc.report(zc.awaitCompletions());
    return {
      id: job.id,
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
    const zeroCopy = zc.report(zc.awaitCompletions());
    return {
      id: job.id,
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
