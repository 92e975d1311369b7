/**
 * The tcp suite of `npm run bench -- --suites tcp` (issue 22, part 2):
 * Sluice's tcp-redirect (splice path and user-space path) against nginx's
 * stream proxy, HAProxy and socat, with "direct" (no proxy) as the
 * baseline, on loopback, in one run.
 *
 * - Throughput: one connection sends a bounded bulk (default 1 GiB) through
 *   the proxy to a sink, which answers once it has every byte; Gbit/s is
 *   bytes ÷ (connect → answer). CPU is the proxy's utime + stime (+ reaped
 *   children: socat forks) from /proc/<pid>/stat before and after; "per
 *   core" is the bytes moved per CPU-second of the proxy (Gbit/s ÷ cores
 *   busy).
 * - Added latency: ping-pong of 64-byte messages (TCP_NODELAY) through the
 *   proxy; p50 and p99 of the round trips, minus direct's from the same
 *   repeat.
 * The proxy runs on one CPU, the client and the sink on the other (taskset).
 * Every repeat runs every peer once, in an order rotated per repeat.
 * Results: bench/results/<stamp>-<host>-tcp.{md,json}.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname, loadavg } from 'node:os';
import { join } from 'node:path';
import { hostJiffies, processTree } from './cpu.js';
import { ensureInstalled } from './install.js';
import { machineInfo } from './machine.js';
import { TCP_PEERS, readyLine, spawnOn, stopChild, threadCount, treeCpuSeconds, type RunningProxy, type TcpPeer } from './tcp-peers.js';
import { tcpMarkdown, type TcpPeerInfo, type TcpResults, type TcpTrial } from './tcp-report.js';

/** The proxy's CPU and the load's (client + sink). */
const PROXY_CPU = 1;
const LOAD_CPU = 0;
const PING_SIZE = 64;

type Log = (line: string) => void;

export interface TcpSuiteOptions {
  quick: boolean;
  repeats: number;
  install: boolean;
  outDir: string;
  /** Peer names to run (default all). */
  peers?: readonly string[];
  log: Log;
}

function sysctl(name: string): string {
  const r = spawnSync('sysctl', ['-n', name], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** Runs the load tool once (pinned to LOAD_CPU); its last JSON line. */
function load(args: readonly string[]): Promise<Record<string, unknown>> {
  const { child, output } = spawnOn(LOAD_CPU, process.execPath, ['--import', 'tsx', 'bench/tools/tcp-load.ts', ...args]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const line = output()
        .trim()
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{'));
      if (code !== 0 || !line) reject(new Error(`tcp-load ${args[0]} exited ${code}: ${output().trim().slice(-300)}`));
      else resolve(JSON.parse(line) as Record<string, unknown>);
    });
  });
}

/** Waits until the proxy's process tree is back to `size` processes (socat's per-connection child reaped), ≤ 3 s. */
async function settle(pid: number | undefined, size: number): Promise<void> {
  await new Promise((r) => setTimeout(r, 200));
  if (pid === undefined) return;
  for (let i = 0; i < 28 && processTree(pid).length > size; i++) await new Promise((r) => setTimeout(r, 100));
}

