/**
 * Transparent interception for the TPO source gateway (issue #7): Sluice
 * installs nf_tables rules that send the flow table's TCP and UDP flows to
 * its own listeners, reads each flow's original destination back, and
 * removes everything it added on close() and at the next start after a
 * crash. It installs no process handlers (only src/cli touches signals and
 * exit): an owner that may exit without close() calls
 * removeKernelStateSync() from its own 'exit' handler, as `sluice tpo`
 * does.
 *
 * Per TCP/UDP entry, one listener port (IPv4 and/or IPv6 sockets on the
 * same number): the entry a flow belongs to is the listener that got it,
 * which is exactly the kernel's first-match decision (see nftables.ts).
 *
 * Kernel state and its removal:
 *   - table `inet sluice_tpo_<instance>`, created with the owner flag on a
 *     netlink socket held open for the interceptor's life: the kernel
 *     deletes the table itself if the process dies, even by SIGKILL;
 *     close() deletes it explicitly first;
 *   - for UDP: `ip rule fwmark <tproxy mark> lookup <table>` and `local
 *     default dev lo table <table>` (IPv4 and IPv6). These have no owner,
 *     so a SIGKILL leaves them: the next start (or cleanupStale) deletes
 *     them before adding its own.
 *
 * ICMP entries cannot be intercepted this way (no ports for REDIRECT or
 * TPROXY, no socket to hand them to): start refuses them with a
 * NotSupportedError unless told to skip them.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { InterceptRule } from '../config/intercept-rules.js';
import type { Endpoint } from '../../wire/endpoint.js';
import { ConflictError, EngineError, EngineFailedError, NotSupportedError, SyscallError, SluiceError } from '../../errors.js';
import { NetlinkSocket } from '../../sys/netlink/socket.js';
import { NETLINK_NETFILTER, NETLINK_ROUTE } from '../../sys/constants.js';
import { addTproxyRouting, removeTproxyRouting, type TproxyRouting } from '../../sys/netlink/policy-routing.js';
import { Waker } from '../../sys/poller.js';
import type { RawUdpSocket } from '../../sys/udp-socket.js';
import { encodeInstall, planRules, tableName } from './nftables.js';
import { originalDst } from '../../sys/original-dst.js';
import { DatagramWriter, openTransparentUdp } from '../../sys/transparent-udp.js';
import { WorkerChannel } from '../../worker/channel.js';
import { workerEntry } from '../../worker/spawn.js';
import type { UdpWorkerData, UdpWorkerDatagram, UdpWorkerNotifications, UdpWorkerRequests } from './udp-worker-protocol.js';
import { cleanupStale, deleteTable, tproxyRoutingFor } from './tproxy-state.js';
import { openTcpListener, openUdpListeners, type TcpListener, type UdpListener } from './tproxy-listeners.js';

/** The UDP receive thread (udp-worker.ts), as its errors name it. */
const UDP_THREAD = "the transparent UDP receive thread ('sluice-tproxy-udp')";

type UdpChannel = WorkerChannel<UdpWorkerRequests, UdpWorkerNotifications>;

export interface TransparentOptions {
  readonly table: readonly InterceptRule[];
  /** Names the nf_tables table (`sluice_tpo_<instance>`): 1-32 of [a-z0-9_]. */
  readonly instance: string;
  /** prerouting: traffic routed through this host; output: traffic this host originates. */
  readonly hooks: { readonly prerouting: boolean; readonly output: boolean };
  /**
   * SO_MARK that Sluice's own sockets carry (its transport to the peer, the
   * destination gateway's connections, these UDP replies): packets with it
   * are never intercepted. Must be non-zero (0 is every unmarked packet).
   */
  readonly mark: number;
  /** Policy routing for TPROXY; defaults derived from the instance name (`tproxyRoutingFor`). */
  readonly tproxy?: Partial<TproxyRouting>;
  /**
   * ICMP entries: refuse to start (default), leave them out, or answer
   * their echo requests from this host ('answer': nf_tables redirect; the
   * kernel replies, from the pinged address).
   */
  readonly icmp?: 'error' | 'skip' | 'answer';
  /** Most reply sockets kept open (one per original destination); the least recently used closes first. Default 1024. */
  readonly maxReplySockets?: number;
}

