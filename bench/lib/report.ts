/* eslint-disable max-lines -- every suite's summary and markdown in one place, so the tables of one run stay consistent (ratios, spreads, units) */
/**
 * Summaries and output files: <out>/<stamp>.json (every trial, the summary,
 * the machine), <out>/<stamp>.md (tables) and <out>/latest.md (a copy).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { SENDER_WAYS, type SenderTrial } from './sender-suite.js';
import { pacingMarkdown, pacingTargets, type PacingTrial } from './pacing-suite.js';
import { tpoMarkdown, type TpoResults } from './tpo-suite.js';
import type { TpoWanResults } from './tpo-wan-suite.js';
import { tpoWanMarkdown } from './tpo-wan-report.js';
import { emptyServiceResults, serviceMarkdown, type ServiceResults } from './service-suite.js';
import { join } from 'node:path';
import { scenarioName, type Mode } from './cases.js';
import type { SearchResult } from './search.js';
import { pairedRatio, spread, type Spread } from './stats.js';
import type { Pattern, TrialResult } from './trial.js';

export interface CaseRecord {
  repeat: number;
  peer: string;
  caseId: string;
  mode: Mode;
  fanout: number;
  size: number;
  pattern: Pattern;
  search?: SearchResult;
  trial?: TrialResult;
  error?: string;
}

export interface PeerInfo {
  name: string;
  description: string;
  version: string;
  unavailable?: string;
}

export interface RunInfo {
  startedAt: string;
  finishedAt: string;
  durationS: number;
  complete: boolean;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  peers: PeerInfo[];
}

/** Peers the targets compare against; ratio columns are "this peer ÷ reference". */
export const REFERENCES = ['portable', 'batched', 'gstreamer', 'nginx'] as const;

export interface SummaryRow {
  caseId: string;
  mode: Mode;
  fanout: number;
  size: number;
  pattern: Pattern;
  peer: string;
  n: number;
  /** max: delivered packets/s at the highest lossless rate; cpu: relay host CPU (CPU 0 busy, softirq included) µs per delivered packet. */
  value: Spread | undefined;
  inputPps?: Spread | undefined;
  cpuPct?: Spread | undefined;
  /** Process CPU time (schedstat of the relay's threads) µs per delivered packet: blind to softirq work. */
  processUsPerPkt?: Spread | undefined;
  loss?: Spread | undefined;
  notes: string[];
  /** Ratio of medians to each reference peer in the same case, and the spread of per-repeat ratios. */
  ratios: Record<string, { ofMedians: number; perRepeat: Spread | undefined }>;
}

function valueOf(r: CaseRecord): number {
  if (r.search) return r.search.deliveredPps;
  if (r.trial) return r.trial.coreUsPerPkt;
  return NaN;
}

