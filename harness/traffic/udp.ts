/**
 * Loopback UDP helpers for tests: receivers that record what arrives and a
 * paced, bounded sender. Every wait has a timeout so a failing relay fails
 * the test instead of hanging it.
 */
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Received {
  data: Buffer;
  address: string;
  port: number;
}

export interface Receiver {
  readonly address: string;
  readonly port: number;
  readonly url: string;
  readonly received: Received[];
  /** Resolves when at least `n` datagrams arrived; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  /** Waits until nothing new arrived for `quietMs` (bounded by `timeoutMs`). */
  settle(quietMs?: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function openReceiver(address = '127.0.0.1'): Promise<Receiver> {
  const family = address.includes(':') ? 6 : 4;
  const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', recvBufferSize: 4 << 20 });
  const received: Received[] = [];
  let lastArrival = Date.now();
  socket.on('message', (data, rinfo) => {
    received.push({ data, address: rinfo.address, port: rinfo.port });
    lastArrival = Date.now();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => resolve());
  });
  const port = socket.address().port;
  return {
    address,
    port,
    url: family === 6 ? `udp://[${address}]:${port}` : `udp://${address}:${port}`,
    received,
    async waitFor(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`receiver ${address}:${port}: got ${received.length} of ${n} datagrams in ${timeoutMs} ms`);
        await sleep(5);
      }
    },
    async settle(quietMs = 100, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() - lastArrival < quietMs && Date.now() < deadline) await sleep(10);
    },
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}

export interface Sender {
  readonly socket: dgram.Socket;
  readonly address: string;
  readonly port: number;
  send(data: Uint8Array, port: number, address: string): Promise<void>;
  close(): Promise<void>;
}

export async function openSender(address = '127.0.0.1'): Promise<Sender> {
  const socket = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => resolve());
  });
  return {
    socket,
    address,
    port: socket.address().port,
    send: (data, port, to) => new Promise<void>((resolve, reject) => socket.send(data, port, to, (err) => (err ? reject(err) : resolve()))),
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}

/** A datagram carrying a 32-bit sequence number, padded to `size` bytes. */
export function seqDatagram(seq: number, size = 64): Buffer {
  const b = Buffer.alloc(Math.max(size, 4), seq & 0xff);
  b.writeUInt32BE(seq >>> 0, 0);
  return b;
}

export function seqOf(r: Received): number {
  return r.data.readUInt32BE(0);
}

/**
 * Sends `count` sequence-numbered datagrams in bursts of `burst`, yielding
 * to the event loop between bursts so that an in-process relay and the
 * receivers keep up. `onProgress(seq)` runs before each datagram (used to
 * change a policy at a given point of the stream).
 */
export async function sendSequence(
  sender: Sender,
  target: { port: number; address: string },
  count: number,
  opts: { size?: number; burst?: number; gapMs?: number; onProgress?: (seq: number) => Promise<void> | void } = {},
): Promise<void> {
  const burst = opts.burst ?? 16;
  for (let seq = 0; seq < count; seq++) {
    if (opts.onProgress) await opts.onProgress(seq);
    await sender.send(seqDatagram(seq, opts.size), target.port, target.address);
    if ((seq + 1) % burst === 0) await sleep(opts.gapMs ?? 1);
  }
}

/**
 * Sends `messages` UDP GSO messages of `segments` datagrams of `size` bytes
 * each (sequence numbers 0.., as seqDatagram) to `to` from a socket of the
 * batched tier's FFI, in one sendmmsg. A receiver with UDP_GRO on gets each
 * message whole, as one GRO buffer of `segments` datagrams (loopback and
 * veth do not split GSO packets); others get the datagrams one by one.
 * Returns the number of messages the kernel took.
 */
export async function sendGsoBurst(to: { port: number; address: string }, opts: { messages: number; segments: number; size: number }): Promise<number> {
  const { RawUdpSocket } = await import('../../src/sys/udp-socket.js');
  const { NativeRegion } = await import('../../src/sys/memory.js');
  const { SendVector } = await import('../../src/sys/send-vector.js');
  const { writeSockaddr } = await import('../../src/sys/sockaddr.js');
  const family = to.address.includes(':') ? 6 : 4;
  const tx = RawUdpSocket.open(family);
  try {
    tx.setBuffers(16 << 20);
    const name = new NativeRegion(32);
    const nameLength = writeSockaddr(name.bytes, 0, family, to.address, to.port);
    const { messages, segments, size } = opts;
    const payload = new NativeRegion(messages * segments * size);
    for (let seq = 0; seq < messages * segments; seq++) payload.bytes.set(seqDatagram(seq, size), seq * size);
    const vec = new SendVector(messages, messages);
    for (let m = 0; m < messages; m++) {
      vec.begin(name.address, nameLength, size);
      vec.addIov(payload.address + m * segments * size, segments * size);
    }
    let sent = 0;
    while (sent < messages) {
      const r = vec.send(tx.fd, sent);
      if (r < 0) throw new Error(`sendmmsg (GSO): errno ${-r} after ${sent} messages`);
      sent += r;
    }
    return sent;
  } finally {
    tx.close();
  }
}
