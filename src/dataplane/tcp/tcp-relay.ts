/**
 * A running tcp-redirect: accepts on `listen`, checks the source against
 * `allow` and the pair count against `maxConnections`, connects to `to`,
 * and hands the joined pair to a path (splice or user space) that moves
 * the bytes. Refused connections are reset at once and counted. Sockets
 * are accepted paused (pauseOnConnect), so no byte is read in user space
 * before the path takes them.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createSourceMatcher } from '../../policy/source-filter.js';
import type { TcpRedirectSpec } from '../../policy/tcp-redirect.js';
import { unmapAddress, type Endpoint } from '../../wire/endpoint.js';
import { fromNodeError, NotSupportedError, SyscallError } from '../../errors.js';
import type { Joiner, JoinPath, PairEnd, SockmapStats } from './joiner.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';
import { SockmapJoiner } from './sockmap-joiner.js';
import { UserJoiner } from './user-joiner.js';
import { SpliceJoiner, spliceUnavailable } from './splice-joiner.js';

export interface TcpRelayStats {
  readonly name: string | undefined;
  readonly mode: JoinPath;
  readonly listen: Endpoint;
  /** Connections joined to `to` (refused and failed ones are not). */
  readonly accepted: number;
  /** Connections reset at accept: source not allowed, or maxConnections reached. */
  readonly refused: { readonly notAllowed: number; readonly overLimit: number };
  /** Connections reset because `to` could not be reached in time. */
  readonly upstreamFailed: number;
  /** Pairs open now (connecting to `to` included). */
  readonly active: number;
  /** Pairs ended cleanly (both sides closed) and by a reset. */
  readonly closed: number;
  readonly resets: number;
  /** Pairs closed by idleTimeoutMs. */
  readonly idleClosed: number;
  readonly bytesToUpstream: number;
  readonly bytesToClient: number;
  /** mode 'sockmap' only: how much the kernel moved itself. */
  readonly sockmap?: SockmapStats;
}

/** What a running tcp-redirect tells its owner as it happens (the TcpRelay's events). */
export interface TcpRelayHooks {
  /** A connection from `source` was joined to `to`. */
  accepted?(source: string): void;
  /** A connection from `source` was reset at accept. */
  refused?(source: string, reason: 'notAllowed' | 'overLimit'): void;
  /** `to` could not be reached for a connection from `source`; the client was reset. */
  upstreamFailed?(source: string, error: string): void;
  /** A joined pair ended. */
  ended?(source: string, end: PairEnd): void;
}

export class TcpRelayEngine {
  readonly spec: TcpRedirectSpec;
  readonly #server: Server;
  readonly #joiner: Joiner;
  readonly #allowed: (address: string) => boolean;
  readonly #connecting = new Set<Socket>();
  #listen: Endpoint;
  #accepted = 0;
  #notAllowed = 0;
  #overLimit = 0;
  #upstreamFailed = 0;
  #active = 0;
  #closed = 0;
  #resets = 0;
  #idleClosed = 0;
  #closing: Promise<TcpRelayStats> | undefined;
  /** The splice thread's failure, if it stopped on its own (new connections are then refused). */
  failure: Error | undefined;
  readonly #hooks: TcpRelayHooks;

