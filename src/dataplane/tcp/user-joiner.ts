/**
 * The user-space path: node:net streams, the reference the splice path is
 * tested against (and the fallback where neither in-kernel path works).
 * Each direction is a pipe() with back-pressure; a side's end of file ends
 * the other side's writing (half-close, allowHalfOpen); a side's error
 * resets the other.
 */
import type { Socket } from 'node:net';
import { pairEnd, type Joiner, type PairEnd } from './joiner.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';
import { watchSocketPair } from './socket-pair-end.js';

export class UserJoiner implements Joiner {
  readonly mode = 'userspace';
  idleTimeoutMs: number | undefined;
  readonly #open = new Set<{ client: Socket; upstream: Socket }>();
  #endedUp = 0;
  #endedDown = 0;

  join(client: Socket, upstream: Socket, done: (end: PairEnd) => void): void {
    const pair = { client, upstream };
    this.#open.add(pair);
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    const idleMs = this.idleTimeoutMs;
    if (idleMs !== undefined) {
      let last = performance.now();
      const check = () => {
        const left = last + idleMs - performance.now();
        if (left > 0) timer = setTimeout(check, Math.ceil(left));
        else {
          idle = true;
          client.destroy();
          upstream.destroy();
        }
      };
      timer = setTimeout(check, idleMs);
      const touch = () => (last = performance.now());
      client.on('data', touch);
      upstream.on('data', touch);
    }
    watchSocketPair(client, upstream, (error) => {
      clearTimeout(timer);
      this.#open.delete(pair);
      const bytesToUpstream = upstream.bytesWritten;
      const bytesToClient = client.bytesWritten;
      this.#endedUp += bytesToUpstream;
      this.#endedDown += bytesToClient;
      done(pairEnd(error, idle, bytesToUpstream, bytesToClient));
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  }

  bytes(): { toUpstream: number; toClient: number } {
    let toUpstream = this.#endedUp;
    let toClient = this.#endedDown;
    for (const p of this.#open) {
      toUpstream += p.upstream.bytesWritten;
      toClient += p.client.bytesWritten;
    }
    return { toUpstream, toClient };
  }

  close(): Promise<void> {
    for (const p of this.#open) {
      resetTcpSocket(p.client);
      resetTcpSocket(p.upstream);
    }
    return Promise.resolve();
  }
}
