/**
 * Explicit interception (issue #7): a local listener per table entry —
 * TCP server or UDP socket on the entry's `listen` address — whose clients
 * are carried to the entry's `target`. No root needed and no change to the
 * host's packet path; the applications are pointed at the listener.
 *
 * Only clients the entry allows are carried (its src prefix and source
 * ports): anyone else is refused (TCP) or dropped (UDP), and counted, so
 * a listener on an open address is not an open relay.
 *
 * Every accepted connection has an owner from its first moment: the
 * consumer ('tcp' listener, the gateway) is attached before `listen()`
 * opens the sockets, a connection that finds none is reset (never left
 * paused in a socket nobody reads), and `close()` destroys whatever is
 * still open, so it never waits for a client.
 */
import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import { unmapAddress, type Endpoint } from '../../wire/endpoint.js';
import { fromNodeError } from '../../errors.js';
import type { TableEntry } from '../config/config.js';
import { InterceptTable } from '../config/intercept-rules.js';
import { resetSocket, type HostPort, type Interception, type TcpIntercepted, type UdpIntercepted } from './interception.js';

export class ExplicitInterception extends EventEmitter implements Interception {
  readonly stats = { refused: 0, errors: 0 };
  readonly #entries: TableEntry[];
  readonly #servers: { entry: TableEntry; server: net.Server | dgram.Socket }[] = [];
  /** Accepted connections not yet closed: close() destroys them (a server's close waits for its connections). */
  readonly #sockets = new Set<net.Socket>();
  #closed = false;
  #listening = false;

  /** Nothing listens until listen(): attach the consumer first. */
  constructor(entries: readonly TableEntry[]) {
    super();
    this.#entries = [...entries];
  }

  /** Constructs and listens at once (a consumer attached later misses, and resets, what arrives in between). */
  static async start(entries: readonly TableEntry[]): Promise<ExplicitInterception> {
    const ic = new ExplicitInterception(entries);
    await ic.listen();
    return ic;
  }

  async listen(): Promise<void> {
    try {
      for (const e of this.#entries) await this.#listenNamed(e);
    } catch (err) {
      await this.close();
      throw err;
    }
    this.#listening = true;
  }

  /**
   * A new entry at run time: its listener opens now (after listen(); before
   * it, with the others). A listener that cannot open (EADDRINUSE, ...)
   * rejects with a SyscallError naming the entry, and the entry is not added.
   */
  async addEntry(entry: TableEntry): Promise<void> {
    if (this.#closed) throw new Error('the interception is closed');
    if (this.#listening) await this.#listenNamed(entry);
    this.#entries.push(entry);
  }

  /**
   * Stops the entry's listener: no new client is taken. Connections it
   * accepted are the gateway's flows and go on (they are reset only by
   * close()); a UDP entry's socket closes, so its flows' replies have no
   * way back (the gateway ends them). False: no entry of that name.
   */
  async removeEntry(name: string): Promise<boolean> {
    const i = this.#entries.findIndex((e) => e.name === name);
    if (i < 0) return false;
    this.#entries.splice(i, 1);
    const at = this.#servers.findIndex((s) => s.entry.name === name);
    if (at >= 0) {
      const { server } = this.#servers.splice(at, 1)[0]!;
      // A server's close callback waits for its connections, which stay the gateway's: only the listening socket goes.
      server.close();
      // The descriptor is closed on the loop's next turn: the address is free when this resolves.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return true;
  }

  async #listenNamed(e: TableEntry): Promise<void> {
    try {
      await this.#listen(e);
    } catch (err) {
      // EADDRINUSE, EADDRNOTAVAIL, EACCES: a typed error naming the entry and address, not a stack trace.
      throw fromNodeError(`listen (${e.protocol})`, err, `table entry ${e.name} on ${e.listen ? hostPort(e.listen) : '?'}`);
    }
  }

  async #listen(entry: TableEntry): Promise<void> {
    const listen = entry.listen!;
    const target = entry.target!;
    const dst: HostPort = { address: target.address, port: target.port };
    // The entry's own source constraints (src prefix, source ports) decide who may use it.
    const allowed = new InterceptTable([entry]);
    if (entry.protocol === 'tcp') {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
        const src = { address: unmapAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
        if (this.#closed || !allowed.lookup({ protocol: 'tcp', src: src.address, srcPort: src.port, dst: dst.address, dstPort: dst.port })) {
          this.stats.refused++;
          resetSocket(socket);
          return;
        }
        // No consumer (none attached, or it went): a reset now, not a connection that waits forever.
        if (!this.emit('tcp', { socket, entry, src, dst } satisfies TcpIntercepted)) {
          this.stats.refused++;
          resetSocket(socket);
        }
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
        if (!this.emit('udp', { entry, src, dst, data, reply } satisfies UdpIntercepted)) this.stats.refused++;
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

  /** Stops listening and resets every connection still open (the gateway has ended its flows by then). */
  async close(): Promise<void> {
    this.#closed = true;
    // net.Server and dgram.Socket both take a close callback; a server's comes once its connections are gone.
    const closed = Promise.all(this.#servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const s of this.#sockets) resetSocket(s);
    this.#sockets.clear();
    await closed;
    this.#servers.length = 0;
  }
}

function hostPort(e: Endpoint): string {
  return e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