  private constructor(spec: TcpRedirectSpec, joiner: Joiner, server: Server, listen: Endpoint, hooks: TcpRelayHooks) {
    this.spec = spec;
    this.#hooks = hooks;
    this.#joiner = joiner;
    this.#server = server;
    this.#listen = listen;
    this.#allowed = createSourceMatcher(spec.allow);
    server.on('connection', (s: Socket) => this.#accept(s));
  }

  /** Starts listening; `mode: 'splice'` where splice cannot run is a NotSupportedError saying why. */
  static async start(spec: TcpRedirectSpec, hooks: TcpRelayHooks = {}): Promise<TcpRelayEngine> {
    const why = spliceUnavailable();
    if (spec.mode === 'splice' && why) throw new NotSupportedError('the splice path of tcp-redirect is unavailable', why);
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(fromNodeError('listen', err, `tcp ${spec.listen.address}:${spec.listen.port}`)));
      server.listen({ host: spec.listen.address, port: spec.listen.port, ipv6Only: spec.listen.family === 6 }, resolve);
    });
    const a = server.address();
    const listen: Endpoint = a && typeof a === 'object' ? { ...spec.listen, port: a.port } : spec.listen;
    let engine: TcpRelayEngine | undefined;
    let joiner: Joiner;
    if (spec.mode === 'sockmap') {
      try {
        joiner = new SockmapJoiner(listen.port, listen.address);
      } catch (err) {
        server.close();
        const why = err instanceof Error ? err.message : String(err);
        throw new NotSupportedError(
          'the sockmap path of tcp-redirect is unavailable',
          /\bEPERM\b/.test(why) ? `it needs root (CAP_BPF and CAP_NET_ADMIN): ${why}` : why,
        );
      }
    } else
      joiner =
        spec.mode === 'userspace' || why
          ? new UserJoiner()
          : new SpliceJoiner((err) => {
              if (engine) engine.failure = err;
            });
    joiner.idleTimeoutMs = spec.idleTimeoutMs;
    engine = new TcpRelayEngine(spec, joiner, server, listen, hooks);
    return engine;
  }

  get listen(): Endpoint {
    return this.#listen;
  }

  stats(): TcpRelayStats {
    const b = this.#joiner.bytes();
    return {
      name: this.spec.name,
      mode: this.#joiner.mode,
      listen: this.#listen,
      accepted: this.#accepted,
      refused: { notAllowed: this.#notAllowed, overLimit: this.#overLimit },
      upstreamFailed: this.#upstreamFailed,
      active: this.#active,
      closed: this.#closed,
      resets: this.#resets,
      idleClosed: this.#idleClosed,
      bytesToUpstream: b.toUpstream,
      bytesToClient: b.toClient,
      ...(this.#joiner.sockmapStats ? { sockmap: this.#joiner.sockmapStats() } : {}),
    };
  }

  #accept(client: Socket): void {
    client.on('error', () => {});
    const source = unmapAddress(client.remoteAddress ?? '');
    if (!this.#allowed(source)) {
      this.#notAllowed++;
      this.#joiner.discard?.(client);
      resetTcpSocket(client);
      this.#hooks.refused?.(source, 'notAllowed');
      return;
    }
    if (this.#active >= this.spec.maxConnections || this.failure || this.#closing) {
      this.#overLimit++;
      this.#joiner.discard?.(client);
      resetTcpSocket(client);
      this.#hooks.refused?.(source, 'overLimit');
      return;
    }
    this.#active++;
    const to = this.spec.to;
    let made: Socket | undefined;
    try {
      made = this.#joiner.upstreamSocket?.(client, to.family);
    } catch (err) {
      // No socket for the upstream (e.g. no ephemeral port left): the attempt fails like an unreachable destination.
      this.#upstreamFailed++;
      this.#active--;
      resetTcpSocket(client);
      this.#hooks.upstreamFailed?.(source, err instanceof SyscallError ? err.errno : String(err));
      return;
    }
    const upstream = made ? made.connect(to.port, to.address) : connect({ host: to.address, port: to.port, allowHalfOpen: true });
    upstream.pause();
    this.#connecting.add(upstream);
    const timer = setTimeout(() => upstream.destroy(new Error('connect timed out')), this.spec.connectTimeoutMs);
    const failed = (err: Error) => {
      clearTimeout(timer);
      this.#connecting.delete(upstream);
      this.#upstreamFailed++;
      this.#active--;
      this.#joiner.abandon?.(upstream);
      resetTcpSocket(client);
      resetTcpSocket(upstream);
      this.#hooks.upstreamFailed?.(source, (err as NodeJS.ErrnoException).code ?? err.message);
    };
    upstream.once('error', failed);
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.off('error', failed);
      upstream.on('error', () => {});
      this.#connecting.delete(upstream);
      if (client.destroyed || this.#closing) {
        this.#active--;
        this.#joiner.abandon?.(upstream);
        resetTcpSocket(upstream);
        return;
      }
      this.#accepted++;
      this.#hooks.accepted?.(source);
      this.#joiner.join(client, upstream, (end) => this.#ended(source, end));
    });
  }

  #ended(source: string, end: PairEnd): void {
    this.#active--;
    if (end.reason === 'reset') this.#resets++;
    else if (end.reason === 'idle') this.#idleClosed++;
    else this.#closed++;
    this.#hooks.ended?.(source, end);
  }

  /** Stops accepting, resets every open pair and returns the last counters. */
  close(): Promise<TcpRelayStats> {
    this.#closing ??= (async () => {
      const listening = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const s of this.#connecting) s.destroy(new Error('relay closed'));
      await this.#joiner.close();
      await listening;
      return this.stats();
    })();
    return this.#closing;
  }
}
