/**
 * What the transparent interceptor (tproxy-interceptor.ts) and its UDP
 * receive thread (udp-worker.ts) exchange over a src/worker channel: the
 * start data, and one 'batch' notification per wake-up. The thread takes
 * no requests; the eventfd in its start data is its stop signal (close()
 * signals it). Structured-clone data; each datagram's buffer is
 * transferred, not copied.
 */
import type { Endpoint } from '../../wire/endpoint.js';

export interface UdpWorkerData {
  /** Listener descriptors (owned by the main thread, which closes them after the worker ends). */
  readonly fds: readonly number[];
  /** Each listener's bound address: the destination reported if a cmsg is missing. */
  readonly bound: readonly Endpoint[];
  /** eventfd the main thread signals to stop the thread. */
  readonly wakeFd: number;
}

/** One datagram as a listener received it. */
export interface UdpWorkerDatagram {
  /** The listener's index in `fds`. */
  readonly i: number;
  readonly src: Endpoint;
  /** The destination the client sent to (IP_ORIGDSTADDR), or the listener's own address. */
  readonly dst: Endpoint;
  readonly data: Uint8Array;
}

/** The receive thread takes no requests: the eventfd ends it. */
export type UdpWorkerRequests = Record<never, never>;

export interface UdpWorkerNotifications {
  /** One wake-up's datagrams, posted together: one message per batch, not per datagram. */
  batch: readonly UdpWorkerDatagram[];
}
