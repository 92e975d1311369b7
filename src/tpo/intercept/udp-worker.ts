/**
 * Worker thread that receives the TPROXY'd datagrams. Why a worker: Node's
 * event loop cannot watch a descriptor it did not create, and the listener
 * must be created through FFI (IP_TRANSPARENT); so one thread blocks in
 * ppoll on the listeners plus an eventfd (the stop signal), reads what is
 * ready with recvmsg and posts each wake-up's datagrams to the main thread
 * as one 'batch' notification (udp-worker-protocol.ts). Nothing spins and
 * no datagram waits for a timer. Replies need no thread: a non-blocking
 * sendto from the main thread completes at once.
 *
 * It says 'ready' once it polls, and never closes the listeners: the main
 * thread owns them and closes them after this thread has exited. A failure
 * ends the loop and is posted as a fatal fault (runWorker).
 */
import { runWorker, type WorkerPort } from '../../worker/port.js';
import { Poller, Waker } from '../../sys/poller.js';
import { DatagramReader } from '../../sys/transparent-udp.js';
import type { UdpWorkerData, UdpWorkerDatagram, UdpWorkerNotifications, UdpWorkerRequests } from './udp-worker-protocol.js';

/** Datagrams read from one socket per wake-up before the others get a turn. */
const BURST = 64;
/** ppoll timeout: only a safety net, the eventfd ends the wait at once. */
const WAIT_NS = 1e9;

runWorker(run);

function run(port: WorkerPort<UdpWorkerRequests, UdpWorkerNotifications, UdpWorkerData>): void {
  const data = port.data;
  const waker = new Waker(data.wakeFd);
  const poller = new Poller();
  poller.set([...data.fds, data.wakeFd]);
  const reader = new DatagramReader();
  port.ready();
  // Runs until the main thread signals the eventfd; each iteration blocks in ppoll.
  for (;;) {
    if (poller.wait(WAIT_NS) === 0) continue;
    if (poller.revents(data.fds.length) !== 0) {
      waker.drain();
      return;
    }
    const batch: UdpWorkerDatagram[] = [];
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
    if (batch.length) port.notify('batch', batch, transfer);
  }
}
