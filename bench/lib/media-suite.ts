/**
 * The media suite of `npm run bench` (issue 20): (1) relay CPU per
 * datagram with TS / RTP monitoring on vs off, each tier
 * (bench/lib/media-cost.ts); (2) playout accuracy, Sluice `--pace pcr` vs
 * `ffmpeg -re` (bench/tools/playout-accuracy.ts); (3) time to first
 * picture for a late joiner, with and without the RAP cache
 * (bench/tools/fcc-first-picture.ts via bench/lib/media-fcc.ts). Repeats are interleaved: each
 * repeat runs every configuration once (monitor on/off alternating which
 * goes first), so drift on the host falls on both sides of a ratio.
 * Results: bench/results/<stamp>-<host>-media.{md,json}.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MEDIA_PAYLOADS, MEDIA_TIERS, runCostTrial, type CostTrial } from './media-cost.js';
import { runFcc, type FccRun } from './media-fcc.js';
import { pairedRatio, spread, type Spread } from './stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface PlayoutRun {
  file: string;
  sender: string;
  run: number;
  datagrams: number;
  p50: number;
  p99: number;
  max: number;
  clump: number;
}

export interface MediaResults {
  at: string;
  host: string;
  quick: boolean;
  repeats: number;
  cost: { rate: number; subscribers: number; seconds: number; trials: CostTrial[]; skippedTiers: Record<string, string> };
  playout: { seconds: number; runs: PlayoutRun[]; skipped?: string; tsduck: string };
  fcc: { joins: number; runs: FccRun[]; skippedTiers: Record<string, string> };
}

type Log = (line: string) => void;

/** Runs the playout tool once with `runs` interleaved runs (its loop alternates sender and file inside each run). */
function runPlayout(runs: number, seconds: number, log: Log): Promise<{ runs: PlayoutRun[]; skipped?: string }> {
  return new Promise((resolve) => {
    const args = ['--import', 'tsx', 'bench/tools/playout-accuracy.ts', '--runs', String(runs), '--seconds', String(seconds), '--no-save'];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const got: PlayoutRun[] = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const j = JSON.parse(line) as PlayoutRun & { event: string };
        if (j.event !== 'run') continue;
        const { event: _e, ...r } = j;
        got.push(r);
        log(`  playout ${r.file} ${r.sender} run ${r.run}: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
      }
      const skipped = /skipped: (.*)/.exec(out)?.[1] ?? (code !== 0 ? `playout-accuracy exited ${code}: ${err.trim().split('\n').pop()}` : undefined);
      resolve({ runs: got, ...(skipped ? { skipped } : {}) });
    });
  });
}

function tsduckNote(): string {
  const r = spawnSync('tsp', ['--version'], { encoding: 'utf8' });
  return r.error
    ? 'tsduck (`tsp -P regulate`) not compared: not installed, and not packaged in Debian here'
    : 'tsduck is installed, but this suite does not drive it yet';
}

export async function runMediaSuite(o: { quick: boolean; repeats: number; outDir: string; log: Log }): Promise<{ md: string; json: string }> {
  const { log } = o;
  const seconds = o.quick ? 2 : 5;
  const res: MediaResults = {
    at: new Date().toISOString(),
    host: hostname(),
    quick: o.quick,
    repeats: o.repeats,
    cost: { rate: 3000, subscribers: 3, seconds, trials: [], skippedTiers: {} },
    playout: { seconds: o.quick ? 4 : 6, runs: [], tsduck: tsduckNote() },
    fcc: { joins: 10, runs: [], skippedTiers: {} },
  };
  log(`media: (1) monitoring cost, ${res.cost.rate}/s offered, ${res.cost.subscribers} subscribers, ${seconds} s per trial, ${o.repeats} repeats`);
  let port = 43_000;
  for (let repeat = 1; repeat <= o.repeats; repeat++) {
    for (const tier of MEDIA_TIERS) {
      if (res.cost.skippedTiers[tier]) continue;
      for (const payload of MEDIA_PAYLOADS) {
        for (const monitor of repeat % 2 ? [true, false] : [false, true]) {
          if (res.cost.skippedTiers[tier]) break;
          try {
            const t = await runCostTrial({
              tier,
              payload,
              monitor,
              repeat,
              rate: res.cost.rate,
              subscribers: res.cost.subscribers,
              warmupS: 1,
              seconds,
              port: port++,
            });
            res.cost.trials.push(t);
            log(
              `  ${tier} ${payload} monitor ${monitor ? 'on ' : 'off'} #${repeat}: ${t.usPerDatagram.toFixed(1)} µs/datagram (${t.delivered}/${t.offered} delivered)`,
            );
          } catch (err) {
            res.cost.skippedTiers[tier] = (err as Error).message.split('\n')[0]!;
            log(`  ${tier}: skipped: ${res.cost.skippedTiers[tier]}`);
          }
        }
      }
    }
  }
  log(`media: (2) playout accuracy, ${o.repeats} interleaved runs; ${res.playout.tsduck}`);
  const p = await runPlayout(o.repeats, res.playout.seconds, log);
  res.playout.runs = p.runs;
  if (p.skipped) res.playout.skipped = p.skipped;
  log(`media: (3) time to first picture for a late joiner, ${res.fcc.joins} joins per run, ${o.repeats} repeats`);
  for (let repeat = 1; repeat <= o.repeats; repeat++) {
    for (const tier of MEDIA_TIERS) {
      if (res.fcc.skippedTiers[tier]) continue;
      try {
        const r = await runFcc(tier, res.fcc.joins, repeat);
        res.fcc.runs.push(r);
        log(
          `  ${tier} #${repeat}: with cache p50 ${r.withCacheMs.p50} ms p90 ${r.withCacheMs.p90} ms; without p50 ${r.withoutCacheMs.p50} ms p90 ${r.withoutCacheMs.p90} ms`,
        );
      } catch (err) {
        res.fcc.skippedTiers[tier] = (err as Error).message;
        log(`  ${tier}: skipped: ${res.fcc.skippedTiers[tier]}`);
      }
    }
  }
  return save(res, o.outDir);
}

