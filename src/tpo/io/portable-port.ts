/** The portable datagram port: node:dgram, one send() and one 'message' event per datagram (see port.ts for the contract). */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { handOver, newPortStats, reportPortError, type DatagramPort, type DatagramTarget, type OpenDatagramPortOptions } from './port.js';

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
      this.stats.receiveBatches++;
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
