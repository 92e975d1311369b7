/** The tcp suite's results (bench/lib/tcp-suite.ts) and their Markdown report. */
import { pairedRatio, spread, type Spread } from './stats.js';

export interface TcpTrial {
  peer: string;
  repeat: number;
  seconds?: number;
  gbps?: number;
  proxyCpuS?: number;
  cpuSPerGB?: number;
  gbpsPerCore?: number | undefined;
  p50Us?: number;
  p99Us?: number;
  /** Busy share of the whole host (both CPUs, everyone's work) during the bulk transfer. */
  hostBusy?: number;
  error?: string;
}

export interface TcpPeerInfo {
  name: string;
  description: string;
  version: string;
  threads?: number;
  unavailable?: string;
  /** Sluice's sockmap path: where the bytes of the whole run (pings and bulk, every repeat) went, from the relay's last counters. */
  sockmap?: { kernelBytes: number; userBytes: number; throttles: number; fallbackPairs: number };
}

export interface TcpResults {
  at: string;
  host: string;
  quick: boolean;
  repeats: number;
  bulkBytes: number;
  pingRounds: number;
  pingSize: number;
  congestionControl: string;
  machine: Record<string, unknown>;
  loadavgStart: number[];
  loadavgEnd: number[];
  peers: TcpPeerInfo[];
  trials: TcpTrial[];
}

const fmt = (d: number) => (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const range = (s: Spread | undefined, f: (v: number) => string) => (s ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : '–');

/** Per-repeat values of one metric for one peer, in repeat order (NaN where the trial failed). */
function series(r: TcpResults, peer: string, key: keyof TcpTrial): number[] {
  return Array.from({ length: r.repeats }, (_, i) => {
    const t = r.trials.find((x) => x.peer === peer && x.repeat === i + 1);
    const v = t?.[key];
    return typeof v === 'number' ? v : NaN;
  });
}

function minus(a: number[], b: number[]): number[] {
  return a.map((v, i) => v - b[i]!);
}

export function tcpMarkdown(r: TcpResults): string {
  const peers = r.peers.filter((p) => !p.unavailable).map((p) => p.name);
  const ref = peers.includes('nginx') ? 'nginx' : undefined;
  const rows = peers.map((p) => {
    const gbps = series(r, p, 'gbps');
    const perCore = series(r, p, 'gbpsPerCore');
    const cpu = series(r, p, 'cpuSPerGB');
    const p50 = series(r, p, 'p50Us');
    const p99 = series(r, p, 'p99Us');
    const d50 = minus(p50, series(r, 'direct', 'p50Us'));
    const d99 = minus(p99, series(r, 'direct', 'p99Us'));
    const vs = (mine: number[], key: keyof TcpTrial, lowerBetter = false) =>
      ref && p !== ref ? range(lowerBetter ? pairedRatio(series(r, ref, key), mine) : pairedRatio(mine, series(r, ref, key)), fmt(2)) : p === ref ? '1' : '–';
    return [
      p,
      range(spread(gbps), fmt(2)),
      p === 'direct' ? '–' : range(spread(cpu), fmt(3)),
      p === 'direct' ? '–' : range(spread(perCore), fmt(2)),
      p === 'direct' ? '–' : vs(perCore, 'gbpsPerCore'),
      vs(gbps, 'gbps'),
      range(spread(p50), fmt(0)),
      range(spread(p99), fmt(0)),
      p === 'direct' ? '–' : range(spread(d50), fmt(0)),
      p === 'direct' ? '–' : range(spread(d99), fmt(0)),
      String(series(r, p, 'gbps').filter(Number.isFinite).length),
    ];
  });
  const busy = spread(r.trials.map((t) => t.hostBusy ?? NaN));
  const errors = r.trials.filter((t) => t.error);
  const m = r.machine;
  return [
    `# TCP suite (issue 22, part 2), ${r.at} (${r.host})${r.quick ? ', --quick' : ''}`,
    '',
    `${String(m.cpuModel)}, ${String(m.cores)} cores, kernel ${String(m.kernel)}, node ${String(m.node)}. TCP congestion control: **${r.congestionControl}** (net.ipv4.tcp_congestion_control).`,
    `Load average at start ${r.loadavgStart.join(' ')}, at end ${r.loadavgEnd.join(' ')} (other work shared this 2-core machine); host busy during the bulk transfers: median ${busy ? (busy.median * 100).toFixed(0) : '–'} % (min ${busy ? (busy.min * 100).toFixed(0) : '–'}, max ${busy ? (busy.max * 100).toFixed(0) : '–'}).`,
    '',
    `Loopback (127.0.0.1). Each proxy pinned to CPU 1, the client and the sink (Node, bench/tools/tcp-load.ts) to CPU 0. ${r.repeats} repeats; each repeat runs every peer once, order rotated per repeat.`,
    `Throughput: one connection, ${r.bulkBytes / 2 ** 20} MiB, Gbit/s = bytes ÷ (connect → the sink's answer after the last byte). CPU s/GB: the proxy's CPU time ÷ GB (10^9 B): every thread's on-CPU time from /proc/<pid>/task/*/schedstat, plus cutime + cstime from /proc/<pid>/stat for reaped children (socat).`,
    "Gbit/s per core = bytes moved per CPU-second of the proxy (Gbit/s ÷ cores it kept busy). On loopback the receive side of each segment is processed in the sender's system call, so a proxy's CPU includes the TCP receive work for what it sends (and the client pays for what the proxy receives).",
    `Latency: ${r.pingRounds} round trips of ${r.pingSize} B (TCP_NODELAY, after ${Math.ceil(r.pingRounds / 10)} warm-up) per repeat; added = the peer's percentile − direct's in the same repeat. Round trips include the Node client's and sink's event loops (same for every peer).`,
    'Cells: median (min–max) over repeats; ratios vs nginx are per repeat (× nginx > 1: better than nginx — more throughput, more per core).',
    '',
    '| peer | Gbit/s | proxy CPU s/GB | Gbit/s per core | per core × nginx | Gbit/s × nginx | RTT p50 µs | RTT p99 µs | added p50 µs | added p99 µs | n |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((x) => `| ${x.join(' | ')} |`),
    '',
    '### Peers',
    '',
    ...r.peers.map(
      (p) =>
        `- **${p.name}**: ${p.description}${p.version ? `; ${p.version}` : ''}${p.threads ? `; ${p.threads} thread(s) in the main process` : ''}${p.unavailable ? ` — **skipped: ${p.unavailable}**` : ''}${p.sockmap ? `; over the run ${sockmapShare(p.sockmap)}` : ''}`,
    ),
    ...(errors.length ? ['', '### Errors', '', ...errors.map((t) => `- #${t.repeat} ${t.peer}: ${t.error}`)] : []),
    '',
  ].join('\n');
}

/** "12.3 GB redirected in the kernel, 3.2 GB by Node (79 % in the kernel), 40 throttles". */
function sockmapShare(m: NonNullable<TcpPeerInfo['sockmap']>): string {
  const gb = (b: number) => (b / 1e9).toFixed(2);
  const total = m.kernelBytes + m.userBytes;
  const pct = total > 0 ? Math.round((m.kernelBytes / total) * 100) : 0;
  return `${gb(m.kernelBytes)} GB redirected in the kernel, ${gb(m.userBytes)} GB forwarded by Node (${pct} % in the kernel), ${m.throttles} throttles, ${m.fallbackPairs} pairs not taken`;
}
