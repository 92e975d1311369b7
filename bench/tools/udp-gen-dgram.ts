/**
 * Slow, portable stand-in for bench/tools/udp-gen.ts with the same command
 * line and output, on node:dgram (one send call per datagram). Use it with
 * `npm run bench -- --generator bench/tools/udp-gen-dgram.ts` when the FFI
 * module is unavailable; it becomes the limit well below the fast one.
 *
 *   --to HOST:PORT --size BYTES --rate PPS --duration SECONDS
 *   --pattern smooth|bursty [--burst N] [--bind HOST]
 *
 * Prints one JSON line at the end: {"sent":N,"errors":N,"elapsedS":S,"achievedPps":R}
 */
import dgram from 'node:dgram';
import { parseGenOptions, printResult } from './gen-cli.js';

const opts = parseGenOptions('udp-gen-dgram');
const host = opts.to.address;
const port = opts.to.port;
const sock = dgram.createSocket({ type: opts.to.family === 6 ? 'udp6' : 'udp4', sendBufferSize: 8 * 1024 * 1024 });
const payload = Buffer.alloc(opts.size);
for (let i = 0; i < payload.length; i += 188) payload[i] = 0x47; // TS sync bytes

const total = Math.round(opts.rate * opts.duration);
const burst = opts.pattern === 'bursty' ? Math.max(1, Math.round(opts.burst)) : 1;
const MAX_QUEUED = 4096;
let issued = 0;
let errors = 0;
let t0 = 0;

function onSent(err: Error | null): void {
  if (err) errors++;
}

function finish(): void {
  const deadline = performance.now() + 2000;
  const wait = (): void => {
    if (sock.getSendQueueCount() > 0 && performance.now() < deadline) {
      setTimeout(wait, 1);
      return;
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const sent = issued - errors - sock.getSendQueueCount();
    sock.close();
    printResult(opts, { sent, errors, elapsedS });
  };
  wait();
}

function tick(): void {
  const now = performance.now() - t0;
  if (issued >= total || now > opts.duration * 1000 + 1000) {
    finish();
    return;
  }
  let due = Math.min(total, Math.floor((now / 1000) * opts.rate)) - issued;
  if (due >= burst || (due > 0 && issued + due >= total)) {
    due = Math.min(due, MAX_QUEUED - sock.getSendQueueCount());
    for (let i = 0; i < due; i++) sock.send(payload, onSent);
    issued += Math.max(0, due);
    setImmediate(tick);
    return;
  }
  const nextMs = ((issued + burst) / opts.rate) * 1000 - now;
  if (nextMs > 1.5) setTimeout(tick, nextMs - 1);
  else setImmediate(tick);
}

sock.bind({ address: opts.bind, port: 0 }, () => {
  // A closed port answers with ICMP, which a connected socket reports as
  // an 'error' event: count it, do not crash.
  sock.on('error', () => errors++);
  sock.connect(port, host, () => {
    t0 = performance.now();
    tick();
  });
});