export interface TcpInfo {
  readonly entry: InterceptRule;
  /** The client. */
  readonly src: Endpoint;
  /** The destination the client connected to (before REDIRECT). */
  readonly dst: Endpoint;
}

export interface InterceptedDatagram {
  readonly entry: InterceptRule;
  readonly src: Endpoint;
  /** The destination the client sent to (before TPROXY). */
  readonly dst: Endpoint;
  readonly data: Buffer;
}

export interface InterceptStats {
  tcpAccepted: number;
  /** Connections that reached a listener without having been redirected (no original destination). */
  tcpRejected: number;
  udpReceived: number;
  udpSent: number;
  /** Replies dropped because the reply socket's send buffer was full. */
  udpSendDropped: number;
  replySockets: number;
  /** Failed accepts on the TCP listeners (descriptors exhausted). */
  acceptErrors: number;
}

export interface TransparentInterceptorEvents {
  tcp: [socket: net.Socket, info: TcpInfo];
  udp: [datagram: InterceptedDatagram];
  error: [err: Error];
}

export class TransparentInterceptor extends EventEmitter<TransparentInterceptorEvents> {
  readonly table: string;
  readonly routing: TproxyRouting | undefined;
  /** Listener port of each intercepted entry, by entry index. */
  readonly ports = new Map<number, number>();
  readonly stats: InterceptStats = { tcpAccepted: 0, tcpRejected: 0, udpReceived: 0, udpSent: 0, udpSendDropped: 0, replySockets: 0, acceptErrors: 0 };
  /** Things start chose to do without failing (an IPv6 listener that could not be opened, skipped ICMP entries). */
  readonly notes: string[] = [];

  readonly #opts: TransparentOptions;
  readonly #tcp: TcpListener[] = [];
  readonly #udp: UdpListener[] = [];
  #nf: NetlinkSocket | undefined;
  #routingAdded = false;
  #channel: UdpChannel | undefined;
  #waker: Waker | undefined;
  readonly #replies = new Map<string, RawUdpSocket>();
  readonly #writer: DatagramWriter | undefined;
  #closing: Promise<void> | undefined;

  /** @internal use startTransparentInterception() */
  constructor(opts: TransparentOptions, hasUdp: boolean) {
    super();
    this.#opts = opts;
    this.table = tableName(opts.instance);
    this.routing = hasUdp ? tproxyRoutingFor(opts.instance, opts.tproxy) : undefined;
    this.#writer = hasUdp ? new DatagramWriter() : undefined;
  }

