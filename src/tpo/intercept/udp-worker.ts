/**
 * Worker thread that receives the TPROXY'd datagrams. Why a worker: Node's
 * event loop cannot watch a descriptor it did not create, and the listener
 * must be created through FFI (IP_TRANSPARENT); so one thread blocks in
 * ppoll on the listeners plus an eventfd (the stop signal), reads what is
 * ready with recvmsg and posts each datagram to the main thread. Nothing
 * spins and no datagram waits for a timer. Replies need no thread: a
 * non-blocking sendto from the main thread completes at once.
 *
 * Protocol: workerData {fds, dsts, wakeFd}; posts {i, src, dst, data}
 * (data's buffer transferred) and {error} once before exiting on a failure.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Endpoint } from '../../wire/endpoint.js';
import { Poller, Waker } from '../../sys/poller.js';
import { DatagramReader } from '../../sys/transparent-udp.js';
import { SyscallError } from '../../errors.js';

export interface UdpWorkerData {
  /** Listener descriptors (owned by the main thread, which closes them after the worker ends). */
  readonly fds: readonly number[];
  /** Each listener's bound address: the destination reported if a cmsg is missing. */
  readonly bound: readonly Endpoint[];
  readonly wakeFd: number;
}

/** One wake-up's datagrams, posted together (their buffers transferred): one message per batch, not per datagram. */
export interface UdpWorkerBatch {
  readonly batch: readonly UdpWorkerMessage[];
}

export interface UdpWorkerMessage {
  readonly i: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly data: Uint8Array;
}

/** Datagrams read from one socket per wake-up before the others get a turn. */
const BURST = 64;
/** ppoll timeout: only a safety net, the eventfd ends the wait at once. */
const WAIT_NS = 1e9;

if (!parentPort) throw new Error('udp-worker must run in a worker thread');
const port = parentPort;
const data = workerData as UdpWorkerData;
const waker = new Waker(data.wakeFd);
const poller = new Poller();
poller.set([...data.fds, data.wakeFd]);
const reader = new DatagramReader();
let stop = false;
try {
  // Runs until the main thread signals the eventfd; each iteration blocks in ppoll.
  while (!stop) {
    if (poller.wait(WAIT_NS) === 0) continue;
    if (poller.revents(data.fds.length) !== 0) {
      waker.drain();
      stop = true;
      break;
    }
    const batch: UdpWorkerMessage[] = [];
    const transfer: ArrayBuffer[] = [];
    for (let i = 0; i < data.fds.length; i++) {
      if (poller.revents(i) === 0) continue;
      for (let n = 0; n < BURST; n++) {
        const d = reader.receive(data.fds[i]!, data.bound[i]!);
        if (!d) break;
        batch.push({ i, src: d.src, dst: d.dst, data: d.data });
        transfer.push(d.data.buffer as ArrayBuffer);
      }
    }
    if (batch.length) port.postMessage({ batch } satisfies UdpWorkerBatch, transfer);
  }
} catch (err) {
  const e = err as Error;
  port.postMessage({ error: { message: e.message, ...(err instanceof SyscallError ? { op: err.op, errno: err.errno } : {}) } });
}
