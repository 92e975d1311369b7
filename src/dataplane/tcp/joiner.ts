/**
 * How a tcp-redirect moves the bytes of a joined pair: the contract between
 * the acceptor (tcp-relay.ts) and each path (splice, user space).
 */
import type { Socket } from 'node:net';

export interface PairEnd {
  /** closed: both sides ended; reset: an error or RST on either; idle: idleTimeoutMs passed with no byte moved (both closed). */
  readonly reason: 'closed' | 'reset' | 'idle';
  /** What ended a reset pair (an errno, or the peer's reset). */
  readonly error?: string;
  readonly bytesToUpstream: number;
  readonly bytesToClient: number;
}

export interface Joiner {
  readonly mode: 'splice' | 'userspace';
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

/** Resets a socket (RST) if it is still open; Node's resetAndDestroy throws on one that never had a handle. */
export function reset(s: Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}
