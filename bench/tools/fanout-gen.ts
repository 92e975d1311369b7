/**
 * Fan-out bench generator: TS-like datagrams (7 x 188 bytes, each packet
 * 0x47 then the datagram's sequence number) to 127.0.0.1:PORT at RATE
 * bit/s for SECONDS, paced per millisecond tick. Prints {"sent":N}.
 * Usage: fanout-gen.ts PORT RATE_BPS SECONDS
 */
import { createSocket } from 'node:dgram';

const [port, rate, seconds] = process.argv.slice(2).map(Number) as [number, number, number];
const SIZE = 1316;
const perMs = rate / 8 / SIZE / 1000;
const u = createSocket('udp4');
const buf = Buffer.alloc(SIZE);
for (let p = 0; p < 7; p++) buf[p * 188] = 0x47;
let sent = 0;
const t0 = performance.now();
const end = t0 + seconds * 1000;
const tick = (): void => {
  const now = performance.now();
  const due = Math.floor(Math.min(now, end) - t0) * perMs;
  while (sent < due) {
    const b = Buffer.from(buf);
    for (let p = 0; p < 7; p++) b.writeUInt32BE(sent, p * 188 + 1);
    u.send(b, port, '127.0.0.1');
    sent++;
  }
  if (now < end) setTimeout(tick, 1);
  else
    setTimeout(() => {
      u.close();
      process.stdout.write(`${JSON.stringify({ sent })}\n`);
    }, 50);
};
tick();
