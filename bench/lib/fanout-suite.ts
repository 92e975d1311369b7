/**
 * `--suites fanout` (issue 22, part 3): one live TS-like UDP stream (1316-
 * byte datagrams at --fanout-rate, default 10 Mbit/s) served to N plain
 * TCP clients by three servers, interleaved per step and repeat:
 *   - sluice: `sluice fanout --tcp` (one write into a pipe per chunk,
 *     tee(2) per client, splice(2) into each socket, in a worker thread);
 *   - gstreamer: `gst-launch-1.0 udpsrc ! tcpserversink` (Debian
 *     gstreamer1.0-tools/-plugins-base/-plugins-good, installed through
 *     bench/lib/install.ts; skipped with the reason when missing);
 *   - naive: a node:net server writing each datagram to every client
 *     (bench/tools/fanout-naive.ts).
 * N climbs a ladder; a server "serves" N when every client got every
 * datagram the generator sent, in order, in at least one repeat; it stops
 * climbing after a step it did not serve. Per trial: the server's CPU
 * seconds (utime+stime of its process tree), delivered bytes, CPU per
 * delivered MB; the clients' process CPU is recorded too (on this 2-core
 * machine it is often the limit). Loopback only, no namespaces; every
 * trial bounded in time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { loadavg, hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree, sampleCpu } from './cpu.js';
import { commandExists, ensureInstalled, succeeds, versionOf, type Requirement } from './install.js';
import { machineInfo } from './machine.js';
import { pairedRatio, spread, type Spread } from './stats.js';

type Log = (msg: string) => void;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = ['--import', 'tsx'];
export const FANOUT_SERVERS = ['sluice', 'gstreamer', 'naive'] as const;
export type FanoutServer = (typeof FANOUT_SERVERS)[number];

export interface FanoutTrial {
  server: FanoutServer;
  clients: number;
  repeat: number;
  sent: number;
  /** Clients that got every datagram in order. */
  complete: number;
  /** Smallest share of the sent datagrams any client got. */
  minShare: number;
  deliveredBytes: number;
  serverCpuS: number;
  clientsCpuS: number;
  seconds: number;
  /** Server CPU per delivered MB (1e6 bytes), ms. */
  cpuMsPerMB: number;
  load1: number;
}

export interface FanoutResults {
  at: string;
  host: string;
  machine: Record<string, unknown>;
  rateBps: number;
  seconds: number;
  ladder: number[];
  repeats: number;
  versions: Record<string, string>;
  skipped: Record<string, string>;
  trials: FanoutTrial[];
}