export async function runTcpSuite(o: TcpSuiteOptions): Promise<{ md: string; json: string }> {
  const { log } = o;
  const bulkBytes = (o.quick ? 256 : 1024) * 2 ** 20;
  const rounds = o.quick ? 500 : 2000;
  const wanted = TCP_PEERS.filter((p) => !o.peers || o.peers.includes(p.name));
  const reqs = [...new Map(wanted.flatMap((p) => (p.requirement ? [[p.requirement.what, p.requirement] as const] : []))).values()];
  const missing = o.install ? ensureInstalled(reqs, log) : new Map(reqs.filter((r) => !r.present()).map((r) => [r.what, 'not installed (--no-install)']));
  const res: TcpResults = {
    at: new Date().toISOString(),
    host: hostname(),
    quick: o.quick,
    repeats: o.repeats,
    bulkBytes,
    pingRounds: rounds,
    pingSize: PING_SIZE,
    congestionControl: sysctl('net.ipv4.tcp_congestion_control'),
    machine: machineInfo(),
    loadavgStart: loadavg().map((v) => +v.toFixed(2)),
    loadavgEnd: [],
    peers: wanted.map((p) => ({
      name: p.name,
      description: p.description,
      version: p.requirement && missing.has(p.requirement.what) ? '' : p.version(),
      ...(p.requirement && missing.has(p.requirement.what) ? { unavailable: missing.get(p.requirement.what)! } : {}),
    })),
    trials: [],
  };
  log(
    `tcp: ${wanted.length} peers, ${o.repeats} repeats; bulk ${bulkBytes / 2 ** 20} MiB, ping-pong ${rounds} x ${PING_SIZE} B; congestion control ${res.congestionControl}; load average ${res.loadavgStart.join(' ')}`,
  );
  for (const p of res.peers) if (p.unavailable) log(`  ${p.name}: skipped: ${p.unavailable}`);

  const sink = spawnOn(LOAD_CPU, process.execPath, ['--import', 'tsx', 'bench/tools/tcp-load.ts', 'sink']);
  const running = new Map<string, { peer: TcpPeer; proxy: RunningProxy; baseTree: number }>();
  // An interrupted run (the harness exits on SIGINT) must not leave the proxies and the sink behind.
  const killAll = (): void => {
    for (const pid of [sink.child.pid, ...[...running.values()].map((r) => r.proxy.pid)]) {
      try {
        if (pid !== undefined) process.kill(pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  };
  process.on('exit', killAll);
  try {
    const sinkPort = Number((await readyLine(sink.child, 30_000)).port);
    for (const peer of wanted) {
      const info = res.peers.find((p) => p.name === peer.name)!;
      if (info.unavailable) continue;
      try {
        const proxy = await peer.start({ sinkPort, cpu: PROXY_CPU });
        running.set(peer.name, { peer, proxy, baseTree: proxy.pid === undefined ? 0 : processTree(proxy.pid).length });
        if (proxy.pid !== undefined) info.threads = threadCount(proxy.pid);
      } catch (err) {
        info.unavailable = `did not start: ${(err as Error).message.split('\n')[0]}`;
        log(`  ${peer.name}: ${info.unavailable}`);
      }
    }
    const names = [...running.keys()];
    for (let repeat = 1; repeat <= o.repeats; repeat++) {
      const order = names.map((_, i) => names[(i + repeat - 1) % names.length]!);
      for (const name of order) {
        const { proxy, baseTree } = running.get(name)!;
        const trial: TcpTrial = { peer: name, repeat };
        try {
          const ping = await load(['ping', `127.0.0.1:${proxy.port}`, String(rounds), String(PING_SIZE)]);
          trial.p50Us = Number(ping.p50);
          trial.p99Us = Number(ping.p99);
          await settle(proxy.pid, baseTree);
          const cpu0 = proxy.pid === undefined ? 0 : treeCpuSeconds(proxy.pid);
          const host0 = hostJiffies();
          const bulk = await load(['bulk', `127.0.0.1:${proxy.port}`, String(bulkBytes)]);
          await settle(proxy.pid, baseTree);
          const host1 = hostJiffies();
          trial.seconds = Number(bulk.seconds);
          trial.gbps = (bulkBytes * 8) / trial.seconds / 1e9;
          trial.hostBusy = (host1.busy - host0.busy) / Math.max(1, host1.total - host0.total);
          if (proxy.pid !== undefined) {
            trial.proxyCpuS = treeCpuSeconds(proxy.pid) - cpu0;
            trial.cpuSPerGB = trial.proxyCpuS / (bulkBytes / 1e9);
            trial.gbpsPerCore = trial.proxyCpuS > 0 ? (bulkBytes * 8) / 1e9 / trial.proxyCpuS : undefined;
          }
          log(
            `  #${repeat} ${name}: ${trial.gbps.toFixed(2)} Gbit/s, ${trial.cpuSPerGB === undefined ? '-' : trial.cpuSPerGB.toFixed(3)} CPU s/GB, ` +
              `${trial.gbpsPerCore === undefined ? '-' : trial.gbpsPerCore.toFixed(2)} Gbit/s per core; rtt p50 ${trial.p50Us.toFixed(0)} µs p99 ${trial.p99Us.toFixed(0)} µs; host ${(trial.hostBusy * 100).toFixed(0)} % busy`,
          );
        } catch (err) {
          trial.error = (err as Error).message.slice(0, 500);
          log(`  #${repeat} ${name}: ERROR ${trial.error.split('\n')[0]}`);
        }
        res.trials.push(trial);
      }
    }
  } finally {
    for (const [name, { proxy }] of running) {
      await proxy.stop();
      const sockmap = proxy.final?.()?.sockmap as TcpPeerInfo['sockmap'] | undefined;
      const info = res.peers.find((p) => p.name === name);
      if (info && sockmap) info.sockmap = sockmap;
    }
    await stopChild(sink.child);
    process.off('exit', killAll);
  }
  res.loadavgEnd = loadavg().map((v) => +v.toFixed(2));
  mkdirSync(o.outDir, { recursive: true });
  const stamp = `${res.at.slice(0, 16).replace(/:/g, '')}-${
    res.host
      .split('.')[0]!
      .replace(/[^a-zA-Z0-9-]/g, '')
      .slice(0, 24) || 'run'
  }-tcp${o.quick ? '-quick' : ''}`;
  const md = join(o.outDir, `${stamp}.md`);
  const json = join(o.outDir, `${stamp}.json`);
  writeFileSync(json, `${JSON.stringify(res, null, 2)}\n`);
  writeFileSync(md, tcpMarkdown(res));
  return { md, json };
}