  /** @internal */
  async start(entries: readonly InterceptRule[]): Promise<void> {
    // The crash case first: a predecessor's routing (and table, if it outlived it).
    cleanupStale(this.#opts.instance, this.#opts.tproxy);
    for (const e of entries) {
      if (e.protocol === 'tcp') await this.#openTcp(e);
      else if (e.protocol === 'udp') this.#openUdp(e);
    }
    if (this.#udp.length > 0) await this.#startWorker();
    if (this.routing) {
      const families = [...new Set(this.#udp.map((u) => u.bound.family))];
      const rt = NetlinkSocket.open(NETLINK_ROUTE, 'NETLINK_ROUTE');
      try {
        this.#routingAdded = true; // set first: a partial add is undone by close()
        addTproxyRouting(rt, this.routing, families);
      } finally {
        rt.close();
      }
    }
    const chains = planRules(entries, {
      table: this.table,
      hooks: this.#opts.hooks,
      ownMark: this.#opts.mark,
      tproxyMark: this.routing?.mark ?? this.#opts.mark ^ 1,
      ports: this.ports,
      ...(this.#opts.icmp === 'answer' ? { icmp: 'answer' as const } : {}),
    });
    // Held open until close: the table is owned by this socket.
    this.#nf = NetlinkSocket.open(NETLINK_NETFILTER, 'NETLINK_NETFILTER');
    const batch = encodeInstall(this.table, chains, () => this.#nf!.nextSeq());
    try {
      this.#nf.request(batch.bytes, batch.pending, 'nf_tables batch');
    } catch (err) {
      if (err instanceof SyscallError && err.errno === 'EEXIST') {
        throw new ConflictError(`nf_tables table inet ${this.table} already exists: another Sluice instance '${this.#opts.instance}' is running`);
      }
      throw err;
    }
  }

  async #openTcp(e: InterceptRule): Promise<void> {
    const { servers, port } = await openTcpListener(
      e,
      this.notes,
      (s) => this.#onTcp(e, s),
      () => this.stats.acceptErrors++,
    );
    this.#tcp.push({ entry: e, servers });
    this.ports.set(e.index, port);
  }

  #openUdp(e: InterceptRule): void {
    const { listeners, port } = openUdpListeners(e, this.#opts.mark, this.notes);
    this.#udp.push(...listeners);
    this.ports.set(e.index, port);
  }

  #onTcp(entry: InterceptRule, s: net.Socket): void {
    const family = s.remoteFamily === 'IPv6' ? 6 : 4;
    let dst: Endpoint;
    try {
      dst = originalDst(s, family);
    } catch {
      // Connected to the listener directly (not redirected): nothing to forward to.
      this.stats.tcpRejected++;
      s.destroy();
      return;
    }
    this.stats.tcpAccepted++;
    const src: Endpoint = { family, address: s.remoteAddress ?? '', port: s.remotePort ?? 0 };
    // pauseOnConnect: the consumer resumes once it has attached its handlers.
    if (this.listenerCount('tcp') === 0) {
      s.destroy();
      return;
    }
    this.emit('tcp', s, { entry, src, dst });
  }

  /** Starts the UDP receive thread and waits for its 'ready'; on failure leaves no thread and no eventfd. */
  async #startWorker(): Promise<void> {
    const waker = new Waker();
    try {
      // Like a net.Server, a running interceptor keeps the process alive (keepAlive 'always'); close() ends the thread.
      this.#channel = await WorkerChannel.start<UdpWorkerRequests, UdpWorkerNotifications, undefined, UdpWorkerData>({
        spawn: {
          entry: workerEntry(import.meta.url, './udp-worker'),
          name: 'sluice-tproxy-udp',
          workerData: { fds: this.#udp.map((u) => u.socket.fd), bound: this.#udp.map((u) => u.bound), wakeFd: waker.fd },
        },
        engine: UDP_THREAD,
        // close() posts nothing: the wake-up alone tells the thread to stop.
        wake: () => waker.signal(),
      });
    } catch (err) {
      waker.close();
      throw receiveThreadError(err);
    }
    this.#waker = waker;
    this.#channel.on('batch', (batch) => this.#onBatch(batch));
    // The thread ends only when told to (close); any other end means no datagram is received any more.
    this.#channel.on('failed', (e) => {
      if (this.listenerCount('error') > 0) this.emit('error', receiveThreadError(e));
    });
  }