export function summarize(records: readonly CaseRecord[], peerOrder: readonly string[]): SummaryRow[] {
  const groups = new Map<string, CaseRecord[]>();
  for (const r of records) {
    const k = `${r.caseId}|${r.peer}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows: SummaryRow[] = [];
  for (const list of groups.values()) {
    const first = list[0]!;
    const ok = list.filter((r) => !r.error);
    const notes: string[] = [];
    const errors = list.length - ok.length;
    if (errors) notes.push(`${errors} error(s): ${list.find((r) => r.error)!.error!.slice(0, 120)}`);
    const row: SummaryRow = {
      caseId: first.caseId,
      mode: first.mode,
      fanout: first.fanout,
      size: first.size,
      pattern: first.pattern,
      peer: first.peer,
      n: ok.length,
      value: spread(ok.map(valueOf)),
      notes,
      ratios: {},
    };
    if (first.mode === 'max') {
      row.inputPps = spread(ok.map((r) => r.search!.maxInputPps));
      const gl = ok.filter((r) => r.search!.generatorLimited).length;
      const capped = ok.filter((r) => r.search!.capped).length;
      const none = ok.filter((r) => r.search!.maxInputPps === 0).length;
      if (gl) notes.push(`generator-limited in ${gl}/${ok.length} (a lower bound)`);
      if (capped) notes.push(`hit the input cap in ${capped}/${ok.length}`);
      if (none) notes.push(`no lossless rate found in ${none}/${ok.length}`);
    } else {
      row.cpuPct = spread(ok.map((r) => r.trial!.corePct ?? NaN));
      row.processUsPerPkt = spread(ok.map((r) => r.trial!.cpuUsPerPkt));
      row.loss = spread(ok.map((r) => r.trial!.loss));
      const gl = ok.filter((r) => r.trial!.genLimited).length;
      if (gl) notes.push(`generator-limited in ${gl}/${ok.length}`);
      const lossy = ok.filter((r) => r.trial!.loss > 0.001).length;
      if (lossy) notes.push(`loss > 0.1 % in ${lossy}/${ok.length}`);
    }
    rows.push(row);
  }
  // Ratios against the reference peers, same case; per-repeat pairs by repeat number.
  for (const row of rows) {
    for (const ref of REFERENCES) {
      if (ref === row.peer) continue;
      const other = rows.find((r) => r.caseId === row.caseId && r.peer === ref);
      if (!other?.value || !row.value || other.value.median === 0) continue;
      const byRepeat = (peer: string): number[] => {
        const out: number[] = [];
        for (const r of records) if (r.caseId === row.caseId && r.peer === peer && !r.error) out[r.repeat - 1] = valueOf(r);
        return out;
      };
      row.ratios[ref] = { ofMedians: row.value.median / other.value.median, perRepeat: pairedRatio(byRepeat(row.peer), byRepeat(ref)) };
    }
  }
  const caseOrder = [...new Set(records.map((r) => r.caseId))];
  return rows.sort((a, b) => caseOrder.indexOf(a.caseId) - caseOrder.indexOf(b.caseId) || peerOrder.indexOf(a.peer) - peerOrder.indexOf(b.peer));
}

// ---------------------------------------------------------------------------
// Markdown

function si(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)} k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k`;
  return v.toFixed(0);
}

function fixed(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

function range(s: Spread | undefined, fmt: (v: number) => string): string {
  return s ? `${fmt(s.min)}–${fmt(s.max)}` : '–';
}

/** One ratio column per reference peer, in REFERENCES order. */
const REFERENCE_HEADS = REFERENCES.map((ref) => `÷ ${ref}`);
function referenceCells(row: SummaryRow): string[] {
  return REFERENCES.map((ref) => ratioCell(row, ref));
}

function ratioCell(row: SummaryRow, ref: string): string {
  const r = row.ratios[ref];
  if (!r) return '';
  const pr = r.perRepeat && r.perRepeat.n > 1 ? ` (${r.perRepeat.min.toFixed(2)}–${r.perRepeat.max.toFixed(2)})` : '';
  return `${r.ofMedians.toFixed(2)}×${pr}`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

interface Target {
  label: string;
  mode: Mode;
  fanout: number;
  size: number;
  ref: string;
  /** Sluice tier measured (default batched). */
  peer?: string;
}

const TARGETS: readonly Target[] = [
  { label: 'replicate 1→100, 1316 B: lossless delivered pps, kernel ÷ gstreamer', peer: 'kernel', mode: 'max', fanout: 100, size: 1316, ref: 'gstreamer' },
  {
    label: 'replicate 1→100, 1316 B, 2,000 pps in: relay host CPU per packet, kernel ÷ gstreamer (lower is better)',
    peer: 'kernel',
    mode: 'cpu',
    fanout: 100,
    size: 1316,
    ref: 'gstreamer',
  },
  {
    label: 'replicate 1→100, 1316 B, 2,000 pps in: relay host CPU per packet, kernel ÷ batched (lower is better)',
    peer: 'kernel',
    mode: 'cpu',
    fanout: 100,
    size: 1316,
    ref: 'batched',
  },
  { label: 'redirect 1→1, 1316 B: lossless delivered pps, kernel ÷ nginx', peer: 'kernel', mode: 'max', fanout: 1, size: 1316, ref: 'nginx' },
  { label: 'replicate 1→100, 1316 B: lossless delivered pps, batched ÷ portable', mode: 'max', fanout: 100, size: 1316, ref: 'portable' },
  { label: 'replicate 1→100, 1316 B: lossless delivered pps, batched ÷ gstreamer', mode: 'max', fanout: 100, size: 1316, ref: 'gstreamer' },
  {
    label: 'replicate 1→100, 1316 B, 2,000 pps in: relay host CPU per packet, batched ÷ gstreamer (lower is better)',
    mode: 'cpu',
    fanout: 100,
    size: 1316,
    ref: 'gstreamer',
  },
  { label: 'redirect 1→1, 1316 B: lossless delivered pps, batched ÷ nginx', mode: 'max', fanout: 1, size: 1316, ref: 'nginx' },
  { label: 'redirect 1→1, 200 B: lossless delivered pps, batched ÷ nginx', mode: 'max', fanout: 1, size: 200, ref: 'nginx' },
];

export function markdown(info: RunInfo, rows: readonly SummaryRow[]): string {
  const m = info.machine;
  const out: string[] = [];
  out.push(`# Sluice relay benchmark, ${info.startedAt}`);
  out.push('');
  if (!info.complete) out.push('**Incomplete run** (interrupted or failed): tables hold what was measured.\n');
  out.push(`Machine: ${m.cpuModel} × ${m.cores} cores, kernel ${m.kernel}, ${m.os}, Node ${m.node}. Run took ${(info.durationS / 60).toFixed(1)} min.`);
  out.push(
    `Options: ${Object.entries(info.options)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`)
      .join(', ')}.`,
  );
  out.push('');
  out.push(
    table(
      ['peer', 'version', 'how it relays'],
      info.peers.map((p) => [p.name, p.unavailable ? `**unavailable**: ${p.unavailable}` : p.version, p.description]),
    ),
  );
  out.push('');
  out.push(
    'Medians over repeats; spread as min–max; ratios are ratios of medians within this run, with the range of per-repeat ratios in parentheses. Relay pinned to CPU 0, generator to CPU 1.',
  );
  out.push('');

  out.push('## Targets');
  out.push('');
  const targetRows: string[][] = [];
  for (const t of TARGETS) {
    for (const pattern of ['smooth', 'bursty'] as const) {
      const peer = t.peer ?? 'batched';
      const row = rows.find((r) => r.mode === t.mode && r.fanout === t.fanout && r.size === t.size && r.pattern === pattern && r.peer === peer);
      const ref = rows.find((r) => r.mode === t.mode && r.fanout === t.fanout && r.size === t.size && r.pattern === pattern && r.peer === t.ref);
      if (!row && !ref) continue;
      const fmt = t.mode === 'max' ? si : (v: number | undefined) => `${fixed(v, 2)} µs`;
      targetRows.push([t.label, pattern, fmt(row?.value?.median), fmt(ref?.value?.median), row ? ratioCell(row, t.ref) || '–' : `${peer} not measured`]);
    }
  }
  out.push(table(['target', 'input', 'Sluice tier', 'reference', 'ratio'], targetRows));
  out.push('');

  const maxRows = rows.filter((r) => r.mode === 'max');
  if (maxRows.length) {
    out.push('## (b) Highest input rate with ≤ 0.1 % loss');
    out.push('');
    out.push('Delivered packets/s at that rate (= input × subscribers, as counted at the sink).');
    out.push('');
    out.push(
      table(
        ['scenario', 'size', 'input', 'peer', 'delivered pps (median)', 'min–max', 'input pps (median)', 'n', ...REFERENCE_HEADS, 'notes'],
        maxRows.map((r) => [
          scenarioName(r.fanout),
          `${r.size} B`,
          r.pattern,
          r.peer,
          si(r.value?.median),
          range(r.value, si),
          si(r.inputPps?.median),
          String(r.n),
          ...referenceCells(r),
          r.notes.join('; '),
        ]),
      ),
    );
    out.push('');
  }
  const cpuRows = rows.filter((r) => r.mode === 'cpu');
  if (cpuRows.length) {
    out.push('## (a) Realistic stream: 2,000 packets/s in');
    out.push('');
    out.push(
      "Relay host CPU: busy time of the relay's CPU 0 over the trial (the exact per-core clock of bench/lib/irq-clock.ts: task time plus softirq work done while the core was idle; each trial's coreSource says if a fallback was used), per delivered packet, and as % of that core over the sending time. With the relay's input steered to CPU 0 (default), this is the relay host's whole cost, in-kernel work included: receive, relay, send, and (for every peer alike) the sink's receive path up to its drop. 'process µs/pkt' is the relay processes' own CPU time (schedstat), which cannot see softirq work and so misses nearly all of the kernel tier's (see bench/README.md).",
    );
    out.push('');
    out.push(
      table(
        [
          'scenario',
          'size',
          'input',
          'peer',
          'host CPU µs/pkt (median)',
          'min–max',
          'CPU 0 % (median)',
          'process µs/pkt',
          'loss (median)',
          'n',
          ...REFERENCE_HEADS,
          'notes',
        ],
        cpuRows.map((r) => [
          scenarioName(r.fanout),
          `${r.size} B`,
          r.pattern,
          r.peer,
          fixed(r.value?.median, 2),
          range(r.value, (v) => fixed(v, 2)),
          fixed(r.cpuPct?.median, 1),
          fixed(r.processUsPerPkt?.median, 2),
          r.loss ? `${(100 * r.loss.median).toFixed(3)} %` : '–',
          String(r.n),
          ...referenceCells(r),
          r.notes.join('; '),
        ]),
      ),
    );
    out.push('');
  }
  return out.join('\n');
}

/** The sender suite's tables: medians per way, ratios against node:dgram, and the issue's targets. */
export function senderMarkdown(trials: readonly SenderTrial[], pacing: readonly PacingTrial[] = []): string {
  if (trials.length === 0 && pacing.length === 0) return '';
  const by = (way: string) => trials.filter((t) => t.way === way);
  const med = (xs: number[]) => spread(xs)?.median ?? NaN;
  const ppc = (way: string) => med(by(way).map((t) => t.packetsPerCpuS));
  const own = (way: string) => med(by(way).map((t) => t.senderPacketsPerCpuS));
  const spc = (way: string) => med(by(way).map((t) => t.syscallsPerPacket));
  const run = (way: string) => med(by(way).map((t) => t.longestRun));
  const present = SENDER_WAYS.filter((w) => by(w.id).length > 0);
  const row = (w: (typeof SENDER_WAYS)[number], reference: string) => {
    const s = spread(by(w.id).map((t) => t.packetsPerCpuS));
    const o = spread(by(w.id).map((t) => t.senderPacketsPerCpuS));
    const calls = spc(w.id);
    return [
      w.label,
      si(s?.median),
      range(s, si),
      si(o?.median),
      range(o, si),
      fixed(calls, 4),
      fixed(1 / calls, 1),
      fixed(ppc(w.id) / ppc(reference), 2),
      fixed(own(w.id) / own(reference), 2),
      String(run(w.id)),
      String(by(w.id).length),
    ];
  };
  const header = (ratio: string) => [
    'way',
    'packets per CPU-second (median)',
    'min–max',
    'sender only (median)',
    'min–max',
    'send syscalls per packet',
    'packets per syscall',
    ratio,
    `${ratio}, sender only`,
    'longest run to one destination',
    'n',
  ];
  const out: string[] = [];
  out.push('## Sender: one-shot sends and segmented writes (issue #5)');
  out.push('');
  if (trials.length) {
    const t0 = trials[0]!;
    out.push(
      `${t0.count.toLocaleString('en')} packets per trial to ${t0.dests} destinations as fast as each way goes, from the relay namespace pinned to CPU 0. ` +
        "Packets per CPU-second = delivered at the sink / busy time of CPU 0 (exact core clock). That time includes the sink's receive path, " +
        'which a veth runs on the sending CPU; "sender only" subtracts it (NET_RX softirq time on CPU 0), leaving what the sending host itself spends. ' +
        'Send system calls are counted for the process by eBPF on sys_enter; the longest run is measured at the sink. ' +
        'Unless a way says "NIC segments", GSO buffers are segmented on the sender\'s CPU (like a NIC without UDP segmentation offload).',
    );
    out.push('');
  }
  const aggregateWays = present.filter((w) => ['aggregate', 'dgram', 'sendto'].includes(w.mode));
  if (aggregateWays.length) {
    out.push('### (a) Aggregate sends: 200 B messages, round-robin over the destinations, all due at once');
    out.push('');
    out.push(
      table(
        header('CPU per packet ÷ dgram'),
        aggregateWays.map((w) => {
          const r = row(w, 'dgram');
          // CPU per packet is the inverse of packets per CPU-second.
          r[7] = fixed(ppc('dgram') / ppc(w.id), 2);
          r[8] = fixed(own('dgram') / own(w.id), 2);
          return r;
        }),
      ),
    );
    out.push('');
  }
  const writeWays = present.filter((w) => w.mode.startsWith('write-'));
  if (writeWays.length) {
    out.push('### (b, d) Segmented writes: 10 entries of 1,000 × 1316 B, one write call per 10,000 packets');
    out.push('');
    out.push(
      table(
        header('packets per CPU-second ÷ dgram'),
        writeWays.map((w) => row(w, 'write-dgram')),
      ),
    );
    out.push('');
  }
  if (pacing.length) out.push(pacingMarkdown(pacing));
  const targets: string[][] = [];
  if (by('aggregate').length && by('dgram').length) {
    targets.push(['(a) aggregate: packets per system call', '≥ 32', fixed(1 / spc('aggregate'), 1)]);
    targets.push([
      '(a) aggregate: CPU per packet ÷ one dgram send per packet, sender only',
      '≤ 0.3×',
      `${fixed(own('dgram') / own('aggregate'), 2)}× (with the sink's receive: ${fixed(ppc('dgram') / ppc('aggregate'), 2)}×; NIC segments: ${fixed(own('dgram') / own('aggregate-nic'), 2)}×)`,
    ]);
  }
  if (by('write-gso').length && by('write-dgram').length) {
    targets.push([
      '(b) write with GSO: packets per CPU-second ÷ dgram, sender only',
      '≥ 4×',
      `${fixed(own('write-gso') / own('write-dgram'), 2)}× (with the sink's receive: ${fixed(ppc('write-gso') / ppc('write-dgram'), 2)}×; NIC segments: ${fixed(own('write-gso-nic') / own('write-dgram'), 2)}×)`,
    ]);
  }
  for (const p of pacingTargets(pacing)) targets.push(p);
  if (by('write-strict').length)
    targets.push([
      '(d) strict interleave: longest run to one destination',
      '1',
      `${run('write-strict')} (burst 16: ${run('write-gso16')}; burst 64: ${run('write-gso')}; dgram, one destination after another: ${run('write-dgram')})`,
    ]);
  if (targets.length) {
    out.push('### Targets');
    out.push('');
    out.push(table(['target', 'goal', 'measured (medians)'], targets));
    out.push('');
  }
  return out.join('\n');
}

export function writeResults(
  outDir: string,
  stamp: string,
  info: RunInfo,
  records: readonly CaseRecord[],
  peerOrder: readonly string[],
  sender: readonly SenderTrial[] = [],
  pacing: readonly PacingTrial[] = [],
  tpo: TpoResults = { bulk: [], chatty: [], compression: [] },
  tpoWan: TpoWanResults = { trials: [], profiles: [], quick: false, versions: {} },
  service: ServiceResults = emptyServiceResults(),
): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true });
  const summary = summarize(records, peerOrder);
  const json = join(outDir, `${stamp}.json`);
  const md = join(outDir, `${stamp}.md`);
  writeFileSync(json, `${JSON.stringify({ ...info, summary, records, sender, pacing, tpo, tpoWan, service }, null, 1)}\n`);
  const text = `${markdown(info, summary)}\n${senderMarkdown(sender, pacing)}\n${tpoMarkdown(tpo)}\n${tpoWanMarkdown(tpoWan)}\n${serviceMarkdown(service)}\n`;
  writeFileSync(md, text);
  writeFileSync(join(outDir, 'latest.md'), text);
  return { json, md };
}
