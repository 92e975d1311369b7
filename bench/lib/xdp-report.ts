/**
 * `--suites xdp`: runs bench/lib/xdp-suite.ts (root only; says why not
 * otherwise) and writes bench/results/<stamp>-xdp.{json,md}: per size and
 * hook the medians and spreads over the repeats, and the paired ratios
 * xdp/tcx (trials of one repeat run back to back).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { commandExists, ensureInstalled } from './install.js';
import { machineInfo } from './machine.js';
import { pairedRatio, spread, type Spread } from './stats.js';
import { XDP_VARIANTS, runXdpSuite, xdpSkipReason, type XdpTrial } from './xdp-suite.js';

const SIZES = [64, 1316];

function fmt(s: Spread | undefined, scale = 1, digits = 0): string {
  if (!s) return 'n/a';
  const f = (v: number) => (v * scale).toFixed(digits);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

function mostCommon(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
}

function summary(trials: readonly XdpTrial[]): string[] {
  const lines: string[] = [];
  lines.push(
    '| size | hook | delivered Mpps | relay ns/packet | packets/s per relay core (1e9 / ns) | relay thread busy | sink ns/packet | offered Mpps | limited by (most trials) |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const size of SIZES) {
    for (const v of XDP_VARIANTS) {
      const t = trials.filter((x) => x.size === size && x.variant === v);
      if (!t.length) continue;
      const ns = spread(t.map((x) => x.relayNsPerPacket));
      lines.push(
        `| ${size} B | ${v} | ${fmt(
          spread(t.map((x) => x.deliveredPps)),
          1e-6,
          3,
        )} | ${fmt(ns)} | ${ns ? (1e9 / ns.median / 1e6).toFixed(2) : 'n/a'} M | ${fmt(spread(t.map((x) => x.relayBusy)), 100)} % | ${fmt(
          spread(t.map((x) => x.sinkNsPerPacket)),
        )} | ${fmt(spread(t.map((x) => x.offeredPps)), 1e-6, 2)} | ${mostCommon(t.map((x) => x.limit.replace(/\d+(\/s| %)/g, 'N$1')))} |`,
      );
    }
  }
  lines.push(
    '',
    '| size | xdp/tcx relay ns per packet (paired, median, min–max) | xdp/tcx delivered packets/s | generic/tcx relay ns per packet | generic/tcx delivered |',
    '|---|---|---|---|---|',
  );
  for (const size of SIZES) {
    const of = (v: string, k: 'relayNsPerPacket' | 'deliveredPps') =>
      trials
        .filter((x) => x.size === size && x.variant === v)
        .sort((a, b) => a.repeat - b.repeat)
        .map((x) => x[k]);
    lines.push(
      `| ${size} B | ${fmt(pairedRatio(of('xdp', 'relayNsPerPacket'), of('tcx', 'relayNsPerPacket')), 1, 2)} | ${fmt(pairedRatio(of('xdp', 'deliveredPps'), of('tcx', 'deliveredPps')), 1, 2)} | ${fmt(
        pairedRatio(of('generic', 'relayNsPerPacket'), of('tcx', 'relayNsPerPacket')),
        1,
        2,
      )} | ${fmt(pairedRatio(of('generic', 'deliveredPps'), of('tcx', 'deliveredPps')), 1, 2)} |`,
    );
  }
  return lines;
}

const METHOD = `Method (bench/lib/xdp-suite.ts): gen ─veth─ relay (sluice relay --tier kernel --kernel-hook xdp|tcx, redirect 1→1) ─veth─ sink, in namespaces.
Generator: no pktgen on this host (no /proc/net/pktgen, no loadable modules), so bench/tools/xdp-live-gen.ts sends one UDP frame template with BPF_PROG_TEST_RUN live frames (XDP_TX out of the generator's veth, as xdp-trafficgen does), unpaced, SCHED_FIFO 1 on CPU 1.
Relay: both variants run the relay's receive in the same threaded-NAPI kernel thread of its input veth (napi/xin0-N, SCHED_FIFO 1, pinned to CPU 0): with 'xdp' Sluice's XDP program; with 'tcx' a pass-through XDP program (bench/tools/xdp-pass.ts, gives the veth its NAPI and elides GRO, so one skb per datagram) then Sluice's tcx program. Relay CPU per packet = that thread's run time (/proc/<tid>/schedstat, ns) / packets delivered: only the relay's own work, none of the shared machine's other load (softirq is host-wide, so /proc/stat would count other processes' network work too). Packets/s per core = 1e9 / that.
Generic: kernelHook 'xdp' with the relay's input a macvlan (no native XDP, so Sluice attaches in generic mode), whose lower veth sits in a namespace of its own where Sluice attaches nothing; the relay's thread is that veth's NAPI thread (GRO on for it), so this variant also pays the veth's skb and GRO path and the macvlan's receive handler before generic XDP runs.
Sink: XDP_DROP at the sink veth, counted by the veth (rx_queue_0_xdp_drops), in its own NAPI thread (SCHED_FIFO 2, CPU 1, with the generator); its ns/packet is that thread's time (in the tcx variant it includes copying each skb into an XDP buffer).
Limits: a veth ring holds 256 frames; the generator sends in bursts and shares CPU 1 with the sink, so the relay's thread is rarely saturated; "delivered" is what this 2-core host passed, the per-core figure is what the relay's CPU cost implies. Each repeat runs both hooks back to back, order alternating.`;

export async function runXdpBench(opts: {
  quick: boolean;
  repeats: number;
  outDir: string;
  log: (m: string) => void;
  install: boolean;
}): Promise<{ md?: string; json?: string }> {
  // The suite sets offloads and reads the veths' counters with ethtool.
  const ethtool = { what: 'ethtool', present: () => commandExists('ethtool'), packages: ['ethtool'] };
  const missing = opts.install ? ensureInstalled([ethtool], opts.log) : new Map(ethtool.present() ? [] : [['ethtool', 'not installed (--no-install)']]);
  const skip = xdpSkipReason() ?? missing.get('ethtool');
  if (skip) {
    opts.log(`xdp: skipped (${skip})`);
    return {};
  }
  const seconds = opts.quick ? 1 : 2;
  const load0 = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim();
  const trials = await runXdpSuite({ repeats: opts.repeats, seconds, sizes: SIZES, rates: [0], log: opts.log });
  const now = new Date();
  const host =
    hostname()
      .split('.')[0]!
      .replace(/[^a-zA-Z0-9-]/g, '')
      .slice(0, 24) || 'run';
  const stamp = `${now.toISOString().slice(0, 16).replace(/:/g, '')}-${host}-xdp`;
  mkdirSync(opts.outDir, { recursive: true });
  const json = join(opts.outDir, `${stamp}.json`);
  const md = join(opts.outDir, `${stamp}.md`);
  const data: XdpResults = { suite: 'xdp', at: now.toISOString(), machine: machineInfo(), seconds, repeats: opts.repeats, loadavgBefore: load0, trials };
  writeFileSync(json, `${JSON.stringify(data, null, 2)}\n`);
  writeFileSync(md, renderXdpMd(data));
  return { md, json };
}

export interface XdpResults {
  suite: 'xdp';
  at: string;
  machine: Record<string, unknown>;
  seconds: number;
  repeats: number;
  loadavgBefore: string;
  trials: XdpTrial[];
}

/** The markdown of a run (also to re-render a results JSON). */
export function renderXdpMd(d: XdpResults): string {
  const loads = d.trials.map((t) => t.loadavg[0]!);
  return [
    `# Kernel-tier redirect at XDP (native, generic) vs tcx (issue 22, parts 1 and 3), ${d.at}`,
    '',
    `Machine: ${JSON.stringify(d.machine)}`,
    `Repeats: ${d.repeats}, ${d.seconds} s per trial; 1-minute load average before: ${d.loadavgBefore.split(' ')[0]}, during: ${Math.min(...loads)}–${Math.max(...loads)} (other sessions share the 2 cores).`,
    '',
    ...summary(d.trials),
    '',
    METHOD,
    ...(d.trials.some((t) => t.generator === 'socket')
      ? [
          '',
          "Generator in this run: the kernel refused BPF_PROG_TEST_RUN live frames (the log names the error), so bench/tools/udp-gen.ts (sendmmsg with UDP GSO, one socket, SCHED_FIFO 1 on CPU 1) offered the load instead of the live-frames generator above. It tops out near the relay's rate and pays the generator side's UDP stack on CPU 1, so more trials are generator-limited; the relay's CPU per packet, read from its NAPI thread, is the comparable figure.",
        ]
      : []),
    '',
  ].join('\n');
}
