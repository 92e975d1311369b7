/**
 * Playout accuracy (issue 20, item 5): how closely datagrams arrive at
 * the time the stream's own clock gives them, for a VBR and a CBR MPEG-TS
 * file (made here by ffmpeg), Sluice (`sluice write --pace pcr`) against
 * `ffmpeg -re -i F -c copy -f mpegts udp://…`, in one run, to a loopback
 * receiver in this process.
 *
 * Per run: the received datagrams are joined into one TS buffer, whose
 * PCRs (pcrClock) give each datagram's media time (its first byte's);
 * error = arrival − media time, centred on its median (a sender's
 * start-up and the clocks' origins drop out); reported are the p50, p99
 * and max of |error| over the whole file, and the largest clump (most
 * datagrams arriving within 1 ms). Each pair runs RUNS times; the results
 * (per run, and the median with its min–max spread) go to
 * bench/results/<time>-playout.{json,md}.
 *
 *   node --import tsx bench/tools/playout-accuracy.ts [--runs 3] [--seconds 6] [--tier auto] [--no-save]
 *
 * --no-save: only the JSON lines on stdout (the media suite of
 * `npm run bench` runs it so and writes its own results).
 */
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ffmpegSkipReason, makeCbrTs, makeVbrTs } from '../../harness/media/ffmpeg.js';
import { pcrClock } from '../../src/sender/pace-pcr.js';
import { flag } from './load-common.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');

interface RunResult {
  file: string;
  sender: string;
  run: number;
  datagrams: number;
  p50: number;
  p99: number;
  max: number;
  clump: number;
}

/** Runs `cmd`, resolves when it exits (rejects on a non-zero exit). */
function exec(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err.slice(-500)}`))));
  });
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** Sends with `send(url)` to a receiver here and measures the arrivals against the received stream's PCRs. */
async function measure(send: (url: string) => Promise<void>): Promise<Omit<RunResult, 'file' | 'sender' | 'run'>> {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 16 << 20 });
  const got: { at: number; data: Buffer }[] = [];
  socket.on('message', (data) => got.push({ at: performance.now(), data }));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  try {
    await send(`udp://127.0.0.1:${socket.address().port}`);
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    socket.close();
  }
  const all = Buffer.concat(got.map((g) => g.data));
  const clock = pcrClock(all);
  let offset = 0;
  const errors = got.map((g) => {
    const e = g.at - clock(offset);
    offset += g.data.byteLength;
    return e;
  });
  const median = [...errors].sort((a, b) => a - b)[errors.length >> 1]!;
  const abs = errors.map((e) => Math.abs(e - median)).sort((a, b) => a - b);
  let clump = 0;
  for (let i = 0, j = 0; i < got.length; i++) {
    while (got[i]!.at - got[j]!.at > 1) j++;
    clump = Math.max(clump, i - j + 1);
  }
  return { datagrams: got.length, p50: quantile(abs, 0.5), p99: quantile(abs, 0.99), max: abs[abs.length - 1]!, clump };
}

const round = (v: number) => Math.round(v * 100) / 100;

async function main(): Promise<void> {
  const skip = ffmpegSkipReason();
  if (skip) {
    process.stdout.write(`playout-accuracy: skipped: ${skip}\n`);
    return;
  }
  const runs = Number(flag('runs', '3'));
  const seconds = Number(flag('seconds', '6'));
  const tier = flag('tier', 'auto');
  const dir = await mkdtemp(join(tmpdir(), 'sluice-playout-'));
  try {
    const files = { vbr: join(dir, 'vbr.ts'), cbr: join(dir, 'cbr.ts') };
    await makeVbrTs(files.vbr, seconds / 2, seconds / 2);
    await makeCbrTs(files.cbr, seconds);
    const senders: Record<string, (file: string, url: string) => Promise<void>> = {
      sluice: (file, url) => exec(process.execPath, ['--import', 'tsx', CLI, 'write', '--file', file, '--pace', 'pcr', '--to', url, '--tier', tier]),
      'ffmpeg -re': (file, url) =>
        exec('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-i', file, '-c', 'copy', '-f', 'mpegts', `${url}?pkt_size=1316`]),
    };
    const results: RunResult[] = [];
    for (let run = 1; run <= runs; run++) {
      for (const [name, file] of Object.entries(files)) {
        for (const [sender, send] of Object.entries(senders)) {
          const r = { file: name, sender, run, ...(await measure((url) => send(file, url))) };
          results.push(r);
          process.stdout.write(`${JSON.stringify({ event: 'run', ...r })}\n`);
        }
      }
    }
    if (process.argv.includes('--no-save')) return;
    const rows: string[] = [];
    const summary: Record<string, unknown>[] = [];
    for (const file of Object.keys(files)) {
      for (const sender of Object.keys(senders)) {
        const mine = results.filter((r) => r.file === file && r.sender === sender);
        const stat = (k: 'p50' | 'p99' | 'max' | 'clump') => {
          const v = mine.map((r) => r[k]).sort((a, b) => a - b);
          return { median: round(v[v.length >> 1]!), min: round(v[0]!), max: round(v[v.length - 1]!) };
        };
        const s = { file, sender, runs: mine.length, p50: stat('p50'), p99: stat('p99'), max: stat('max'), clump: stat('clump') };
        summary.push(s);
        const cell = (x: { median: number; min: number; max: number }) => `${x.median} (${x.min}–${x.max})`;
        rows.push(`| ${file} | ${sender} | ${cell(s.p50)} | ${cell(s.p99)} | ${cell(s.max)} | ${cell(s.clump)} |`);
      }
    }
    const stamp = new Date()
      .toISOString()
      .slice(0, 16)
      .replace(/[-:]/g, '')
      .replace(/^(\d{4})(\d{2})(\d{2})/, '$1-$2-$3');
    const base = join(ROOT, 'bench/results', `${stamp}-${hostname()}-playout`);
    await mkdir(join(ROOT, 'bench/results'), { recursive: true });
    await writeFile(`${base}.json`, `${JSON.stringify({ at: new Date().toISOString(), host: hostname(), tier, seconds, runs, results, summary }, null, 2)}\n`);
    const md = [
      `# Playout accuracy, ${new Date().toISOString()} (${hostname()})`,
      '',
      `A ${seconds} s VBR file (${seconds / 2} s at ~10 Mbit/s, then ${seconds / 2} s at ~0.6 Mbit/s) and a ${seconds} s CBR file (2 Mbit/s), to a loopback receiver;`,
      `|arrival − media time| in ms (media time by the received stream's PCRs; centred on the median), over the whole file;`,
      `clump: most datagrams arriving within 1 ms. Median of ${runs} runs (min–max). Sluice: \`sluice write --pace pcr --tier ${tier}\`.`,
      '',
      '| file | sender | p50 ms | p99 ms | max ms | clump |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
    ].join('\n');
    await writeFile(`${base}.md`, md);
    process.stdout.write(`${md}\nwritten: ${base}.{json,md}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
