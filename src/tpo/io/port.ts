/**
 * The datagram port contract: what the TPO peer link and data mover send and
 * receive through, its counters, and the helpers both implementations share
 * (portable-port.ts on node:dgram, batched-port.ts on recvmmsg/sendmmsg).
 * datagram-port.ts opens one.
 */
import type { EventEmitter } from 'node:events';

/** Where a datagram goes. */
export interface DatagramTarget {
  readonly address: string;
  readonly port: number;
}

/** Where a datagram came from (the shape of node:dgram's RemoteInfo, minus size). */
export interface DatagramSource {
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

/**
 * `receivedAt`: when the datagram was taken from the socket, in this
 * thread's performance.now() milliseconds. The batched port's receive
 * thread stamps each batch as it reads it, so the time a batch waits for
 * this thread's event loop (milliseconds on a busy host) is not counted in
 * the data mover's RTT samples; the portable port stamps on delivery.
 */
export type DatagramListener = (msg: Buffer, from: DatagramSource, receivedAt: number) => void;

export interface DatagramPortStats {
  datagramsSent: number;
  bytesSent: number;
  datagramsReceived: number;
  bytesReceived: number;
  /** Calls into the kernel to send: one per datagram (portable), one sendmmsg per flush (batched). */
  sendCalls: number;
  /** Batched: GSO messages sent and the datagrams they carried. */
  gsoMessages: number;
  gsoSegments: number;
  /** Batches handed over by the batched port's receive worker (portable: one per datagram), and GRO buffers among what it read. */
  receiveBatches: number;
  groBuffers: number;
  /** Datagrams not sent: socket buffer full (EAGAIN/ENOBUFS), another send error, or sent after close. */
  dropped: { queueFull: number; sendError: number; closed: number };
  /** errno name (or message) of the last send error, if any. */
  lastSendError: string | undefined;
  /**
   * Datagrams received but not handed over whole: no readable source
   * address (batched), longer than a receive slot (batched), or a 'message'
   * listener threw while handling it (a bug, counted and reported once as a
   * process warning instead of ending the process: every listening socket
   * is a target for hostile input).
   */
  receiveDropped: { unknownSource: number; truncated: number; listenerError: number };
  /** The last listener error's message, if any. */
  lastListenerError: string | undefined;
}

export interface DatagramPort {
  readonly kind: 'batched' | 'portable';
  /** Set when 'auto' fell back to portable: why batched was not used. */
  readonly fallbackReason: string | undefined;
  readonly stats: DatagramPortStats;
  /** Queues one datagram to `to`. Never throws for network conditions (see stats.dropped). */
  send(datagram: Uint8Array, to: DatagramTarget): void;
  /**
   * send() copies the datagram before it returns (the batched port stages
   * it): the caller may then hand over a view of a scratch buffer it reuses
   * (the data mover's sealed datagrams). Absent or false: the port keeps
   * the caller's buffer (node:dgram sends it later).
   */
  readonly copiesOnSend?: boolean;
  /** Batched: sends what is queued now instead of at the end of the task; portable: no-op. */
  flush(): void;
  /** `msg` may be a view into a larger buffer shared with the batch's other datagrams; copy it to keep it beyond the data it holds. */
  on(event: 'message', listener: DatagramListener): this;
  /** A receive failure the port cannot recover from (the receive worker died), as a SyscallError or SluiceError. */
  on(event: 'error', listener: (err: Error) => void): this;
  off(event: 'message', listener: DatagramListener): this;
  off(event: 'error', listener: (err: Error) => void): this;
  address(): { address: string; port: number; family: 'IPv4' | 'IPv6' };
  close(): Promise<void>;
}

export interface OpenDatagramPortOptions {
  readonly family?: 4 | 6;
  readonly bind: { readonly address: string; readonly port: number };
  /** Default 'auto': batched where it works, else portable. */
  readonly io?: 'auto' | 'batched' | 'portable';
  /** SO_RCVBUF/SO_SNDBUF request, bytes (default: the kernel's). */
  readonly socketBufferBytes?: number;
  /** SO_MARK on the socket (needs CAP_NET_ADMIN): transparent interception leaves marked packets alone. */
  readonly mark?: number;
}

export function newPortStats(): DatagramPortStats {
  return {
    datagramsSent: 0,
    bytesSent: 0,
    datagramsReceived: 0,
    bytesReceived: 0,
    sendCalls: 0,
    gsoMessages: 0,
    gsoSegments: 0,
    receiveBatches: 0,
    groBuffers: 0,
    dropped: { queueFull: 0, sendError: 0, closed: 0 },
    lastSendError: undefined,
    receiveDropped: { unknownSource: 0, truncated: 0, listenerError: 0 },
    lastListenerError: undefined,
  };
}

/**
 * Hands one received datagram to the port's 'message' listeners. A listener
 * that throws loses this datagram only: counted in `stats`, reported once
 * per port as a warning, and the port (and the process) keep running.
 */
export function handOver(port: EventEmitter & { readonly stats: DatagramPortStats }, msg: Buffer, from: DatagramSource, receivedAt = performance.now()): void {
  try {
    port.emit('message', msg, from, receivedAt);
  } catch (err) {
    const st = port.stats;
    st.receiveDropped.listenerError++;
    st.lastListenerError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (st.receiveDropped.listenerError === 1)
      process.emitWarning(`datagram port: a received datagram's handler failed, the datagram was dropped (${st.lastListenerError})`, {
        code: 'SLUICE_DATAGRAM_HANDLER',
      });
  }
}

/**
 * Reports a port failure: an 'error' event for whoever listens, else a
 * process warning (an EventEmitter 'error' with no listener would throw
 * and end the process).
 */
export function reportPortError(port: EventEmitter, err: Error): void {
  if (port.listenerCount('error') > 0) port.emit('error', err);
  else process.emitWarning(`datagram port: ${err.message}`, { code: 'SLUICE_DATAGRAM_PORT' });
}