const f1 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1));
const f2 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(2));
const range = (s: Spread | undefined, f: (v: number) => string) => (s ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : '–');
const table = (head: string[], rows: string[][]) => [
  `| ${head.join(' | ')} |`,
  `| ${head.map(() => '---').join(' | ')} |`,
  ...rows.map((r) => `| ${r.join(' | ')} |`),
];

export function mediaMarkdown(r: MediaResults): string {
  const costRows: string[][] = [];
  for (const tier of MEDIA_TIERS) {
    if (r.cost.skippedTiers[tier]) {
      costRows.push([tier, '', `skipped: ${r.cost.skippedTiers[tier]}`, '', '', '', '']);
      continue;
    }
    for (const payload of MEDIA_PAYLOADS) {
      const pick = (m: boolean) => r.cost.trials.filter((t) => t.tier === tier && t.payload === payload && t.monitor === m).sort((a, b) => a.repeat - b.repeat);
      const on = pick(true);
      const off = pick(false);
      if (!on.length || !off.length) continue;
      const repeats = on.map((t) => t.repeat).filter((n) => off.some((x) => x.repeat === n));
      const us = (list: CostTrial[]) => repeats.map((n) => list.find((t) => t.repeat === n)!.usPerDatagram);
      const delta = spread(repeats.map((_, i) => us(on)[i]! - us(off)[i]!));
      costRows.push([
        tier,
        payload,
        range(spread(us(on)), f1),
        range(spread(us(off)), f1),
        range(delta, f1),
        range(pairedRatio(us(on), us(off)), f2),
        String(repeats.length),
      ]);
    }
  }
  const playRows: string[][] = [];
  for (const file of ['vbr', 'cbr']) {
    for (const sender of ['sluice', 'ffmpeg -re']) {
      const mine = r.playout.runs.filter((x) => x.file === file && x.sender === sender);
      if (!mine.length) continue;
      const s = (k: 'p50' | 'p99' | 'max' | 'clump') => spread(mine.map((x) => x[k]));
      playRows.push([file, sender, range(s('p50'), f2), range(s('p99'), f2), range(s('max'), f2), range(s('clump'), (v) => v.toFixed(0)), String(mine.length)]);
    }
  }
  return [
    `# Media suite (issue 20), ${r.at} (${r.host})${r.quick ? ', --quick' : ''}`,
    '',
    `### (1) Monitoring cost: relay CPU per datagram, monitor on vs off`,
    '',
    `${r.cost.rate.toLocaleString('en')} datagrams/s offered (1316 B TS; RTP: 12 B header + 1316 B TS) over loopback to ${r.cost.subscribers} subscribers, ${r.cost.seconds} s per trial after 1 s warm-up;`,
    'CPU = run time of every thread of the `sluice relay` process (schedstat) ÷ offered datagrams. Median (min–max) over interleaved repeats;',
    'on − off and on ÷ off are per repeat. Kernel tier: the relaying runs in softirq, outside the process — its figure is the tap copy + monitor.',
    '',
    ...table(['tier', 'payload', 'on µs/dgram', 'off µs/dgram', 'on − off µs', 'on ÷ off', 'n'], costRows),
    '',
    `### (2) Playout accuracy: |arrival − media time|, ms`,
    '',
    `A ${r.playout.seconds} s VBR file and a ${r.playout.seconds} s CBR file (made by ffmpeg), to a loopback receiver; media time from the received PCRs, centred on the median.`,
    `Sluice: \`sluice write --pace pcr\`; ffmpeg: \`ffmpeg -re -i F -c copy -f mpegts udp://…?pkt_size=1316\`. Clump: most datagrams within 1 ms. Median (min–max) of runs.`,
    `${r.playout.tsduck}.`,
    '',
    ...(r.playout.skipped ? [`Skipped: ${r.playout.skipped}`] : table(['file', 'sender', 'p50', 'p99', 'max', 'clump', 'n'], playRows)),
    '',
    '### (3) Time to first picture for a late joiner (fast channel change), ms',
    '',
    `Live H.264 in TS from ffmpeg (25 fps, 2 s GOP, 1 Mbit/s) into a replicate flow; per run ${r.fcc.joins} joins spread over the GOP, each a pair of`,
    "`ffmpeg -frames:v 1` receivers joined at the same moment, one with addSubscriber (RAP cache), one by update (live); time to the receiver's exit.",
    "Median (min–max) over repeats of each run's p50 and p90. Includes ffmpeg start-up and probing on a loaded host (the same on both sides).",
    '',
    ...table(['tier', 'with cache p50', 'p90', 'without p50', 'p90', 'without ÷ with (p50)', 'decoder error lines without / with (max)', 'n'], fccRows(r)),
    '',
  ].join('\n');
}

