/**
 * The sockmap path of tcp-redirect: a joined pair's bytes move from one
 * socket's receive path into the other's send queue inside the kernel
 * (bpf/tcp_redirect.c), with no system call per chunk and no thread.
 *
 * The sock_ops program put both sockets into the sockhash when they were
 * established, so every byte either socket received has passed its
 * verdict. Each direction (a receiving socket and its peer) starts in user
 * space: Node reads what the verdict passed, writes it to the peer, and
 * tells the verdict how much it has forwarded; once that equals what was
 * passed, the verdict redirects from the next byte on. When the peer's
 * backlog in the kernel passes the limit (a slow reader), the verdict
 * throttles the direction: bytes are passed again, charged to the receiving
 * socket (so its window closes), and Node writes them only after the
 * backlog has drained, then arms again. The order of bytes therefore holds
 * at every switch, and no direction holds more than the limit in the kernel
 * beyond the peer's own send buffer.
 *
 * Node keeps reading both sockets the whole time: while a direction is
 * redirected nothing arrives, but Node still sees the end of file and
 * errors. End of file: the peer is shut for writing (half-close) once the
 * direction's backlog has drained; an error or reset on either resets the
 * other, as the user-space path does.
 *
 * A pair whose sockets the sock_ops program did not take (established
 * before the port was registered, or the maps full) goes through the
 * user-space path instead, counted.
 */
import type { Socket } from 'node:net';
import { boundTcpSocket, socketCookie } from '../../sys/socket-options.js';
import { socketFd } from './splice-joiner.js';
import { SockmapProgram } from './sockmap-program.js';
import { BACKLOG_LIMIT, Direction } from './sockmap-direction.js';
import { pairEnd, type Joiner, type PairEnd, type SockmapStats } from './joiner.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';
import { UserJoiner } from './user-joiner.js';
import { watchSocketPair } from './socket-pair-end.js';

interface Pair {
  readonly up: Direction;
  readonly down: Direction;
  readonly client: Socket;
  readonly upstream: Socket;
  /** [to upstream, to client], read from the maps once: when the pair closes, or when the joiner does. */
  bytes?: [number, number];
}

export class SockmapJoiner implements Joiner {
  readonly mode = 'sockmap';
  idleTimeoutMs: number | undefined;
  readonly #prog: SockmapProgram;
  readonly #port: number;
  readonly #fallback = new UserJoiner();
  readonly #open = new Set<Pair>();
  #endedUp = 0;
  #endedDown = 0;
  #endedKernel = 0;
  #endedUser = 0;
  #endedThrottles = 0;
  #closed = false;
  /** Local port and cookie of each upstream socket made here and not yet joined (its port is listed in tcp_ports until then). */
  readonly #upstreams = new Map<Socket, { port: number; cookie: bigint }>();
  /** Pairs the sock_ops program had not taken, relayed in user space. */
  fallbackPairs = 0;

  /** Loads the programs (or shares them) and takes connections accepted on `address`:`port`; throws where sockmap cannot run. */
  constructor(port: number, address?: string) {
    this.#prog = SockmapProgram.acquire();
    try {
      this.#prog.addPort(port, address);
    } catch (err) {
      this.#prog.release();
      throw err;
    }
    this.#port = port;
  }

  /** A socket the relay will not join (refused): drop its map entry now rather than at close. */
  discard(s: Socket): void {
    const fd = socketFd(s);
    try {
      if (fd !== undefined) this.#prog.forget(socketCookie(fd));
    } catch {
      // Already gone (closed under us): nothing of it is left to forget but its entry, which the map's bound contains.
    }
  }

