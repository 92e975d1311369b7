/**
 * TPO over loopback (issue 18): two `sluice tpo` gateways (the real CLI,
 * explicit mode, each its own process) on 127.0.0.1, a TCP sink behind gwb
 * and a client here that pushes --mb MB through gwa → gwb → sink. Every
 * run is bounded by --max-s (default 60 s). While it runs, both gateways'
 * status is read from their control sockets every --sample-ms and the
 * flow's state, the peer's RTT, bandwidth and pacing estimates are printed
 * (--quiet: only the result).
 *
 *   node --import tsx bench/tools/tpo-loopback.ts [--mb 100] [--max-s 60] [--io auto|batched|portable] [--runs 1]
 *     [--mtu 1500]       (both peers' MTU; default the loopback path's, 9000)
 *     [--cpu-prof DIR]   (the gateways write V8 CPU profiles there; they are stopped with SIGTERM)
 *     [--max-rate-mbit N] (both peers' maxRate: the pacer, not the host, sets the rate, so CPU per GB
 *                         is comparable between runs on a busy machine)
 *
 * One JSON line per run on stdout: {"event":"done", mb moved, seconds,
 * Mbit/s, completed, the gateways' CPU seconds (user+system, from
 * /proc/PID/stat, worker threads included) and CPU seconds per delivered
 * GB, each thread's share, the datagrams each gateway's peer port sent
 * and received, and the last status samples}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fetchStatus } from '../../src/tpo/control-socket.js';
import type { TpoGatewayStatus } from '../../src/tpo/index.js';
import { flag } from './load-common.js';
import { loopbackPairPlace, pairConfigs } from '../../harness/tpo/gateway-pair.js';
import { processSeconds as cpuSeconds, threadDiff, threadSeconds } from '../lib/cpu.js';

const MB = Number(flag('mb', '100'));
const MAX_S = Number(flag('max-s', '60'));
const IO = flag('io', 'auto');
/** Both peers' MTU (default: the loopback path's 9000); 1500 sizes datagrams as on a WAN path. */
const MTU = process.argv.includes('--mtu') ? Number(flag('mtu', '1500')) : undefined;
/** Both peers' maxRate, Mbit/s (undefined: no cap). */
const MAX_RATE_MBIT = process.argv.includes('--max-rate-mbit') ? Number(flag('max-rate-mbit', '150')) : undefined;
const RUNS = Number(flag('runs', '1'));
const SAMPLE_MS = Number(flag('sample-ms', '1000'));
const QUIET = process.argv.includes('--quiet');
const PROF_DIR = process.argv.includes('--cpu-prof') ? flag('cpu-prof', 'bench/results/prof') : undefined;
/** Passes TPO_DEBUG=<name> to each gateway and prints its 'DBG' lines (a debugging build's). */
const DEBUG = process.argv.includes('--debug');

function freePort(kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'tcp') {
    return new Promise((resolve, reject) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
      s.on('error', reject);
    });
  }
  return import('node:dgram').then(
    (dgram) =>
      new Promise((resolve) => {
        const s = dgram.createSocket('udp4');
        s.bind(0, '127.0.0.1', () => {
          const p = s.address().port;
          s.close(() => resolve(p));
        });
      }),
  );
}

/** Gateways running now: killed whatever way this process ends (a closed pipe, a signal, a throw). */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGPIPE', 'SIGHUP'] as const) process.on(sig, () => process.exit(1));
process.stdout.on('error', () => process.exit(1));
process.stderr.on('error', () => process.exit(1));

