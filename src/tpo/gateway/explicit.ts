/**
 * Explicit interception (issue #7): a local listener per table entry —
 * TCP server or UDP socket on the entry's `listen` address — whose clients
 * are carried to the entry's `target`. No root needed and no change to the
 * host's packet path; the applications are pointed at the listener.
 *
 * Only clients the entry allows are carried (its src prefix and source
 * ports): anyone else is refused (TCP) or dropped (UDP), and counted, so
 * a listener on an open address is not an open relay.
 */
import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import { unmapAddress } from '../../policy/endpoint.js';
import type { TableEntry } from '../config.js';
import { FlowTable, type FlowEntry } from '../flow-table.js';
import type { HostPort } from './flow.js';

export interface TcpIntercepted {
  readonly socket: net.Socket;
  readonly entry: FlowEntry;
  readonly src: HostPort;
  readonly dst: HostPort;
}

export interface UdpIntercepted {
  readonly entry: FlowEntry;
  readonly src: HostPort;
  readonly dst: HostPort;
  readonly data: Uint8Array;
  /** Sends a datagram back to the client, from the address it sent to. */
  readonly reply: (data: Uint8Array) => void;
}

/** What the gateway needs from any interception mode. */
export interface Interception extends EventEmitter {
  on(event: 'tcp', listener: (c: TcpIntercepted) => void): this;
  on(event: 'udp', listener: (d: UdpIntercepted) => void): this;
  /** `refused`: clients not carried; `errors`: socket errors counted (a failed accept, an ICMP error for a reply). */
  readonly stats: { refused: number; errors?: number };
  /** Where each entry listens (explicit mode), for status and tests. */
  listenAddresses(): { entry: string; protocol: string; address: string; port: number }[];
  close(): Promise<void>;
}

export class ExplicitInterception extends EventEmitter implements Interception {
  readonly stats = { refused: 0, errors: 0 };
  readonly #servers: { entry: TableEntry; server: net.Server | dgram.Socket }[] = [];

  private constructor() {
    super();
  }

  static async start(entries: readonly TableEntry[]): Promise<ExplicitInterception> {
    const ic = new ExplicitInterception();
    try {
      for (const e of entries) await ic.#listen(e);
    } catch (err) {
      await ic.close();
      throw err;
    }
    return ic;
  }

  async #listen(entry: TableEntry): Promise<void> {
    const listen = entry.listen!;
    const target = entry.target!;
    const dst: HostPort = { address: target.address, port: target.port };
    // The entry's own source constraints (src prefix, source ports) decide who may use it.
    const allowed = new FlowTable([entry]);
    if (entry.protocol === 'tcp') {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
        const src = { address: unmapAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
        if (!allowed.lookup({ protocol: 'tcp', src: src.address, srcPort: src.port, dst: dst.address, dstPort: dst.port })) {
          this.stats.refused++;
          socket.destroy();
          return;
        }
        this.emit('tcp', { socket, entry, src, dst } satisfies TcpIntercepted);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.address, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // After listen, 'error' reports a failed accept (EMFILE when descriptors run out): counted, the listener stays.
      server.on('error', () => this.stats.errors++);
      this.#servers.push({ entry, server });
    } else if (entry.protocol === 'udp') {
      const sock = dgram.createSocket({ type: listen.family === 6 ? 'udp6' : 'udp4', reuseAddr: false });
      sock.on('message', (data, rinfo) => {
        const src = { address: unmapAddress(rinfo.address), port: rinfo.port };
        if (!allowed.lookup({ protocol: 'udp', src: src.address, srcPort: src.port, dst: dst.address, dstPort: dst.port })) {
          this.stats.refused++;
          return;
        }
        const reply = (d: Uint8Array) => sock.send(d, rinfo.port, rinfo.address);
        this.emit('udp', { entry, src, dst, data, reply } satisfies UdpIntercepted);
      });
      // Late socket errors (e.g. ICMP for a reply) must not take the gateway down.
      sock.on('error', () => this.stats.errors++);
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(listen.port, listen.address, () => {
          sock.off('error', reject);
          resolve();
        });
      });
      // Bursts from many clients must not overflow the default (~200 KiB) receive buffer while the loop is busy.
      try {
        sock.setRecvBufferSize(4 << 20);
      } catch {
        // Capped by net.core.rmem_max: the listener works, with more drops under bursts.
      }
      this.#servers.push({ entry, server: sock });
    } else {
      throw new Error(`table entry ${entry.name}: ICMP cannot be intercepted explicitly`);
    }
  }

  listenAddresses(): { entry: string; protocol: string; address: string; port: number }[] {
    return this.#servers.map(({ entry, server }) => {
      const a = server.address() as net.AddressInfo;
      return { entry: entry.name, protocol: entry.protocol, address: a.address, port: a.port };
    });
  }

  async close(): Promise<void> {
    // net.Server and dgram.Socket both take a close callback.
    await Promise.all(this.#servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    this.#servers.length = 0;
  }
}
