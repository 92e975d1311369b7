/**
 * The pure parts behind the CLI's lines (issue 19): how an aggregate's
 * schedule is cut into slices, how a pino record becomes a human line, how
 * rates come from two readings, and the short number formats.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planSlices, SLICE_MS, wantsSlicing } from '../../src/cli/aggregate-slices.js';
import { createCliLogger, humanLine, localTimestamp } from '../../src/cli/log-lines.js';
import { RateTracker, perSecondText, rateLine } from '../../src/cli/flow-rates.js';
import { bytesText, durationText } from '../../src/cli/progress.js';
import { parseAggregateForSend } from '../../src/policy/validate.js';
import type { FlowStats } from '../../src/dataplane/common/counters.js';

const planOf = (atMs: number[]) => ({ order: Int32Array.from(atMs, (_, i) => i), atMs: Float64Array.from(atMs) });

test('planSlices: consecutive, covering, each within SLICE_MS of due times, equal due times never split', () => {
  const cases = [
    [],
    [0],
    [0, 0, 0],
    Array.from({ length: 100 }, (_, i) => i * 37),
    [0, 999, 999, 1000, 1000, 1000, 2500, 2500, 9000],
    Array.from({ length: 50 }, (_, i) => Math.floor(i / 10) * 1000),
  ];
  for (const atMs of cases) {
    const slices = planSlices(planOf(atMs));
    let next = 0;
    for (const s of slices) {
      assert.equal(s.from, next, 'consecutive');
      assert.ok(s.to > s.from, 'not empty');
      assert.ok(atMs[s.to - 1]! - atMs[s.from]! < SLICE_MS, `within a slice: ${atMs.slice(s.from, s.to)}`);
      if (s.to < atMs.length) assert.notEqual(atMs[s.to], atMs[s.to - 1], 'a due time shared by two slices');
      next = s.to;
    }
    assert.equal(next, atMs.length, 'covering');
  }
});

test('wantsSlicing: only schedules longer than a slice, or starting further ahead than one', () => {
  const agg = (schedule: object, n = 3) =>
    parseAggregateForSend({ schedule, messages: Array.from({ length: n }, () => ({ to: 'udp://127.0.0.1:9', data: new Uint8Array(1) })) });
  assert.equal(wantsSlicing(agg({ kind: 'sequence', sequence: [0, 1, 2], tickMs: 2 })), false);
  assert.equal(wantsSlicing(agg({ kind: 'delays', delaysMs: [0, 500, 1000] })), false);
  assert.equal(wantsSlicing(agg({ kind: 'delays', delaysMs: [0, 500, 1001] })), true);
  assert.equal(wantsSlicing(agg({ kind: 'range', durationMs: 5000 })), true);
  assert.equal(wantsSlicing(agg({ kind: 'range', durationMs: 10, startAt: Date.now() + 60_000 })), true);
  assert.equal(wantsSlicing(agg({ kind: 'range', durationMs: 10, startAt: Date.now() })), false);
});

test('humanLine: local time, the level before sluice: unless info, fields as key=value', () => {
  const t = Date.UTC(2026, 11, 3, 15, 30, 5, 123);
  const stamp = localTimestamp(t);
  assert.match(stamp, /^2026-12-0[34] \d\d:\d\d:05\.123$/);
  assert.equal(humanLine(JSON.stringify({ level: 'info', time: new Date(t).toISOString(), msg: 'running' })), `${stamp} sluice: running\n`);
  assert.equal(
    humanLine(JSON.stringify({ level: 'error', time: new Date(t).toISOString(), msg: 'engine stopped', flow: 'fan', err: { message: 'boom' }, n: 3 })),
    `${stamp} ERROR sluice: engine stopped flow=fan err=boom n=3\n`,
  );
  assert.equal(humanLine(JSON.stringify({ level: 'warn', time: t, msg: 'x', why: 'two words' })), `${stamp} WARN sluice: x why="two words"\n`);
  // Through pino: the level filters, children add their bindings.
  const out: string[] = [];
  const log = createCliLogger('warn', { write: (s: string) => out.push(s) });
  log.info('hidden');
  log.child({ flow: 'fan' }).warn('shown');
  assert.equal(out.length, 1);
  assert.match(out[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WARN sluice: shown flow=fan\n$/);
});

test('RateTracker: rates since the previous reading; a new flow and a restarted one count from zero', () => {
  const stats = (name: string, packetsIn: number, bytesIn: number, drops = 0) =>
    ({ name, packetsIn, bytesIn, packetsOut: 2 * packetsIn, bytesOut: 2 * bytesIn, drops: { late: drops }, destinations: [] }) as unknown as FlowStats;
  const r = new RateTracker([stats('a', 100, 10_000)], 0);
  let s = r.sample([stats('a', 300, 30_000, 5), stats('b', 50, 500)], 2000);
  assert.equal(s.intervalMs, 2000);
  assert.deepEqual(s.rates[0], { packetsInPerSecond: 100, bitsInPerSecond: 80_000, packetsOutPerSecond: 200, bitsOutPerSecond: 160_000, dropsPerSecond: 2.5 });
  assert.equal(s.rates[1]!.packetsInPerSecond, 25);
  s = r.sample([stats('a', 40, 4000)], 3000);
  assert.equal(s.rates[0]!.packetsInPerSecond, 40, 'counters went back: a restarted flow');
  assert.equal(
    rateLine(stats('a', 300, 30_000, 5), s.rates[0]!),
    'a: in 40 pkt/s 0.03 Mbit/s, out 80 pkt/s 0.06 Mbit/s; total in 300 pkts / 30000 B, out 600 pkts / 60000 B, dropped 5',
  );
});

test('short formats: per-second counts, durations, bytes', () => {
  assert.deepEqual([0, 0.2, 2.5, 3, 12.5, 40, 99.96, 1234.4].map(perSecondText), ['0', '0.2', '2.5', '3', '12.5', '40', '100', '1234']);
  assert.deepEqual([0, 7_400, 754_000, 3_723_000].map(durationText), ['0:00', '0:07', '12:34', '1:02:03']);
  assert.deepEqual([512, 1_500, 1_800_000, 2_500_000_000].map(bytesText), ['512 B', '1.5 kB', '1.80 MB', '2.50 GB']);
});
