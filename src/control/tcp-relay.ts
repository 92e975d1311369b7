/**
 * TcpRelay: the library's handle on a running `tcp-redirect` policy
 * (issue 22, part 2), the TCP counterpart of a Flow. Connections accepted
 * on `listen` are joined to connections to `to`; the bytes move inside the
 * kernel (splice through a pipe) or, with `mode: 'userspace'` or where
 * splice is unavailable, through node:net streams. Started by
 * `TcpRelay.start(policy)` on its own, or by `sluice.apply(policy)` (then
 * listed by `sluice.tcpFlows()` and closed with the Sluice).
 * See docs/POLICY.md, "tcp-redirect".
 */
import { parseTcpRedirect, formatTcpEndpoint, type TcpRedirectPolicy, type TcpRedirectSpec } from '../policy/tcp-redirect.js';
import { TcpRelayEngine, type TcpRelayStats } from '../dataplane/tcp/tcp-relay.js';
import type { JoinPath, PairEnd } from '../dataplane/tcp/joiner.js';
import { TypedEmitter } from '../events.js';

export type { TcpRelayStats, PairEnd };

/** Events of a TcpRelay (`relay.on(name, listener)`); a throwing listener is reported as 'listenererror', never thrown. */
export interface TcpRelayEvents {
  /** A connection from `source` (an address) was joined to `to`. */
  accepted: [source: string];
  /** A connection from `source` was reset at accept: not in `allow`, or `maxConnections` pairs open. */
  refused: [source: string, reason: 'notAllowed' | 'overLimit'];
  /** `to` could not be reached (or not in connectTimeoutMs) for a connection from `source`; the client was reset. */
  upstreamFailed: [source: string, error: string];
  /** A joined pair ended: closed (both sides), reset (either side, with what), or idle; with its byte counts. */
  pairend: [source: string, end: PairEnd];
  /** close() / remove() finished, with the last counters. Emitted once. */
  close: [stats: TcpRelayStats];
}

export class TcpRelay extends TypedEmitter<TcpRelayEvents> {
  #engine!: TcpRelayEngine;
  #closing: Promise<TcpRelayStats> | undefined;

  private constructor() {
    super();
  }

  /** Validates the policy (PolicyValidationError) and starts listening. */
  static async start(policy: TcpRedirectPolicy): Promise<TcpRelay> {
    const spec = parseTcpRedirect(policy);
    const relay = new TcpRelay();
    relay.#engine = await TcpRelayEngine.start(spec, {
      accepted: (source) => relay.emit('accepted', source),
      refused: (source, reason) => relay.emit('refused', source, reason),
      upstreamFailed: (source, error) => relay.emit('upstreamFailed', source, error),
      ended: (source, end) => relay.emit('pairend', source, end),
    });
    return relay;
  }

  readonly type = 'tcp-redirect';

  get spec(): TcpRedirectSpec {
    return this.#engine.spec;
  }

  /** The policy's name, or `tcp://HOST:PORT` of the listen address when it has none. */
  get name(): string {
    return this.#engine.spec.name ?? this.listen;
  }

  /** `tcp://HOST:PORT` it listens on (the port the OS chose for port 0). */
  get listen(): string {
    return formatTcpEndpoint(this.#engine.listen);
  }

  /** `tcp://HOST:PORT` each connection is joined to. */
  get to(): string {
    return formatTcpEndpoint(this.#engine.spec.to);
  }

  /** Which path moves the bytes: 'sockmap' or 'splice' (in the kernel), or 'userspace'. */
  get mode(): JoinPath {
    return this.#engine.stats().mode;
  }

  /** The splice thread's error if it stopped on its own (new connections are then refused). */
  get failure(): Error | undefined {
    return this.#engine.failure;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  stats(): TcpRelayStats {
    return this.#engine.stats();
  }

  /** Stops accepting, resets the pairs still open, resolves with the last counters ('close'). Idempotent. */
  close(): Promise<TcpRelayStats> {
    this.#closing ??= this.#engine.close().then((stats) => {
      this.emit('close', stats);
      return stats;
    });
    return this.#closing;
  }

  /** As close(): the name a Flow's is (a Sluice's flows are removed, a TcpRelay closed). */
  remove(): Promise<TcpRelayStats> {
    return this.close();
  }
}