function fccRows(r: MediaResults): string[][] {
  return MEDIA_TIERS.map((tier) => {
    if (r.fcc.skippedTiers[tier] && !r.fcc.runs.some((x) => x.tier === tier)) return [tier, `skipped: ${r.fcc.skippedTiers[tier]}`, '', '', '', '', '', ''];
    const mine = r.fcc.runs.filter((x) => x.tier === tier);
    const s = (f: (x: FccRun) => number) => range(spread(mine.map(f)), (v) => v.toFixed(0));
    const ratio = pairedRatio(
      mine.map((x) => x.withoutCacheMs.p50),
      mine.map((x) => x.withCacheMs.p50),
    );
    const errs = `${Math.max(...mine.map((x) => x.decoderErrorLinesWithout.max))} / ${Math.max(...mine.map((x) => x.decoderErrorLinesWith.max))}`;
    return [
      tier,
      s((x) => x.withCacheMs.p50),
      s((x) => x.withCacheMs.p90),
      s((x) => x.withoutCacheMs.p50),
      s((x) => x.withoutCacheMs.p90),
      range(ratio, f2),
      errs,
      String(mine.length),
    ];
  });
}

async function save(r: MediaResults, outDir: string): Promise<{ md: string; json: string }> {
  const stamp = r.at.slice(0, 16).replace(/:/g, '');
  const base = join(outDir, `${stamp}-${r.host}-media${r.quick ? '-quick' : ''}`);
  await mkdir(outDir, { recursive: true });
  await writeFile(`${base}.json`, `${JSON.stringify(r, null, 2)}\n`);
  await writeFile(`${base}.md`, mediaMarkdown(r));
  return { md: `${base}.md`, json: `${base}.json` };
}
