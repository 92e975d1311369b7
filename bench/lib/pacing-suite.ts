/**
 * The pacing bench (issue #5, part c): how late paced sends leave, Sluice's
 * send worker against a plain baseline (a tight clock_nanosleep loop through
 * the same FFI module), at 1k, 10k and 50k packets per second, from the
 * relay namespace pinned to the relay's CPU, to the sink. Lateness is the
 * time from a packet's due time to the return of the call that handed it
 * to the kernel (bench/tools/pace-load.ts).
 */
import type { BenchTopology } from './topology.js';
import { RELAY_CPU, SINK_ADDR, spawnPinned } from './topology.js';
import { spread } from './stats.js';

export const PACING_ENGINES = ['sluice', 'nanosleep', 'nanosleep-slack1'] as const;
export type PacingEngine = (typeof PACING_ENGINES)[number];
export const PACING_RATES = [1_000, 10_000, 50_000] as const;

export interface PacingTrial {
  engine: PacingEngine;
  rate: number;
  repeat: number;
  count: number;
  sent: number;
  /** ms */
  lateness: { p50: number; p99: number; max: number };
}

const SCRIPT = 'bench/tools/pace-load.ts';

export async function runPacingTrial(
  topo: BenchTopology,
  spec: { engine: PacingEngine; rate: number; repeat: number; durationS: number; size: number; dests: number; firstPort: number },
): Promise<PacingTrial> {
  const proc = spawnPinned(
    topo,
    'relay',
    RELAY_CPU,
    process.execPath,
    [
      '--import',
      'tsx',
      SCRIPT,
      '--engine',
      spec.engine,
      '--rate',
      String(spec.rate),
      '--duration',
      String(spec.durationS),
      '--size',
      String(spec.size),
      '--host',
      SINK_ADDR,
      '--first',
      String(spec.firstPort),
      '--dests',
      String(spec.dests),
    ],
    { stdin: 'pipe' },
  );
  try {
    await proc.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
    proc.writeLine('go');
    await proc.waitForLine(/"event":"done"/, { timeoutMs: 30_000 + spec.durationS * 4_000, stream: 'stdout' });
    const done = proc.jsonLines<{ event: string; count: number; sent: number; lateness: PacingTrial['lateness'] }>().find((j) => j.event === 'done')!;
    return { engine: spec.engine, rate: spec.rate, repeat: spec.repeat, count: done.count, sent: done.sent, lateness: done.lateness };
  } finally {
    proc.endInput();
    await proc.stop(3_000).catch(() => undefined);
  }
}

const us = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '–' : `${(ms * 1000).toFixed(1)} µs`);

function medians(trials: readonly PacingTrial[], engine: PacingEngine, rate: number) {
  const mine = trials.filter((t) => t.engine === engine && t.rate === rate);
  const p50 = spread(mine.map((t) => t.lateness.p50));
  const p99 = spread(mine.map((t) => t.lateness.p99));
  const max = spread(mine.map((t) => t.lateness.max));
  return { n: mine.length, p50, p99, max };
}

export function pacingMarkdown(trials: readonly PacingTrial[]): string {
  const rows: string[][] = [];
  for (const rate of PACING_RATES) {
    const base = medians(trials, 'nanosleep', rate);
    for (const engine of PACING_ENGINES) {
      const m = medians(trials, engine, rate);
      if (m.n === 0) continue;
      rows.push([
        `${rate.toLocaleString('en')}/s`,
        engine === 'sluice'
          ? 'Sluice.sendAggregate (send worker: futex sleep + spin)'
          : engine === 'nanosleep'
            ? 'clock_nanosleep(TIMER_ABSTIME) + sendto, through the same FFI'
            : 'the same, timer slack 1 ns',
        us(m.p50?.median),
        us(m.p99?.median),
        `${us(m.p99?.min)}–${us(m.p99?.max)}`,
        us(m.max?.median),
        engine !== 'nanosleep' && base.p99 ? `${((m.p99?.median ?? NaN) / base.p99.median).toFixed(2)}×` : '',
        String(m.n),
      ]);
    }
  }
  const head = ['rate', 'pacer', 'lateness p50', 'p99 (median)', 'p99 min–max', 'max', 'p99 ÷ baseline', 'n'];
  const sep = head.map(() => '---');
  return [
    '### (c) Pacing: lateness of paced sends, 1 s per trial, 200 B packets',
    '',
    `| ${head.join(' | ')} |`,
    `| ${sep.join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}

export function pacingTargets(trials: readonly PacingTrial[]): string[][] {
  const out: string[][] = [];
  for (const rate of PACING_RATES) {
    const s = medians(trials, 'sluice', rate);
    const b = medians(trials, 'nanosleep', rate);
    const b1 = medians(trials, 'nanosleep-slack1', rate);
    if (!s.p99 || !b.p99) continue;
    const vsSlack1 = b1.p99 ? `; vs the baseline with 1 ns slack: ${(s.p99.median / b1.p99.median).toFixed(2)}× (${us(b1.p99.median)})` : '';
    out.push([
      `(c) pacing at ${rate.toLocaleString('en')}/s: p99 lateness ÷ clock_nanosleep baseline`,
      '≤ 1.5×',
      `${(s.p99.median / b.p99.median).toFixed(2)}× (${us(s.p99.median)} vs ${us(b.p99.median)}${vsSlack1})`,
    ]);
  }
  return out;
}
