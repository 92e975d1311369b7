/**
 * Helpers for the live fan-out tests: TS-like datagrams that say their own
 * sequence number, a paced loopback sender, raw HTTP/TCP clients that
 * record what they get, and bounded waits.
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

export const TS = 188;
export const DATAGRAM = 7 * TS;

/** Datagram `seq`: 7 TS packets, each 0x47, seq (u32), packet index, then bytes derived from both. */
export function datagram(seq: number): Buffer {
  const b = Buffer.alloc(DATAGRAM);
  for (let p = 0; p < 7; p++) {
    const o = p * TS;
    b[o] = 0x47;
    b.writeUInt32BE(seq, o + 1);
    b[o + 5] = p;
    for (let i = 6; i < TS; i++) b[o + i] = (seq * 31 + p * 7 + i) & 0xff;
  }
  return b;
}

/** Sequence numbers of a stream of whole datagrams; throws on a torn or corrupt one. */
export function sequences(stream: Buffer): number[] {
  if (stream.byteLength % DATAGRAM !== 0) throw new Error(`stream of ${stream.byteLength} bytes is not whole datagrams`);
  const seqs: number[] = [];
  for (let o = 0; o < stream.byteLength; o += DATAGRAM) {
    const seq = stream.readUInt32BE(o + 1);
    if (!datagram(seq).equals(stream.subarray(o, o + DATAGRAM))) throw new Error(`datagram at ${o} is corrupt`);
    seqs.push(seq);
  }
  return seqs;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 20 ms until true or `ms` passed; returns the last value. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(20);
  }
}

/**
 * Sends datagrams `from`..`to-1` to 127.0.0.1:port in bursts of `burst`
 * with a short pause between (bounded in count; the pacing keeps the
 * input socket's buffer from overflowing on a busy machine).
 */
export async function sendSeq(port: number, from: number, to: number, burst = 16, pauseMs = 2, until?: () => Promise<boolean>): Promise<number> {
  const u = createSocket('udp4');
  let seq = from;
  try {
    while (seq < to) {
      const end = Math.min(to, seq + burst);
      for (; seq < end; seq++) await new Promise<void>((r, j) => u.send(datagram(seq), port, '127.0.0.1', (e) => (e ? j(e) : r())));
      await sleep(pauseMs);
      if (until && seq % (burst * 16) === 0 && (await until())) break;
    }
  } finally {
    u.close();
  }
  return seq;
}

export interface Receiver {
  readonly socket: Socket;
  /** Everything received, header included. */
  data(): Buffer;
  /** The body after the HTTP head (all of it for plain TCP). */
  body(): Buffer;
  status(): number | undefined;
  readonly closed: Promise<void>;
}

/** Connects; with `path` sends `GET path` (or `request` verbatim); `read: false` never reads. */
export async function receiver(port: number, o: { path?: string; request?: string; read?: boolean } = {}): Promise<Receiver> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  const chunks: Buffer[] = [];
  let size = 0;
  await once(s, 'connect');
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  if (o.read === false) s.pause();
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    size += d.byteLength;
  });
  if (o.read === false) s.pause();
  if (o.request !== undefined) s.write(o.request);
  else if (o.path !== undefined) s.write(`GET ${o.path} HTTP/1.1\r\nHost: test\r\nUser-Agent: sluice-test\r\n\r\n`);
  const data = () => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  const isHttp = o.path !== undefined || o.request !== undefined;
  return {
    socket: s,
    data,
    body: () => {
      const d = data();
      if (!isHttp) return d;
      const end = d.indexOf('\r\n\r\n');
      return end < 0 ? Buffer.alloc(0) : d.subarray(end + 4);
    },
    status: () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data().subarray(0, 16).toString('latin1'));
      return m ? Number(m[1]) : undefined;
    },
    closed,
  };
}

export function portOf(hostPort: string): number {
  return Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
}
