/**
 * How a tcp-redirect moves the bytes of a joined pair: the contract between
 * the acceptor (tcp-relay.ts) and each path (splice, user space).
 */
import type { Socket } from 'node:net';
import type { TcpRelayPath } from '../../policy/tcp-redirect.js';

export interface PairEnd {
  /** closed: both sides ended; reset: an error or RST on either; idle: idleTimeoutMs passed with no byte moved (both closed). */
  readonly reason: 'closed' | 'reset' | 'idle';
  /** What ended a reset pair (an errno, or the peer's reset). */
  readonly error?: string;
  readonly bytesToUpstream: number;
  readonly bytesToClient: number;
}

/** Which path moves a tcp-redirect's bytes: sockmap (socket to socket in the kernel), splice (through a pipe, in the kernel), userspace (node:net). */
export type JoinPath = TcpRelayPath;

/**
 * Where the sockmap path's bytes went: redirected inside the kernel, or
 * forwarded by Node (what arrived before a direction was armed, and while
 * it was throttled by a slow reader), and the pairs it left to user space.
 */
export interface SockmapStats {
  readonly kernelBytes: number;
  readonly userBytes: number;
  /** Times a direction's backlog at a slow reader reached the limit and it went back through Node. */
  readonly throttles: number;
  /** Pairs the sock_ops program had not taken (relayed in user space). */
  readonly fallbackPairs: number;
}

export interface Joiner {
  readonly mode: JoinPath;
  /** A client the relay refused: the path forgets whatever it noted about it. */
  discard?(client: Socket): void;
  /** The sockmap path's own counters (see SockmapStats). */
  sockmapStats?(): SockmapStats;
  /**
   * Makes the upstream socket for `client`, not yet connected (the relay
   * connects it), where a path needs to know it before its first byte;
   * otherwise the relay uses net.connect.
   */
  upstreamSocket?(client: Socket, family: 4 | 6): Socket;
  /** The upstream socket made by upstreamSocket will not be joined (it failed or the relay closed). */
  abandon?(upstream: Socket): void;
  /**
   * Joins a paused, connected pair. `done` is called once, after both
   * sockets are destroyed (the path closes or resets them itself).
   */
  join(client: Socket, upstream: Socket, done: (end: PairEnd) => void): void;
  /** Pairs idle this long (ms) end as 'idle'; set once, before the first join. */
  idleTimeoutMs?: number | undefined;
  /** Bytes moved so far by pairs still open and ended: [to upstream, to clients]. */
  bytes(): { toUpstream: number; toClient: number };
  /** Ends every pair (reset) and releases the path. */
  close(): Promise<void>;
}

/** How a pair that Node watched ended: reset if either side failed, else idle if the idle timer closed it, else closed. */
export function pairEnd(error: string | undefined, idle: boolean, bytesToUpstream: number, bytesToClient: number): PairEnd {
  const reason = error !== undefined ? 'reset' : idle ? 'idle' : 'closed';
  return { reason, ...(error === undefined ? {} : { error }), bytesToUpstream, bytesToClient };
}
