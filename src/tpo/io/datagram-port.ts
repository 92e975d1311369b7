/**
 * A datagram port: what the TPO peer link and data mover send and receive
 * through (issue #6, "use the batched tier's I/O"). Two implementations:
 *
 * - portable: node:dgram, one send() and one 'message' event per datagram
 *   (what peer-link.ts did before; works everywhere).
 * - batched (batched-port.ts): the batched tier's FFI pieces. Sends made
 *   during one JS task are collected and leave in one sendmmsg, runs of
 *   equal-size datagrams to one destination as one UDP GSO message;
 *   receiving is recvmmsg (with UDP GRO) in a worker thread that hands
 *   whole batches to this thread.
 *
 * `openDatagramPort({ io: 'auto' })` picks batched when the probe says the
 * FFI and recvmmsg/sendmmsg work, and portable otherwise, keeping the
 * reason in `fallbackReason`.
 *
 * Sending never throws for what the network does (a full socket buffer, an
 * unreachable destination): UDP is lossy and the data mover retransmits,
 * so such datagrams are dropped and counted in `stats`. Setup failures
 * (socket, bind, a worker that cannot start) reject openDatagramPort with
 * a SyscallError or SluiceError.
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { probeBatchedIo } from '../../sys/probe.js';
import { NotSupportedError, SyscallError } from '../../errors.js';

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

export type DatagramListener = (msg: Buffer, from: DatagramSource) => void;

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
  /** Batched: batches handed over by the receive worker, and GRO buffers among what it read. */
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
export function handOver(port: EventEmitter & { readonly stats: DatagramPortStats }, msg: Buffer, from: DatagramSource): void {
  try {
    port.emit('message', msg, from);
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

/**
 * Opens a port bound to `bind`. 'batched' throws NotSupportedError where
 * the batched I/O is unavailable; 'auto' then falls back to portable (and
 * also when starting the batched port fails for a reason other than the
 * address, e.g. the worker cannot start), with the reason in fallbackReason.
 */
export async function openDatagramPort(options: OpenDatagramPortOptions): Promise<DatagramPort> {
  const io = options.io ?? 'auto';
  if (io === 'portable') return PortableDatagramPort.open(options, undefined);
  const probe = probeBatchedIo();
  if (!probe.available) {
    if (io === 'batched') throw new NotSupportedError('batched datagram I/O is unavailable', probe.reason);
    return PortableDatagramPort.open(options, probe.reason);
  }
  // Imported lazily so a portable-only process never loads the FFI module.
  const { BatchedDatagramPort } = await import('./batched-port.js');
  if (io === 'batched') return BatchedDatagramPort.open(options, probe);
  try {
    return await BatchedDatagramPort.open(options, probe);
  } catch (e) {
    // The address is the caller's problem on either kind; anything else (the thread, eventfd) is the batched kind's.
    if (e instanceof SyscallError && e.op === 'bind') throw e;
    return PortableDatagramPort.open(options, `batched port failed to start: ${(e as Error).message}`);
  }
}

/** node:dgram, one syscall per datagram: the fallback and the baseline. */
export class PortableDatagramPort extends EventEmitter implements DatagramPort {
  readonly kind = 'portable' as const;
  readonly fallbackReason: string | undefined;
  readonly stats = newPortStats();
  readonly #socket: dgram.Socket;
  #closed = false;
  readonly #onSent = (err: Error | null) => {
    if (!err) return;
    // dgram reports a failed send asynchronously; counted like the batched port's, never thrown.
    this.stats.dropped.sendError++;
    this.stats.lastSendError = (err as NodeJS.ErrnoException).code ?? err.message;
  };

  /** The socket's receive buffer as the kernel reports it (double the usable bytes). */
  get receiveBufferBytes(): number {
    return this.#socket.getRecvBufferSize();
  }

  private constructor(socket: dgram.Socket, fallbackReason: string | undefined) {
    super();
    this.#socket = socket;
    this.fallbackReason = fallbackReason;
    socket.on('message', (msg, rinfo) => {
      this.stats.datagramsReceived++;
      this.stats.bytesReceived += msg.length;
      handOver(this, msg, { address: rinfo.address, port: rinfo.port, family: rinfo.family === 'IPv6' ? 'IPv6' : 'IPv4' });
    });
    socket.on('error', (err) => reportPortError(this, err));
  }

  static async open(options: OpenDatagramPortOptions, fallbackReason: string | undefined): Promise<PortableDatagramPort> {
    const socket = dgram.createSocket((options.family ?? 4) === 4 ? 'udp4' : 'udp6');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(options.bind.port, options.bind.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    if (options.socketBufferBytes) {
      socket.setRecvBufferSize(options.socketBufferBytes);
      socket.setSendBufferSize(options.socketBufferBytes);
      // As the batched port does: beyond rmem_max where allowed (root), else the capped size.
      try {
        const { forceDgramBuffers } = await import('../../sys/socket-options.js');
        forceDgramBuffers(socket, options.socketBufferBytes);
      } catch {
        /* no FFI here (not Linux) or no descriptor: the capped size stays */
      }
    }
    if (options.mark) {
      const { markDgramSocket } = await import('../../sys/socket-options.js');
      try {
        markDgramSocket(socket, options.mark);
      } catch (err) {
        socket.close();
        throw err;
      }
    }
    return new PortableDatagramPort(socket, fallbackReason);
  }

  send(datagram: Uint8Array, to: DatagramTarget): void {
    if (this.#closed) {
      this.stats.dropped.closed++;
      return;
    }
    this.stats.datagramsSent++;
    this.stats.bytesSent += datagram.length;
    this.stats.sendCalls++;
    this.#socket.send(datagram, to.port, to.address, this.#onSent);
  }

  flush(): void {
    // Every send already went to libuv.
  }

  address(): { address: string; port: number; family: 'IPv4' | 'IPv6' } {
    const a = this.#socket.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4' };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // node:dgram resolves the address of a send before it hands it to the
    // kernel (a later tick): closing at once lost what was sent just before,
    // such as a stopping gateway's goodbye. One turn of the loop lets them go.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}
