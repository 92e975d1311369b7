/**
 * Media suite, part 3 (issue 20): time to the first decoded picture of a
 * late joiner, with and without fast channel change, per tier. Wraps
 * bench/tools/fcc-first-picture.ts (JOINS joins per run, each a pair of
 * ffmpeg receivers joined at the same moment, one through the RAP cache,
 * one live); one run per tier per repeat, tiers interleaved inside a
 * repeat. The tool reports p50 and p90 per run; the suite gives their
 * medians (min–max) over repeats.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface FccRun {
  tier: string;
  repeat: number;
  joins: number;
  withCacheMs: { p50: number; p90: number };
  withoutCacheMs: { p50: number; p90: number };
  decoderErrorLinesWithout: { p50: number; max: number };
  decoderErrorLinesWith: { max: number };
}

/** One run of the tool on one tier: its JSON line, or an error whose message says why. */
export function runFcc(tier: string, joins: number, repeat: number): Promise<FccRun> {
  return new Promise((resolve, reject) => {
    const args = ['--import', 'tsx', 'bench/tools/fcc-first-picture.ts', '--joins', String(joins), '--tiers', tier];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000 + joins * 20_000);
    child.on('exit', (code) => {
      clearTimeout(killer);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code === 0 && line) {
        const j = JSON.parse(line) as Omit<FccRun, 'repeat'>;
        resolve({
          tier,
          repeat,
          joins: j.joins,
          withCacheMs: j.withCacheMs,
          withoutCacheMs: j.withoutCacheMs,
          decoderErrorLinesWithout: j.decoderErrorLinesWithout,
          decoderErrorLinesWith: j.decoderErrorLinesWith,
        });
      } else {
        const why = err.trim().split('\n').filter(Boolean).pop() ?? `no result line (exit ${code})`;
        reject(new Error(why));
      }
    });
  });
}
