/**
 * Load for the tcp suite (bench/lib/tcp-suite.ts), loopback only.
 *
 *   tcp-load.ts sink                      listens on a port of 127.0.0.1 (printed as one JSON line); a
 *                                         connection's first byte picks: 'b' bulk: an 8-byte size, then that
 *                                         many bytes, answered by one byte; 'e' echo: every later byte sent back.
 *   tcp-load.ts bulk HOST:PORT BYTES      one connection: sends BYTES after the size header, waits for the
 *                                         answer; prints {"bytes","seconds"} (time from connect to answer).
 *   tcp-load.ts ping HOST:PORT N SIZE     one connection: N round trips of SIZE bytes (after N/10 warm-up);
 *                                         prints {n, p50, p90, p99, max} in µs.
 *
 * Every run is bounded: BYTES and N are capped, and the client gives up after 120 s.
 */
import { createServer, connect, type Socket } from 'node:net';

const CHUNK = 1 << 20;
const MAX_BYTES = 64 * 2 ** 30;
const MAX_ROUNDS = 1_000_000;
const GIVE_UP_MS = 120_000;

function fail(msg: string): never {
  process.stderr.write(`tcp-load: ${msg}\n`);
  process.exit(2);
}

function hostPort(s: string | undefined): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(s ?? '');
  if (!m) fail(`expected HOST:PORT, got ${s}`);
  return { host: m[1]!, port: Number(m[2]) };
}

function bounded(s: string | undefined, max: number): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > max) fail(`expected an integer 1..${max}, got ${s}`);
  return n;
}

function sink(): void {
  // The first byte picks the service: 'b' bulk (then an 8-byte size), 'e' echo.
  const server = createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    let head: Buffer | undefined = Buffer.alloc(0);
    let echo = false;
    let want = 0n;
    let got = 0n;
    s.on('data', (d: Buffer) => {
      if (echo) return void s.write(d);
      if (head) {
        head = Buffer.concat([head, d]);
        if (head[0] === 0x65) {
          echo = true;
          if (head.length > 1) s.write(head.subarray(1));
          head = undefined;
          return;
        }
        if (head[0] !== 0x62) return void s.destroy();
        if (head.length < 9) return;
        want = head.readBigUInt64BE(1);
        got = BigInt(head.length - 9);
        head = undefined;
      } else got += BigInt(d.length);
      if (want > 0n && got >= want) {
        want = 0n;
        s.write('k');
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ event: 'ready', port: (server.address() as { port: number }).port })}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

function giveUp(s: Socket): void {
  setTimeout(() => {
    s.destroy();
    fail('no answer within 120 s');
  }, GIVE_UP_MS).unref();
}

function runBulk(target: string | undefined, bytesArg: string | undefined): void {
  const { host, port } = hostPort(target);
  const total = bounded(bytesArg, MAX_BYTES);
  const chunk = Buffer.alloc(CHUNK, 0x5a);
  const header = Buffer.alloc(9);
  header[0] = 0x62;
  header.writeBigUInt64BE(BigInt(total), 1);
  const t0 = process.hrtime.bigint();
  const s = connect({ host, port });
  giveUp(s);
  s.on('error', (err) => fail(`bulk: ${err.message}`));
  s.once('data', () => {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(`${JSON.stringify({ bytes: total, seconds })}\n`);
    s.destroy();
    process.exit(0);
  });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK);
      left -= n;
      if (!s.write(n === CHUNK ? chunk : chunk.subarray(0, n))) {
        s.once('drain', pump);
        return;
      }
    }
  };
  s.once('connect', () => {
    s.write(header);
    pump();
  });
}

function runPing(target: string | undefined, roundsArg: string | undefined, sizeArg: string | undefined): void {
  const { host, port } = hostPort(target);
  const rounds = bounded(roundsArg, MAX_ROUNDS);
  const size = bounded(sizeArg, 65536);
  const warm = Math.ceil(rounds / 10);
  const msg = Buffer.alloc(size, 0x61);
  const rtts: number[] = [];
  const s = connect({ host, port });
  s.setNoDelay(true);
  giveUp(s);
  s.on('error', (err) => fail(`ping: ${err.message}`));
  let done = 0;
  let got = 0;
  let sent = 0n;
  const send = () => {
    got = 0;
    sent = process.hrtime.bigint();
    s.write(done === 0 ? Buffer.concat([Buffer.from('e'), msg]) : msg);
  };
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got < size) return;
    const us = Number(process.hrtime.bigint() - sent) / 1e3;
    if (done++ >= warm) rtts.push(us);
    if (done < warm + rounds) return send();
    rtts.sort((a, b) => a - b);
    const q = (p: number) => +rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))]!.toFixed(1);
    process.stdout.write(`${JSON.stringify({ n: rtts.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1) })}\n`);
    s.destroy();
    process.exit(0);
  });
  s.once('connect', send);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'sink') sink();
else if (cmd === 'bulk') runBulk(args[0], args[1]);
else if (cmd === 'ping') runPing(args[0], args[1], args[2]);
else fail('usage: tcp-load.ts sink | bulk HOST:PORT BYTES | ping HOST:PORT N SIZE');
