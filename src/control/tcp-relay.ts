/**
 * TcpRelay: the library's handle on a running `tcp-redirect` policy
 * (issue 22, part 2). Connections accepted on `listen` are joined to
 * connections to `to`; the bytes move inside the kernel (splice through a
 * pipe) or, with `mode: 'userspace'` or where splice is unavailable, through
 * node:net streams. See docs/POLICY.md, "tcp-redirect".
 */
import { parseTcpRedirect, formatTcpEndpoint, type TcpRedirectPolicy, type TcpRedirectSpec } from '../policy/tcp-redirect.js';
import { TcpRelayEngine, type TcpRelayStats } from '../dataplane/tcp/tcp-relay.js';

export type { TcpRelayStats };

export class TcpRelay {
  readonly #engine: TcpRelayEngine;

  private constructor(engine: TcpRelayEngine) {
    this.#engine = engine;
  }

  /** Validates the policy (PolicyValidationError) and starts listening. */
  static async start(policy: TcpRedirectPolicy): Promise<TcpRelay> {
    return new TcpRelay(await TcpRelayEngine.start(parseTcpRedirect(policy)));
  }

  get spec(): TcpRedirectSpec {
    return this.#engine.spec;
  }

  /** `tcp://HOST:PORT` it listens on (the port the OS chose for port 0). */
  get listen(): string {
    return formatTcpEndpoint(this.#engine.listen);
  }

  /** Which path moves the bytes: 'splice' (in the kernel) or 'userspace'. */
  get mode(): 'splice' | 'userspace' {
    return this.#engine.stats().mode;
  }

  /** The splice thread's error if it stopped on its own (new connections are then refused). */
  get failure(): Error | undefined {
    return this.#engine.failure;
  }

  stats(): TcpRelayStats {
    return this.#engine.stats();
  }

  /** Stops accepting, resets the pairs still open, resolves with the last counters. */
  close(): Promise<TcpRelayStats> {
    return this.#engine.close();
  }
}
