/**
 * Fan-out bench clients: N TCP connections to 127.0.0.1:PORT (with PATH:
 * an HTTP GET first), each reading the stream and checking it is whole
 * 1316-byte datagrams whose sequence numbers (bytes 1..4) go up by one.
 * Prints "connected N" once all are connected; on the line "report" on
 * stdin prints one JSON line {clients:[{bytes,datagrams,gaps,last}]} and exits.
 * Usage: fanout-clients.ts PORT N [PATH]
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const [portText, nText, path] = process.argv.slice(2) as [string, string, string | undefined];
const port = Number(portText);
const n = Number(nText);
const SIZE = 1316;

interface C {
  bytes: number;
  datagrams: number;
  gaps: number;
  last: number;
  head: boolean;
  carry: Buffer;
  s?: Socket;
}
const clients: C[] = [];

function feed(c: C, d: Buffer): void {
  c.bytes += d.byteLength;
  let b = c.carry.byteLength ? Buffer.concat([c.carry, d]) : d;
  if (c.head) {
    const e = b.indexOf('\r\n\r\n');
    if (e < 0) {
      c.carry = b;
      return;
    }
    b = b.subarray(e + 4);
    c.head = false;
  }
  let o = 0;
  for (; o + SIZE <= b.byteLength; o += SIZE) {
    const seq = b.readUInt32BE(o + 1);
    if (c.last >= 0 && seq !== c.last + 1) c.gaps++;
    c.last = seq;
    c.datagrams++;
  }
  c.carry = Buffer.from(b.subarray(o));
}

async function open(): Promise<void> {
  const c: C = { bytes: 0, datagrams: 0, gaps: 0, last: -1, head: path !== undefined, carry: Buffer.alloc(0) };
  clients.push(c);
  await new Promise<void>((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      if (path) s.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`);
      resolve();
    });
    c.s = s;
    s.on('data', (d: Buffer) => feed(c, d));
    s.on('error', () => resolve());
  });
}

// Four at a time with a pause: GStreamer's tcpserversink listens with a backlog of 5, and a burst
// of connects overflows it (the client thinks it is connected, the server never accepts it).
for (let i = 0; i < n; i += 4) {
  await Promise.all(Array.from({ length: Math.min(4, n - i) }, open));
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write(`connected ${n}\n`);
createInterface({ input: process.stdin }).on('line', (l) => {
  if (l.trim() !== 'report') return;
  process.stdout.write(`${JSON.stringify({ clients: clients.map(({ bytes, datagrams, gaps, last }) => ({ bytes, datagrams, gaps, last })) })}\n`);
  for (const c of clients) c.s?.destroy();
  process.exitCode = 0;
  setTimeout(() => process.exit(0), 100);
});
