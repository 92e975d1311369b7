/**
 * Traffic endpoints for the WAN emulator's tests and the tpo-wan bench
 * suite, run inside the topology's namespaces. One JSON line per event on
 * stdout. Every load is bounded in time and bytes.
 *
 *   udp-echo  --port P                     echo every datagram back
 *   udp-ping  --to H:P --count N --interval-ms I [--size S]
 *                                           RTT of N sequenced probes
 *   udp-sink  --port P                     count datagrams; "stats" on stdin prints counts
 *   udp-blast --to H:P --rate-mbit R --seconds T [--size S]
 *                                           paced datagrams (rate counts IP bytes)
 *   tcp-sink  --port P [--bin-ms B]       one port for both kinds of connection, so a
 *                                           tunnel with a single target carries both: the
 *                                           first byte is 'B' (bulk: count received bytes
 *                                           in time bins) or 'R' (echo every request/response
 *                                           byte back as read)
 *   tcp-send  --to H:P --seconds T --max-bytes B [--cc ALG] [--drain]
 *                                           bulk sender: writes incompressible data until
 *                                           T or B, then resets the connection (no drain);
 *                                           --drain: a fixed-size transfer, closed in order
 *                                           and timed until the far end closed (within T)
 *   rr-client --to H:P --seconds T --interval-ms I [--size S] [--stdin-window]
 *                                           request/response latency (p50/p90/p99);
 *                                           --size: bytes per request and per response
 *                                           (a multiple of 100, default 100);
 *                                           --stdin-window: counts only after a "start"
 *                                           line on stdin, stops when stdin closes
 *
 * tcp-send sets the congestion control on its socket (TCP_CONGESTION,
 * through the FFI module: node:net cannot) and reports what the kernel
 * says the connection uses, so every result row names its algorithm.
 */
import { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { libc } from '../../src/sys/ffi.js';
import { syscallError } from '../../src/sys/errno.js';
import { resetTcpSocket } from '../../src/sys/tcp-reset.js';

const IPPROTO_TCP = 6;
const TCP_CONGESTION = 13;
const UDP_IP_OVERHEAD = 28;

const print = (obj: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(obj)}\n`);
const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a number >= 0: ${v}`);
  return n;
};
function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}
function quantiles(v: number[]): { n: number; p50: number; p90: number; p99: number; max: number; min: number } {
  const s = [...v].sort((a, b) => a - b);
  const q = (p: number): number => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN);
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN };
}
const fdOf = (s: net.Socket): number | undefined => (s as unknown as { _handle?: { fd?: number } })._handle?.fd;

/** TCP_CONGESTION of a connected socket's fd, as the kernel reports it. */
function getCongestion(fd: number): string {
  const c = libc();
  const buf = new Uint8Array(16);
  const len = new Uint32Array([16]);
  if (c.getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, len) < 0) throw syscallError('getsockopt(TCP_CONGESTION)', c.errno());
  return Buffer.from(buf.subarray(0, len[0])).toString('latin1').replace(/\0.*$/s, '');
}

function setCongestion(fd: number, alg: string): void {
  const c = libc();
  const b = Buffer.from(alg, 'latin1');
  if (c.setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, b, b.length) < 0) throw syscallError('setsockopt(TCP_CONGESTION)', c.errno(), alg);
}

/** Ends the process once stdin closes (the harness's way of saying stop), when stdin is a pipe. */
function exitOnStdinEnd(onEnd: () => void = () => process.exit(0)): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('close', onEnd);
}

const program = new Command('wan-load');

program
  .command('udp-echo')
  .requiredOption('--port <n>', '', num)
  .action((o: { port: number }) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, r) => s.send(m, r.port, r.address));
    s.bind(o.port, () => print({ event: 'ready' }));
    exitOnStdinEnd();
  });

program
  .command('udp-ping')
  .requiredOption('--to <host:port>')
  .requiredOption('--count <n>', '', num)
  .option('--interval-ms <ms>', '', num, 20)
  .option('--size <bytes>', '', num, 64)
  .action(async (o: { to: string; count: number; intervalMs: number; size: number }) => {
    const { host, port } = hostPort(o.to);
    const s = dgram.createSocket('udp4');
    const sentAt = new Map<number, number>();
    const rtts: number[] = [];
    s.on('message', (m) => {
      const t = sentAt.get(m.readUInt32BE(0));
      if (t !== undefined) rtts.push(performance.now() - t);
    });
    await new Promise<void>((r) => s.bind(0, r));
    const buf = Buffer.alloc(Math.max(8, o.size));
    for (let i = 0; i < o.count; i++) {
      buf.writeUInt32BE(i, 0);
      sentAt.set(i, performance.now());
      s.send(buf, port, host);
      await new Promise((r) => setTimeout(r, o.intervalMs));
    }
    await new Promise((r) => setTimeout(r, 1000));
    print({ event: 'done', sent: o.count, ...quantiles(rtts) });
    process.exit(0);
  });