const gstRequirement: Requirement = {
  what: 'gstreamer tcpserversink',
  present: () => commandExists('gst-launch-1.0') && succeeds('gst-inspect-1.0', ['udpsrc']) && succeeds('gst-inspect-1.0', ['tcpserversink']),
  packages: ['gstreamer1.0-tools', 'gstreamer1.0-plugins-base', 'gstreamer1.0-plugins-good'],
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tcpUp(port: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

function startServer(server: FanoutServer, udp: number, tcp: number): ChildProcess {
  const o = { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  if (server === 'sluice')
    return spawn(process.execPath, [...TSX, 'src/cli/main.ts', 'fanout', '--tcp', `tcp://127.0.0.1:${tcp}=udp://127.0.0.1:${udp}`, '--stats-interval', '0'], o);
  if (server === 'naive') return spawn(process.execPath, [...TSX, 'bench/tools/fanout-naive.ts', String(udp), String(tcp)], o);
  return spawn(
    'gst-launch-1.0',
    [
      '-q',
      'udpsrc',
      `port=${udp}`,
      'address=127.0.0.1',
      `buffer-size=${4 << 20}`,
      '!',
      'tcpserversink',
      'host=127.0.0.1',
      `port=${tcp}`,
      'sync=false',
      'async=false',
    ],
    o,
  );
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGINT');
  if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) return;
  p.kill('SIGKILL');
  await exited;
}

function lineFrom(p: ChildProcess, match: RegExp, ms: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const t = setTimeout(() => resolve(undefined), ms);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = buf.split('\n').find((l) => match.test(l));
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
}

/** Nothing left of a previous trial may reach the next: a fresh port pair per trial. */
let nextPort = 46_100;

async function trial(server: FanoutServer, n: number, repeat: number, rateBps: number, seconds: number): Promise<FanoutTrial> {
  const udp = nextPort++;
  const tcp = nextPort++;
  // Make sure no stale receiver sits on the UDP port.
  await new Promise<void>((r) => {
    const s = createSocket('udp4');
    s.on('error', () => r());
    s.bind(udp, '127.0.0.1', () => s.close(() => r()));
  });
  const srv = startServer(server, udp, tcp);
  let stderr = '';
  srv.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let clients: ChildProcess | undefined;
  try {
    if (!(await tcpUp(tcp, 30_000))) throw new Error(`${server} did not listen: ${stderr.slice(-300)}`);
    await sleep(300);
    clients = spawn(process.execPath, [...TSX, 'bench/tools/fanout-clients.ts', String(tcp), String(n)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    if (!(await lineFrom(clients, /^connected/, 60_000))) throw new Error('clients did not connect');
    await sleep(500);
    const serverPids = processTree(srv.pid!);
    const cpu0 = sampleCpu(serverPids).statS;
    const c0 = sampleCpu([clients.pid!]).statS;
    const t0 = performance.now();
    const gen = spawn(process.execPath, [...TSX, 'bench/tools/fanout-gen.ts', String(udp), String(rateBps), String(seconds)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const genLine = await lineFrom(gen, /"sent"/, (seconds + 60) * 1000);
    await sleep(1500);
    const cpuS = sampleCpu(serverPids).statS - cpu0;
    const clientsCpuS = sampleCpu([clients.pid!]).statS - c0;
    const elapsed = (performance.now() - t0) / 1000;
    const sent = genLine ? (JSON.parse(genLine) as { sent: number }).sent : 0;
    const reportLine = lineFrom(clients, /^\{"clients"/, 20_000);
    clients.stdin!.write('report\n');
    const report = await reportLine;
    const per = report ? (JSON.parse(report) as { clients: { bytes: number; datagrams: number; gaps: number; last: number }[] }).clients : [];
    const delivered = per.reduce((s, c) => s + c.datagrams * 1316, 0);
    return {
      server,
      clients: n,
      repeat,
      sent,
      complete: per.filter((c) => c.gaps === 0 && c.datagrams === sent).length,
      minShare: per.length === 0 || sent === 0 ? 0 : Math.min(...per.map((c) => c.datagrams / sent)),
      deliveredBytes: delivered,
      serverCpuS: cpuS,
      clientsCpuS,
      seconds: elapsed,
      cpuMsPerMB: delivered > 0 ? (cpuS * 1000) / (delivered / 1e6) : NaN,
      load1: loadavg()[0]!,
    };
  } finally {
    if (clients) await stop(clients);
    await stop(srv);
  }
}

export async function runFanoutSuite(o: {
  quick: boolean;
  repeats: number;
  outDir: string;
  log: Log;
  install: boolean;
}): Promise<{ md: string; json: string }> {
  const { log } = o;
  const rateBps = Number(process.env.SLUICE_BENCH_FANOUT_RATE ?? 10e6);
  const seconds = o.quick ? 3 : 5;
  const ladder = (process.env.SLUICE_BENCH_FANOUT_LADDER ?? (o.quick ? '10,50,100' : '10,50,100,200')).split(',').map(Number);
  const res: FanoutResults = {
    at: new Date().toISOString(),
    host: hostname(),
    machine: machineInfo(),
    rateBps,
    seconds,
    ladder,
    repeats: o.repeats,
    versions: { gstreamer: '', node: process.version },
    skipped: {},
    trials: [],
  };
  const missing = o.install ? ensureInstalled([gstRequirement], log) : gstRequirement.present() ? new Map() : new Map([[gstRequirement.what, 'not installed']]);
  if (missing.size > 0) res.skipped.gstreamer = [...missing.values()].join('; ');
  else res.versions.gstreamer = versionOf('gst-launch-1.0', ['--version'], /^GStreamer /);
  const servers = FANOUT_SERVERS.filter((s) => !res.skipped[s]);
  log(
    `fanout: ${rateBps / 1e6} Mbit/s TS-like input, clients ${ladder.join('/')}, ${seconds} s per trial, ${o.repeats} repeats, servers ${servers.join(', ')}`,
  );
  const failedAt = new Map<FanoutServer, number>();
  for (const n of ladder) {
    for (let repeat = 1; repeat <= o.repeats; repeat++) {
      // Interleaved, rotating the order each repeat.
      const order = servers.map((_, i) => servers[(i + repeat + n) % servers.length]!);
      for (const server of order) {
        if ((failedAt.get(server) ?? Infinity) < n) continue;
        try {
          const t = await trial(server, n, repeat, rateBps, seconds);
          res.trials.push(t);
          log(
            `  ${server} ${n} clients #${repeat}: ${t.complete}/${n} complete (min ${(t.minShare * 100).toFixed(1)} %), server CPU ${t.serverCpuS.toFixed(2)} s = ${t.cpuMsPerMB.toFixed(2)} ms/MB, clients CPU ${t.clientsCpuS.toFixed(2)} s, load ${t.load1.toFixed(1)}`,
          );
        } catch (err) {
          log(`  ${server} ${n} clients #${repeat}: failed: ${(err as Error).message}`);
        }
        writeResults(o.outDir, res);
      }
    }
    // A server climbs on while it served every client completely in at least one repeat at this step
    // (one noisy repeat on a loaded machine does not end its ladder).
    for (const server of servers) {
      if (failedAt.has(server)) continue;
      if (!res.trials.some((t) => t.server === server && t.clients === n && t.complete === n)) failedAt.set(server, n);
    }
  }
  return writeResults(o.outDir, res);
}

let stamp: string | undefined;
function writeResults(outDir: string, r: FanoutResults): { md: string; json: string } {
  stamp ??= r.at.replace(/[:]/g, '').replace(/\..*$/, '');
  const json = join(outDir, `fanout-${stamp}.json`);
  const md = join(outDir, `fanout-${stamp}.md`);
  writeFileSync(json, `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(md, fanoutMarkdown(r));
  return { md, json };
}

const fmt = (s: Spread | undefined, d = 2) => (s ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : '—');

export function fanoutMarkdown(r: FanoutResults): string {
  const out = [
    `# Fan-out bench (${r.at})`,
    '',
    `Host ${r.host}; ${String(r.machine.cpuModel ?? '')}, ${String(r.machine.cores ?? '')} cores, kernel ${String(r.machine.kernel ?? '')}, node ${r.versions.node}; GStreamer ${r.versions.gstreamer || '—'}.`,
    `Input: ${r.rateBps / 1e6} Mbit/s of 1316-byte TS-like datagrams on loopback, ${r.seconds} s per trial, ${r.repeats} repeats, servers interleaved. Plain TCP clients in one Node process.`,
    ...Object.entries(r.skipped).map(([k, v]) => `Skipped ${k}: ${v}.`),
    '',
    '"complete": clients that got every datagram in order. CPU: utime+stime of the server process tree over the trial; ms per delivered MB (1e6 bytes). Medians (min–max) over repeats.',
    '',
    '| clients | server | complete (median) | server CPU s | ms CPU / MB | clients CPU s | load1 |',
    '|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const n of r.ladder) {
    for (const s of FANOUT_SERVERS) {
      const t = r.trials.filter((x) => x.server === s && x.clients === n);
      if (t.length === 0) continue;
      out.push(
        `| ${n} | ${s} | ${spread(t.map((x) => x.complete))?.median ?? 0}/${n} | ${fmt(spread(t.map((x) => x.serverCpuS)))} | ${fmt(spread(t.map((x) => x.cpuMsPerMB)), 3)} | ${fmt(spread(t.map((x) => x.clientsCpuS)))} | ${fmt(spread(t.map((x) => x.load1)), 1)} |`,
      );
    }
  }
  out.push('', 'Ratios of CPU per delivered MB, paired by repeat (median, min–max): below 1 means Sluice used less.', '');
  out.push('| clients | sluice / gstreamer | sluice / naive |', '|---:|---:|---:|');
  for (const n of r.ladder) {
    const per = (s: FanoutServer) =>
      r.trials
        .filter((x) => x.server === s && x.clients === n)
        .sort((a, b) => a.repeat - b.repeat)
        .map((x) => x.cpuMsPerMB);
    out.push(`| ${n} | ${fmt(pairedRatio(per('sluice'), per('gstreamer')))} | ${fmt(pairedRatio(per('sluice'), per('naive')))} |`);
  }
  const served = (s: FanoutServer) => {
    const ok = r.ladder.filter((n) => r.trials.some((x) => x.server === s && x.clients === n && x.complete === n));
    return ok.length ? Math.max(...ok) : 0;
  };
  out.push('', `Most clients served completely in at least one repeat: ${FANOUT_SERVERS.map((s) => `${s} ${served(s)}`).join(', ')}.`, '');
  return out.join('\n');
}
