/**
 * What the sender bench's load tools share: their flags, and node:dgram
 * used well (the baseline every way is compared with).
 */
import dgram from 'node:dgram';
import { RawUdpSocket } from '../../src/sys/udp-socket.js';
import { libc } from '../../src/sys/ffi.js';
import { writeSockaddr } from '../../src/sys/sockaddr.js';

/** `--name value` from argv, or `def`; throws when required and missing. */
export function flag(name: string, def?: string): string {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? args[i + 1] : def;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

/**
 * A node:dgram socket that sends in windows: every send of a window shares
 * one callback (no closure or promise per packet), and the next window
 * starts when the last callback of this one came, so libuv's queue stays
 * bounded.
 */
export async function openDgramWindows(): Promise<{
  window(n: number, send: (i: number, sock: dgram.Socket, done: (err: Error | null) => void) => void): Promise<void>;
  close(): { sent: number; errors: number };
}> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, r));
  let sent = 0;
  let errors = 0;
  let pending = 0;
  let wake: () => void = () => undefined;
  const done = (err: Error | null): void => {
    if (err) errors++;
    else sent++;
    if (--pending === 0) wake();
  };
  return {
    async window(n, send) {
      pending = n;
      const drained = new Promise<void>((r) => (wake = r));
      for (let i = 0; i < n; i++) send(i, sock, done);
      await drained;
    },
    close() {
      sock.close();
      return { sent, errors };
    },
  };
}

/**
 * One sendto(2) per datagram through Sluice's FFI module: a raw IPv4 UDP
 * socket and the destinations' sockaddrs laid out once, so `send(i)` is a
 * single FFI call (the bench's one-call-per-packet baselines).
 */
export function openSendto(host: string, first: number, dests: number, payload: Buffer): { send(i: number): number; close(): void } {
  const c = libc();
  const sock = RawUdpSocket.open(4);
  const names = Buffer.alloc(16 * dests);
  for (let d = 0; d < dests; d++) writeSockaddr(names, d * 16, 4, host, first + d);
  const namesAt = c.memcpyAddr(names, names, 0);
  const bufAt = c.memcpyAddr(payload, payload, 0);
  return {
    send: (i) => c.sendto(sock.fd, bufAt, payload.length, 0, namesAt + (i % dests) * 16, 16),
    close: () => {
      sock.close();
      // The FFI took raw addresses: naming the buffers here keeps them alive until now.
      void names;
      void payload;
    },
  };
}
