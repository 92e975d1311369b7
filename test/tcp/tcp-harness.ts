/**
 * Loopback helpers for the tcp-redirect conformance suite: an upstream
 * server whose connections a test scripts, a client, deterministic random
 * payloads, and waits bounded in time.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { TcpRelay, type TcpRedirectPolicy } from '../../src/index.js';

export type Mode = 'sockmap' | 'splice' | 'userspace';

export interface Upstream {
  readonly server: Server;
  readonly port: number;
  /** Connections accepted, in order. */
  readonly sockets: Socket[];
  /** Resolves with the next accepted connection. */
  next(): Promise<Socket>;
  close(): Promise<void>;
}

export async function startUpstream(onConnection?: (s: Socket) => void): Promise<Upstream> {
  const sockets: Socket[] = [];
  const waiters: ((s: Socket) => void)[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    sockets.push(s);
    onConnection?.(s);
    waiters.shift()?.(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  let taken = 0;
  return {
    server,
    port,
    sockets,
    next: () =>
      new Promise<Socket>((resolve) => {
        if (sockets.length > taken) resolve(sockets[taken++]!);
        else
          waiters.push((s) => {
            taken++;
            resolve(s);
          });
      }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function startRelay(mode: Mode, upstreamPort: number, extra: Partial<TcpRedirectPolicy> = {}): Promise<TcpRelay> {
  return TcpRelay.start({ type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: `tcp://127.0.0.1:${upstreamPort}`, allow: 'any', mode, ...extra });
}

export async function connectTo(relay: TcpRelay): Promise<Socket> {
  const port = Number(new URL(relay.listen).port);
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** A connection the relay is expected to refuse: how it ended (a refusal may come before or after the connect completes). */
export function refusedAttempt(relay: TcpRelay): Promise<'end' | 'reset' | 'close'> {
  const port = Number(new URL(relay.listen).port);
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  s.resume();
  return ending(s);
}

/** Deterministic bytes (xorshift), so a failure names reproducible data. */
export function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Everything `s` sends until its end (or close). */
export function collect(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return new Promise((resolve) => {
    const done = () => resolve(Buffer.concat(parts));
    s.once('end', done);
    s.once('close', done);
  });
}

/** How a socket ended: 'end' (FIN), 'reset' (ECONNRESET/EPIPE) or 'close'. */
export function ending(s: Socket): Promise<'end' | 'reset' | 'close'> {
  return new Promise((resolve) => {
    s.once('end', () => resolve('end'));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : 'close'));
    s.once('close', () => resolve('close'));
  });
}

/** Polls `check` every 20 ms until it holds or `ms` passes; returns whether it held. */
export async function until(check: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