program
  .command('udp-sink')
  .requiredOption('--port <n>', '', num)
  .action((o: { port: number }) => {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
    let packets = 0;
    let bytes = 0;
    let first = 0;
    let last = 0;
    s.on('message', (m) => {
      const t = performance.now();
      if (packets === 0) first = t;
      last = t;
      packets++;
      bytes += m.length + UDP_IP_OVERHEAD;
    });
    s.bind(o.port, () => print({ event: 'ready' }));
    const rl = createInterface({ input: process.stdin });
    rl.on('line', () => print({ event: 'stats', packets, ipBytes: bytes, spanMs: last - first }));
    rl.on('close', () => process.exit(0));
  });

program
  .command('udp-blast')
  .requiredOption('--to <host:port>')
  .requiredOption('--rate-mbit <r>', '', num)
  .requiredOption('--seconds <s>', '', num)
  .option('--size <bytes>', 'UDP payload', num, 1372)
  .action(async (o: { to: string; rateMbit: number; seconds: number; size: number }) => {
    const { host, port } = hostPort(o.to);
    const s = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
    await new Promise<void>((r) => s.bind(0, r));
    const buf = randomBytes(o.size);
    const pps = (o.rateMbit * 1e6) / 8 / (o.size + UDP_IP_OVERHEAD);
    const t0 = performance.now();
    let sent = 0;
    // Paced in 1 ms steps: the number due so far minus the number sent.
    while (performance.now() - t0 < o.seconds * 1000) {
      const due = Math.floor(((performance.now() - t0) / 1000) * pps);
      while (sent < due) {
        s.send(buf, port, host);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, 200));
    print({ event: 'done', sent, ipBytes: sent * (o.size + UDP_IP_OVERHEAD), seconds: (performance.now() - t0) / 1000 });
    process.exit(0);
  });

program
  .command('tcp-sink')
  .requiredOption('--port <n>', '', num)
  .option('--bin-ms <ms>', '', num, 1000)
  .action((o: { port: number; binMs: number }) => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      const t0 = performance.now();
      let mode: 'B' | 'R' | undefined;
      const bins: number[] = [];
      let bytes = 0;
      sock.on('data', (d) => {
        if (!mode) {
          mode = d[0] === 0x52 ? 'R' : 'B';
          d = d.subarray(1);
          if (mode === 'R') sock.setNoDelay(true);
        }
        if (mode === 'R') {
          // Echo: each request comes back as it came, so a random (incompressible) one stays so.
          if (d.length) sock.write(d);
          return;
        }
        const b = Math.floor((performance.now() - t0) / o.binMs);
        while (bins.length <= b) bins.push(0);
        bins[b]! += d.length;
        bytes += d.length;
      });
      sock.once('close', () => {
        if (mode === 'B') print({ event: 'conn', bytes, binMs: o.binMs, bins, durationMs: performance.now() - t0 });
      });
    });
    server.listen(o.port, () => print({ event: 'ready' }));
    exitOnStdinEnd();
  });