  /**
   * The upstream socket, bound to an ephemeral port that is listed for the
   * sock_ops program before it connects (so it is taken when established),
   * with its direction (upstream to client) armed already: the verdict
   * redirects its very first byte, since nothing can have been passed
   * before it was established.
   */
  upstreamSocket(client: Socket, family: 4 | 6): Socket {
    const { socket, port } = boundTcpSocket(family, { allowHalfOpen: true });
    const cfd = socketFd(client);
    const ufd = socketFd(socket);
    const cc = cookieOf(cfd);
    // A client the sock_ops program did not take goes through user space: its upstream need not be taken either.
    if (cc === undefined || ufd === undefined || !this.#prog.dir(cc)) return socket;
    try {
      const cookie = socketCookie(ufd);
      this.#prog.addUpstreamPort(port);
      this.#upstreams.set(socket, { port, cookie });
      this.#prog.setCtl(cookie, { peer: cc, forwarded: 0n, armGen: 1, limit: BACKLOG_LIMIT });
    } catch (err) {
      // The maps are full (or the socket is gone): this attempt fails; nothing of it is kept.
      this.abandon(socket);
      socket.destroy();
      throw err;
    }
    return socket;
  }

  abandon(upstream: Socket): void {
    const u = this.#upstreams.get(upstream);
    if (!u) return;
    this.#upstreams.delete(upstream);
    if (this.#closed) return;
    this.#prog.removeUpstreamPort(u.port);
    this.#prog.forget(u.cookie);
  }

  join(client: Socket, upstream: Socket, done: (end: PairEnd) => void): void {
    const u = this.#upstreams.get(upstream);
    if (u) {
      this.#upstreams.delete(upstream);
      this.#prog.removeUpstreamPort(u.port);
    }
    const cfd = socketFd(client);
    const ufd = socketFd(upstream);
    const cc = cookieOf(cfd);
    const uc = cookieOf(ufd);
    if (cc === undefined || uc === undefined || !this.#prog.dir(cc) || !this.#prog.dir(uc)) {
      if (cc !== undefined) this.#prog.forget(cc);
      if (uc !== undefined) this.#prog.forget(uc);
      this.fallbackPairs++;
      this.#fallback.idleTimeoutMs = this.idleTimeoutMs;
      this.#fallback.join(client, upstream, done);
      return;
    }
    const up = new Direction(this.#prog, client, upstream, cc, uc, cfd!, ufd!);
    const down = new Direction(this.#prog, upstream, client, uc, cc, ufd!, cfd!);
    const pair: Pair = { up, down, client, upstream };
    this.#open.add(pair);
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    const idleMs = this.idleTimeoutMs;
    if (idleMs !== undefined) {
      // Redirected bytes never reach Node: idleness is read from the counters.
      let last = up.moved() + down.moved();
      const check = () => {
        const now = up.moved() + down.moved();
        if (now !== last) {
          last = now;
          timer = setTimeout(check, idleMs);
          return;
        }
        idle = true;
        client.destroy();
        upstream.destroy();
      };
      timer = setTimeout(check, idleMs);
    }
    watchSocketPair(client, upstream, (error) => {
      clearTimeout(timer);
      // Read the counters before the entries go.
      this.#settle(pair);
      if (!this.#closed) {
        this.#prog.forget(cc);
        this.#prog.forget(uc);
      }
      const [bytesToUpstream, bytesToClient] = pair.bytes!;
      done(pairEnd(error, idle, bytesToUpstream, bytesToClient));
    });
    client.resume();
    upstream.resume();
  }

  /** Reads a pair's counters for the last time and takes it off the open list (once). */
  #settle(p: Pair): void {
    if (p.bytes) return;
    p.up.stop();
    p.down.stop();
    p.bytes = [Number(p.up.moved()), Number(p.down.moved())];
    this.#endedUp += p.bytes[0];
    this.#endedDown += p.bytes[1];
    for (const d of [p.up.split(), p.down.split()]) {
      this.#endedKernel += Number(d.kernel);
      this.#endedUser += Number(d.user);
      this.#endedThrottles += d.throttles;
    }
    this.#open.delete(p);
  }

  sockmapStats(): SockmapStats {
    let kernelBytes = this.#endedKernel;
    let userBytes = this.#endedUser;
    let throttles = this.#endedThrottles;
    for (const p of this.#open) {
      for (const d of [p.up.split(), p.down.split()]) {
        kernelBytes += Number(d.kernel);
        userBytes += Number(d.user);
        throttles += d.throttles;
      }
    }
    return { kernelBytes, userBytes, throttles, fallbackPairs: this.fallbackPairs };
  }

  bytes(): { toUpstream: number; toClient: number } {
    let toUpstream = this.#endedUp;
    let toClient = this.#endedDown;
    for (const p of this.#open) {
      toUpstream += Number(p.up.moved());
      toClient += Number(p.down.moved());
    }
    const f = this.#fallback.bytes();
    return { toUpstream: toUpstream + f.toUpstream, toClient: toClient + f.toClient };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const p of this.#open) {
      resetTcpSocket(p.client);
      resetTcpSocket(p.upstream);
    }
    for (const u of this.#upstreams.values()) this.#prog.removeUpstreamPort(u.port);
    this.#upstreams.clear();
    // Pairs still open lose their map entries with the programs: count what they moved first.
    for (const p of [...this.#open]) this.#settle(p);
    this.#closed = true;
    await this.#fallback.close();
    this.#prog.removePort(this.#port);
    this.#prog.release();
  }
}

/** The socket's cookie, or undefined when it has no descriptor or the kernel no longer knows it (closed under us). */
function cookieOf(fd: number | undefined): bigint | undefined {
  if (fd === undefined) return undefined;
  try {
    return socketCookie(fd);
  } catch {
    return undefined;
  }
}
