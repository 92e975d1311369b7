/**
 * The batched datagram port's receive thread (batched-port.ts). Node has
 * no readiness callback for a descriptor it did not open, so this thread
 * blocks in ppoll on the port's socket and a wake-up eventfd, reads what is
 * waiting with recvmmsg (GRO buffers split back into datagrams), and posts
 * each batch to the application thread as one transferable ArrayBuffer
 * plus an Int32Array of [length, source id] pairs. Sources get small ids
 * that stay valid across batches, so an address is sent (and decoded) once
 * rather than per datagram; the table restarts only between batches
 * (batched-port-protocol.ts).
 *
 * It never sends and never closes the socket: the application thread owns
 * the descriptor and closes it after this thread has exited. A failure
 * ends the loop and is posted as a fatal fault (runWorker).
 */
import { runWorker, type WorkerPort } from '../../worker/port.js';
import { Poller, Waker } from '../../sys/poller.js';
import { RecvRing, SLOT_SIZE } from '../../sys/recv-ring.js';
import { POLLERR, POLLIN } from '../../sys/constants.js';
import { SourceIdTable, type PortBatch, type PortNotifications, type PortRequests, type PortWorkerData } from './batched-port-protocol.js';
import { uninitializedBytes } from '../../wire/bytes.js';

/** Upper bound on one ppoll: a missed wake-up still ends the thread within this. */
const MAX_WAIT_NS = 100_000_000;
/** recvmmsg calls per wake-up before looking at the stop flag again. */
const ROUNDS_PER_WAKE = 16;

runWorker(run);

function run(port: WorkerPort<PortRequests, PortNotifications, PortWorkerData>): void {
  const data = port.data;
  const waker = new Waker(data.wakeFd);
  const poller = new Poller();
  poller.set([data.wakeFd, data.fd]);
  const ring = new RecvRing(data.batch, data.batch);
  const stop = data.stop;
  const sources = new SourceIdTable();
  const idOf = new Int32Array(data.batch);

  port.ready();
  while (Atomics.load(stop, 0) === 0) {
    poller.wait(MAX_WAIT_NS);
    if (poller.revents(0) & POLLIN) waker.drain();
    if (Atomics.load(stop, 0) !== 0) break;
    if ((poller.revents(1) & (POLLIN | POLLERR)) === 0) continue;
    for (let round = 0; round < ROUNDS_PER_WAKE; round++) {
      const n = ring.receive(data.fd, data.batch, data.gro);
      if (n === 0) break;
      const receivedAtEpochMs = performance.timeOrigin + performance.now();
      // The table restarts here if it must, before any id of this batch is handed out.
      sources.beginBatch(n);
      // First pass: sources and sizes, so the batch is one exactly-sized buffer.
      let bytes = 0;
      let datagrams = 0;
      let groBuffers = 0;
      let truncated = 0;
      let unknownSources = 0;
      const meta = ring.metaBytes;
      for (let j = 0; j < n; j++) {
        idOf[j] = -1;
        if (ring.truncated(j)) {
          truncated++;
          continue;
        }
        const id = sources.idOf(meta, ring.nameOffset(ring.slotOf(j)));
        if (id < 0) {
          unknownSources++;
          continue;
        }
        idOf[j] = id;
        const len = ring.lengthOf(j);
        const seg = data.gro ? ring.groSegment(j) : 0;
        bytes += len;
        if (seg > 0 && seg < len) {
          datagrams += Math.ceil(len / seg);
          groBuffers++;
        } else datagrams++;
      }
      // Every byte is copied in below: no zero-fill first.
      const out = uninitializedBytes(bytes);
      const pairs = new Int32Array(2 * datagrams);
      const src = ring.data.bytes;
      let at = 0;
      let k = 0;
      for (let j = 0; j < n; j++) {
        const slot = ring.slotOf(j);
        const id = idOf[j]!;
        if (id >= 0) {
          const len = ring.lengthOf(j);
          const seg = data.gro ? ring.groSegment(j) : 0;
          out.set(src.subarray(slot * SLOT_SIZE, slot * SLOT_SIZE + len), at);
          at += len;
          // A GRO buffer holds equal segments, the last possibly shorter.
          const step = seg > 0 && seg < len ? seg : len;
          for (let o = 0; o < len; o += step) {
            pairs[k++] = Math.min(step, len - o);
            pairs[k++] = id;
          }
          if (len === 0) {
            pairs[k++] = 0;
            pairs[k++] = id;
          }
        }
        ring.release(slot);
      }
      const batch: PortBatch = { data: out.buffer, pairs, groBuffers, truncated, unknownSources, receivedAtEpochMs };
      sources.finish(batch);
      port.notify('batch', batch, [out.buffer, pairs.buffer as ArrayBuffer]);
      if (n < data.batch) break;
    }
  }
}