  #onBatch(batch: readonly UdpWorkerDatagram[]): void {
    for (const d of batch) {
      const l = this.#udp[d.i];
      if (!l) continue;
      this.stats.udpReceived++;
      this.emit('udp', { entry: l.entry, src: d.src, dst: d.dst, data: Buffer.from(d.data.buffer, d.data.byteOffset, d.data.byteLength) });
    }
  }

  /**
   * Sends `data` to the client `to` from the address it originally sent to
   * (`from`, e.g. a datagram's `dst`), through a transparent socket bound
   * there (opened on first use, kept for later replies). Returns false if
   * the datagram was dropped (send buffer full).
   */
  sendUdp(from: Endpoint, to: Endpoint, data: Uint8Array): boolean {
    if (!this.#writer || this.#closing)
      throw new SluiceError('SLUICE_ERR_CLOSED', this.#closing ? 'the interceptor is closed' : 'no UDP entries: nothing to reply to');
    const key = `${from.family}|${from.address}|${from.port}`;
    let sock = this.#replies.get(key);
    if (sock) {
      // Most recently used goes last (Map keeps insertion order).
      this.#replies.delete(key);
    } else {
      sock = openTransparentUdp(from, this.#opts.mark, { recvOrigDst: false });
      const max = this.#opts.maxReplySockets ?? 1024;
      // Bounded: removes at most the excess, oldest first.
      for (const [k, old] of this.#replies) {
        if (this.#replies.size < max) break;
        old.close();
        this.#replies.delete(k);
      }
    }
    this.#replies.set(key, sock);
    this.stats.replySockets = this.#replies.size;
    const ok = this.#writer.send(sock, to, data);
    if (ok) this.stats.udpSent++;
    else this.stats.udpSendDropped++;
    return ok;
  }

  /**
   * Deletes the table and the policy routing, synchronously (what an
   * owner's process 'exit' handler runs; close() runs it too). Best effort: a failure here must not stop the rest.
   * Returns the errors it met.
   */
  removeKernelStateSync(): Error[] {
    const errors: Error[] = [];
    if (this.#nf) {
      try {
        deleteTable(this.#nf, this.table);
      } catch (err) {
        errors.push(err as Error);
      }
      // Closing the owner socket would remove an owned table anyway.
      this.#nf.close();
      this.#nf = undefined;
    }
    if (this.#routingAdded && this.routing) {
      try {
        const rt = NetlinkSocket.open(NETLINK_ROUTE, 'NETLINK_ROUTE');
        try {
          removeTproxyRouting(rt, this.routing);
        } finally {
          rt.close();
        }
        this.#routingAdded = false;
      } catch (err) {
        errors.push(err as Error);
      }
    }
    return errors;
  }

  /** Removes every rule, rule set and route it added, and closes every listener. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const errors = this.removeKernelStateSync();
    for (const l of this.#tcp) for (const s of l.servers) s.close();
    if (this.#channel) {
      // The thread wakes from ppoll at once (the channel signals the eventfd); terminate() after 2 s is the fallback.
      await this.#channel.close({ terminateAfterMs: 2000 });
      // Only now: the thread may have been inside ppoll or recvmsg on these descriptors.
      this.#waker!.close();
    }
    for (const u of this.#udp) u.socket.close();
    for (const s of this.#replies.values()) s.close();
    this.#replies.clear();
    this.stats.replySockets = 0;
    if (errors.length > 0) throw errors[0];
  }
}

/**
 * Starts transparent interception of `opts.table`'s TCP and UDP entries.
 * Needs CAP_NET_ADMIN. On failure everything added so far is removed
 * before the error propagates.
 */
export async function startTransparentInterception(opts: TransparentOptions): Promise<TransparentInterceptor> {
  if (!(Number.isInteger(opts.mark) && opts.mark > 0 && opts.mark <= 0xffffffff))
    throw new RangeError(`mark must be a non-zero 32-bit integer (got ${opts.mark})`);
  const icmp = opts.table.filter((e) => e.protocol === 'icmp');
  if (icmp.length > 0 && (opts.icmp ?? 'error') === 'error') {
    throw new NotSupportedError(
      `flow table entries ${icmp.map((e) => e.name).join(', ')} are ICMP`,
      'ICMP is not supported in transparent mode (REDIRECT and TPROXY take only TCP and UDP); use explicit mode, or pass icmp: "skip"',
    );
  }
  const answer = opts.icmp === 'answer';
  const entries = opts.table.filter((e) => e.protocol !== 'icmp' || answer);
  const ic = new TransparentInterceptor(
    opts,
    entries.some((e) => e.protocol === 'udp'),
  );
  if (icmp.length > 0)
    ic.notes.push(
      answer
        ? `ICMP entries ${icmp.map((e) => e.name).join(', ')}: echo answered by this host`
        : `ICMP entries ${icmp.map((e) => e.name).join(', ')} skipped: not supported in transparent mode`,
    );
  try {
    await ic.start(entries);
  } catch (err) {
    await ic.close().catch(() => undefined);
    throw err;
  }
  return ic;
}

/**
 * What the interceptor reports when its receive thread could not start or
 * stopped on its own, as it did before the thread used src/worker: the
 * thread's SyscallError (or other SluiceError), rebuilt; any other error
 * the thread threw as an EngineError naming the thread, with that error's
 * own message; an uncaught error as it is; an exit with nothing said as
 * the channel's EngineFailedError ("… stopped: its thread exited (code n)").
 */
function receiveThreadError(e: unknown): Error {
  const err = e instanceof EngineFailedError && e.cause !== undefined ? e.cause : e;
  // fromErrorInfo (no errorContext) makes an EngineError of exactly the errors that were no SluiceError.
  if (err instanceof EngineError) return new EngineError(UDP_THREAD, err.message);
  return err instanceof Error ? err : new EngineError(UDP_THREAD, String(err));
}