function startGateway(config: string, name: string): Promise<ChildProcess> {
  const prof = PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : [];
  const p = spawn(process.execPath, [...prof, '--import', 'tsx', 'src/cli/main.ts', 'tpo', '--config', config, '--io', IO], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...(DEBUG ? { TPO_DEBUG: name } : {}) },
  });
  live.add(p);
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${err}`)), 20_000);
    p.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (DEBUG) for (const l of d.toString().split('\n')) if (l.startsWith('DBG')) process.stderr.write(`${l}\n`);
      if (new RegExp(`sluice tpo: ${name} up`).test(err)) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.once('exit', (c) => reject(new Error(`${name} exited ${c}: ${err}`)));
  });
}

interface Sample {
  t: number;
  a?: string;
  b?: string;
}

function describe(s: TpoGatewayStatus | undefined): string {
  if (!s) return '-';
  const p = s.peers[0];
  const f = s.flows[0];
  return `peer srtt=${p?.srttMs} bw=${p?.bandwidthMbit} pace=${p?.pacingMbit} retx=${p?.retransmissions} | flow ${f ? `${f.state} out=${(f.bytesOut / 1e6).toFixed(1)}MB in=${(f.bytesIn / 1e6).toFixed(1)}MB app=${f.pendingToApp}` : 'none'}`;
}

async function run(index: number): Promise<object> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-loop-'));
  const key = randomBytes(32).toString('hex');
  const [udpA, udpB, listen, sinkPort] = [await freePort('udp'), await freePort('udp'), await freePort('tcp'), await freePort('tcp')];
  // The same configs as the bench's loopback profile (harness/tpo/gateway-pair.ts), here on the host.
  const { a, b } = pairConfigs(
    loopbackPairPlace('', udpA, udpB),
    { mode: 'explicit', tcpTarget: sinkPort, listenPort: listen, ...(MTU ? { mtu: MTU } : {}) },
    dir,
    key,
  );
  if (MAX_RATE_MBIT) for (const c of [a, b] as { peers: { maxRate?: number }[] }[]) c.peers[0]!.maxRate = MAX_RATE_MBIT * 1e6;
  const control = { a: join(dir, 'gwa.sock'), b: join(dir, 'gwb.sock') };
  writeFileSync(join(dir, 'gwa.json'), JSON.stringify(a));
  writeFileSync(join(dir, 'gwb.json'), JSON.stringify(b));

  let received = 0;
  let doneAt = 0;
  const sink = net.createServer((s) => {
    s.on('data', (d) => (received += d.length));
    s.on('end', () => {
      doneAt = performance.now();
      s.end();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => sink.listen(sinkPort, '127.0.0.1', () => r()));
  const gwb = await startGateway(join(dir, 'gwb.json'), 'gwb');
  const gwa = await startGateway(join(dir, 'gwa.json'), 'gwa');
  const samples: Sample[] = [];
  try {
    // Until the pair is up.
    for (let i = 0; i < 200; i++) {
      const s = (await fetchStatus(control.a).catch(() => undefined)) as TpoGatewayStatus | undefined;
      if (s?.peers[0]?.up) break;
      await sleep(50);
    }
    const cpu0 = { a: cpuSeconds(gwa.pid!), b: cpuSeconds(gwb.pid!) };
    const threads0 = { a: threadSeconds(gwa.pid), b: threadSeconds(gwb.pid) };
    const total = MB * 1e6;
    const chunk = randomBytes(1 << 20);
    const t0 = performance.now();
    const client = net.connect(listen, '127.0.0.1');
    client.on('error', () => {});
    await new Promise<void>((r) => client.once('connect', () => r()));
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!client.write(chunk.subarray(0, n))) return;
      }
      client.end();
    };
    client.on('drain', pump);
    pump();
    const deadline = t0 + MAX_S * 1000;
    let nextSample = t0 + SAMPLE_MS;
    while (!doneAt && performance.now() < deadline) {
      await sleep(20);
      if (performance.now() >= nextSample) {
        nextSample += SAMPLE_MS;
        const [sa, sb] = await Promise.all([
          fetchStatus(control.a).catch(() => undefined) as Promise<TpoGatewayStatus | undefined>,
          fetchStatus(control.b).catch(() => undefined) as Promise<TpoGatewayStatus | undefined>,
        ]);
        const sample = { t: Math.round(performance.now() - t0), a: describe(sa), b: describe(sb) };
        samples.push(sample);
        if (!QUIET)
          process.stderr.write(`[${index}] ${(sample.t / 1000).toFixed(1)}s rx=${(received / 1e6).toFixed(1)}MB\n  a: ${sample.a}\n  b: ${sample.b}\n`);
      }
    }
    const end = doneAt || performance.now();
    const seconds = (end - t0) / 1000;
    const cpu = { a: cpuSeconds(gwa.pid!) - cpu0.a, b: cpuSeconds(gwb.pid!) - cpu0.b };
    const threads = { a: threadDiff(threads0.a, threadSeconds(gwa.pid)), b: threadDiff(threads0.b, threadSeconds(gwb.pid)) };
    const perGb = (s: number) => (received > 0 ? +((s * 1e9) / received).toFixed(1) : null);
    // Datagrams each gateway's peer port sent and received (gwb's sent: mostly acks).
    const ports = await Promise.all(
      [control.a, control.b].map(async (c) => {
        const s = (await fetchStatus(c).catch(() => undefined)) as TpoGatewayStatus | undefined;
        return s ? { sent: s.port.datagramsSent, received: s.port.datagramsReceived } : undefined;
      }),
    );
    client.destroy();
    return {
      event: 'done',
      run: index,
      io: IO,
      mb: MB,
      movedMb: +(received / 1e6).toFixed(2),
      completed: received >= total,
      seconds: +seconds.toFixed(3),
      mbit: +((received * 8) / seconds / 1e6).toFixed(1),
      cpuA: +cpu.a.toFixed(2),
      cpuB: +cpu.b.toFixed(2),
      cpuPerGbA: perGb(cpu.a),
      cpuPerGbB: perGb(cpu.b),
      threadsA: threads.a,
      threadsB: threads.b,
      datagramsA: ports[0],
      datagramsB: ports[1],
      last: samples.slice(-2),
    };
  } finally {
    // A profile is written only on a clean exit: ask first, then insist.
    if (PROF_DIR) await Promise.all([gwa, gwb].map((g) => stopGently(g)));
    gwa.kill('SIGKILL');
    gwb.kill('SIGKILL');
    sink.close();
    live.clear();
    rmSync(dir, { recursive: true, force: true });
  }
}

function stopGently(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 5000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

for (let i = 0; i < RUNS; i++) {
  const r = await run(i);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
process.exit(0);