program
  .command('tcp-send')
  .requiredOption('--to <host:port>')
  .requiredOption('--seconds <s>', '', num)
  .requiredOption('--max-bytes <n>', '', num)
  .option('--cc <alg>', 'congestion control of this connection')
  .option('--drain', 'end in order after the last byte and wait (within --seconds) until the far end closes')
  .action(async (o: { to: string; seconds: number; maxBytes: number; cc?: string; drain?: boolean }) => {
    const { host, port } = hostPort(o.to);
    // 8 MiB of random bytes, reused: incompressible for every tunnel's compressor
    // (their windows are far smaller), so nobody wins by compressing.
    const data = randomBytes(8 << 20);
    const chunk = 256 << 10;
    const sock = net.connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    // node:net opens the fd only inside connect(), so the algorithm is set
    // as soon as the handshake is done, before the first byte is written
    // (the namespace's default, set by the harness too, covered the SYN).
    const fd = fdOf(sock);
    if (fd === undefined || fd < 0) throw new Error('no fd for the socket: cannot set TCP_CONGESTION');
    if (o.cc) setCongestion(fd, o.cc);
    const cc = getCongestion(fd);
    sock.write('B');
    print({ event: 'started', cc });
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let written = 0;
    let off = 0;
    let stop = false;
    const timer = setTimeout(() => (stop = true), o.seconds * 1000);
    sock.on('error', () => (stop = true));
    while (!stop && written < o.maxBytes) {
      const n = Math.min(chunk, o.maxBytes - written, data.length - off);
      const ok = sock.write(data.subarray(off, off + n));
      written += n;
      off = (off + n) % data.length;
      if (!ok)
        await new Promise<void>((r) => {
          sock.once('drain', r);
          setTimeout(r, 200);
        });
    }
    clearTimeout(timer);
    let drained = false;
    if (o.drain && written >= o.maxBytes) {
      // A fixed-size transfer: its time ends when the far end has read all and closed.
      const left = Math.max(0, o.seconds * 1000 - (performance.now() - t0));
      drained = await new Promise<boolean>((resolve) => {
        sock.once('close', () => resolve(true));
        setTimeout(() => resolve(false), left);
        sock.end();
      });
    }
    const elapsed = (performance.now() - t0) / 1000;
    const used = process.cpuUsage(cpu0);
    // Otherwise queued data is thrown away: the result is what arrived in the
    // window, not a drain that at 1 Mbit/s would take minutes.
    if (!drained) resetTcpSocket(sock);
    print({ event: 'done', cc, written, seconds: elapsed, drained, cpuS: (used.user + used.system) / 1e6 });
    process.exit(0);
  });

program
  .command('rr-client')
  .requiredOption('--to <host:port>')
  .requiredOption('--seconds <s>', '', num)
  .option('--interval-ms <ms>', '', num, 50)
  .option('--warmup-s <s>', 'exchanges in the first seconds are not counted', num, 0)
  .option('--size <bytes>', 'bytes per request and per response (the sink answers every 100 with 100)', num, 100)
  .option('--cc <alg>', 'congestion control of this connection')
  .option('--stdin-window', 'count only after a "start" line on stdin; stop when stdin closes')
  .action(async (o: { to: string; seconds: number; intervalMs: number; warmupS: number; size: number; cc?: string; stdinWindow?: boolean }) => {
    if (!Number.isInteger(o.size) || o.size < 100 || o.size % 100 !== 0 || o.size > 1_000_000)
      throw new Error(`--size ${o.size}: a multiple of 100 up to 1,000,000`);
    const size = o.size;
    const { host, port } = hostPort(o.to);
    // The harness marks the window (a fixed-size transfer's, whose length it cannot know ahead).
    let counting = !o.stdinWindow;
    let ended = false;
    if (o.stdinWindow) {
      const rl = createInterface({ input: process.stdin });
      rl.on('line', (l) => (counting ||= l.trim() === 'start'));
      rl.on('close', () => (ended = true));
    }
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const fd = fdOf(sock);
    if (o.cc && fd !== undefined && fd >= 0) setCongestion(fd, o.cc);
    // Larger requests are random bytes: incompressible, so they cross as that many bytes (several segments).
    const req = size > 100 ? randomBytes(size) : Buffer.alloc(size, 0x71);
    sock.write('R');
    const t0 = performance.now();
    const lat: number[] = [];
    let have = 0;
    let waiter: (() => void) | undefined;
    sock.on('data', (d) => {
      have += d.length;
      if (have >= size && waiter) {
        have -= size;
        const w = waiter;
        waiter = undefined;
        w();
      }
    });
    let failed = false;
    sock.on('error', () => (failed = true));
    while (!failed && !ended && performance.now() - t0 < o.seconds * 1000) {
      const start = performance.now();
      const replied = new Promise<boolean>((resolve) => {
        waiter = () => resolve(true);
        setTimeout(() => resolve(false), Math.max(1000, o.seconds * 1000 - (start - t0)));
      });
      sock.write(req);
      if (!(await replied)) break;
      const l = performance.now() - start;
      if (counting && start - t0 >= o.warmupS * 1000) lat.push(l);
      const wait = o.intervalMs - l;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    sock.destroy();
    print({ event: 'done', ...quantiles(lat) });
    process.exit(0);
  });

await program.parseAsync();
