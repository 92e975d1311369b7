/**
 * Benchmark traffic generator: UDP datagrams of one size to one address at
 * a set rate, sent with sendmmsg + UDP GSO through Sluice's FFI module so
 * the generator is not what limits a measurement (≈2 M packets/s from one
 * core, far above any relay here).
 *
 *   --pattern smooth  sends each datagram as soon as it is due (the loop
 *                     spins, so consecutive datagrams are microseconds apart)
 *   --pattern bursty  waits until --burst datagrams are due and sends them
 *                     back to back (one GSO buffer): same average rate
 *
 * Prints one JSON line at the end:
 *   {"sent":N,"errors":N,"elapsedS":S,"achievedPps":R}
 */
import { RawUdpSocket } from '../../src/sys/udp-socket.js';
import { NativeRegion } from '../../src/sys/memory.js';
import { SendVector } from '../../src/sys/send-vector.js';
import { writeSockaddr } from '../../src/sys/sockaddr.js';
import { errnoName } from '../../src/sys/errno.js';
import { parseGenOptions, printResult } from './gen-cli.js';

const opts = parseGenOptions('udp-gen');
const to = opts.to;
// --sources N: N sockets (N source ports) take turns, one send call each (the workers suite's many sources).
const socks = Array.from({ length: Math.max(1, Math.floor(opts.sources)) }, () => {
  const s = RawUdpSocket.open(to.family);
  s.setBuffers(8 * 1024 * 1024);
  if (opts.bind) s.bind({ family: to.family, address: opts.bind, port: 0 });
  return s;
});
let turn = 0;

const MAX_SEGMENTS = Math.max(1, Math.min(64, Math.floor(65000 / Math.max(1, opts.size))));
const name = new NativeRegion(32);
const nameLength = writeSockaddr(name.bytes, 0, to.family, to.address, to.port);
const payload = new NativeRegion(opts.size * MAX_SEGMENTS);
// TS-like content: a sync byte every 188 bytes, so `payload: mpegts` relays accept it.
for (let i = 0; i < payload.size; i += 188) payload.bytes[i] = 0x47;
const vec = new SendVector(64, 64);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

let sent = 0;
let errors = 0;
const lastErrors = new Map<string, number>();
const total = Math.round(opts.rate * opts.duration);
const burst = opts.pattern === 'bursty' ? Math.max(1, opts.burst) : 1;
const t0 = performance.now();
const endMs = opts.duration * 1000;

/** Sends `n` datagrams as GSO messages of up to MAX_SEGMENTS each. */
function sendNow(n: number): void {
  const sock = socks[turn++ % socks.length]!;
  while (n > 0) {
    vec.clear();
    let queued = 0;
    while (n - queued > 0 && vec.hasRoom(1)) {
      const k = Math.min(MAX_SEGMENTS, n - queued);
      vec.begin(name.address, nameLength, k > 1 ? opts.size : 0);
      vec.addIov(payload.address, k * opts.size);
      queued += k;
    }
    let start = 0;
    while (start < vec.count) {
      const r = vec.send(sock.fd, start);
      if (r > 0) {
        start += r;
        continue;
      }
      errors++;
      const e = errnoName(-r);
      lastErrors.set(e, (lastErrors.get(e) ?? 0) + 1);
      break;
    }
    // Messages 0..start-1 left; count their segments.
    sent += Math.min(queued, start * MAX_SEGMENTS);
    if (start < vec.count) return; // back off after an error; the next tick retries
    n -= queued;
  }
}

while (sent < total) {
  const now = performance.now() - t0;
  if (now > endMs + 1000) break; // bounded even if sends keep failing
  const due = Math.min(total, Math.floor((now / 1000) * opts.rate)) - sent;
  if (due >= burst || (due > 0 && sent + due >= total)) {
    sendNow(due);
    continue;
  }
  // Sleep until the next send is due, less a margin for wake-up latency; spin the rest.
  const nextMs = ((sent + burst) / opts.rate) * 1000 - now;
  if (nextMs > 0.3) Atomics.wait(sleeper, 0, 0, nextMs - 0.2);
}
const elapsedS = (performance.now() - t0) / 1000;
for (const s of socks) s.close();
printResult(opts, { sent, errors, elapsedS, lastErrors });
