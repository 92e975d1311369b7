/**
 * `sluice relay`'s periodic lines and log (issue 19): each periodic line
 * carries the local time, the rates since the previous line and the
 * totals; --json stats events carry `t` and the same rates as fields;
 * lifecycle messages are timestamped and follow --log-level. Portable
 * tier, loopback; rates are checked for sense, never for speed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCli, collect } from '../../harness/process/cli.js';
import { openReceiver, openSender, sendSequence } from '../../harness/traffic/udp.js';
import { TIMESTAMP, jsonLines, waitForJson, waitForOutput } from './output-wait.js';

const relayArgs = (to: string, ...more: string[]) => [
  'relay',
  '--tier',
  'portable',
  '--listen',
  'udp://127.0.0.1:0',
  '--to',
  to,
  '--allow',
  '127.0.0.1',
  ...more,
];

test('relay --stats-interval 1: timestamped lines with rates since the previous line, then totals; lifecycle lines timestamped', async () => {
  const dst = await openReceiver();
  const src = await openSender();
  const child = startCli(relayArgs(dst.url, '--stats-interval', '1'));
  const done = collect(child);
  try {
    // One wait for both lifecycle lines: they may arrive in one chunk, and a wait sees only what comes after it starts.
    const started = await waitForOutput(
      child,
      'stderr',
      new RegExp(`^${TIMESTAMP} sluice: redirect-1: redirect udp://127\\.0\\.0\\.1:(\\d+) -> [\\s\\S]*^${TIMESTAMP} sluice: running; Ctrl-C to stop$`, 'm'),
    );
    await sendSequence(src, { port: Number(started[1]), address: '127.0.0.1' }, 300);
    await dst.waitFor(300);
    // A line whose totals include all 300 (the next tick at most a second away).
    await waitForOutput(child, 'stderr', /total in 300 pkts/, 10_000);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    const periodic = r.stderr.split('\n').filter((l) => l.includes(' pkt/s '));
    const line = new RegExp(
      `^${TIMESTAMP} sluice: redirect-1: in ([\\d.]+) pkt/s ([\\d.]+) Mbit/s, out ([\\d.]+) pkt/s ([\\d.]+) Mbit/s(?:, drops [\\d.]+/s)?; ` +
        'total in (\\d+) pkts / (\\d+) B, out (\\d+) pkts / (\\d+) B, dropped (\\d+)$',
    );
    let moving = 0;
    let previousIn = 0;
    for (const l of periodic) {
      const m = line.exec(l);
      assert.ok(m, `periodic line format: ${l}`);
      const [inPps, inMbit, outPps, , totalIn, bytesIn] = m.slice(1).map(Number) as [number, number, number, number, number, number];
      assert.ok(totalIn >= previousIn, 'totals never go back');
      // A rate belongs to the packets counted since the previous line: none new, no rate.
      if (totalIn === previousIn) assert.equal(inPps, 0, l);
      else {
        moving++;
        assert.ok(inPps > 0 && inMbit > 0 && outPps > 0, l);
        assert.ok(bytesIn === totalIn * 64, `64-byte datagrams: ${l}`);
      }
      previousIn = totalIn;
    }
    assert.ok(moving >= 1, `a line saw the packets move:\n${periodic.join('\n')}`);
    assert.match(r.stderr, new RegExp(`^${TIMESTAMP} sluice: SIGINT: stopping$`, 'm'));
    // The final table on stdout, as before.
    assert.match(r.stdout, /redirect-1 \(redirect, portable\)\s+udp:\/\/127\.0\.0\.1:\d+\s+300\s+19200\s+300\s+19200/);
  } finally {
    child.kill('SIGKILL');
    await Promise.all([dst.close(), src.close()]);
  }
});

test('relay --json --stats-interval 1: stats events carry t, intervalMs and per-flow rates', async () => {
  const dst = await openReceiver();
  const src = await openSender();
  const child = startCli(relayArgs(dst.url, '--stats-interval', '1', '--json'));
  const done = collect(child);
  try {
    const ready = await waitForJson<{ event: string; t: number; flows: { listen: string }[] }>(child, 'ready');
    assert.ok(Math.abs(ready.t - Date.now()) < 60_000, 'ready.t: ms since the epoch');
    const port = Number(/:(\d+)$/.exec(ready.flows[0]!.listen)![1]);
    await sendSequence(src, { port, address: '127.0.0.1' }, 200);
    await dst.waitFor(200);
    await waitForJson<{ flows: { packetsIn: number }[] }>(child, 'stats', (e) => e.flows[0]!.packetsIn === 200, 10_000);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    interface Stats {
      event: 'stats';
      t: number;
      intervalMs: number;
      flows: Record<string, number>[];
    }
    const stats = jsonLines<Stats | { event: string }>(r.stdout).filter((e): e is Stats => e.event === 'stats');
    assert.ok(stats.length >= 1);
    let lastT = 0;
    for (const e of stats) {
      assert.ok(e.t > lastT && Math.abs(e.t - Date.now()) < 120_000, `t is ms since the epoch: ${e.t}`);
      lastT = e.t;
      assert.ok(e.intervalMs > 500 && e.intervalMs < 30_000, `intervalMs ${e.intervalMs}`);
      for (const k of ['packetsInPerSecond', 'bitsInPerSecond', 'packetsOutPerSecond', 'bitsOutPerSecond', 'dropsPerSecond']) {
        assert.equal(typeof e.flows[0]![k], 'number', k);
        assert.ok(e.flows[0]![k]! >= 0, k);
      }
    }
    // The rates of the events add up to the counters: Σ rate × interval = 200 packets in.
    const sum = stats.reduce((n, e) => n + (e.flows[0]!.packetsInPerSecond! * e.intervalMs) / 1000, 0);
    assert.ok(Math.abs(sum - 200) < 1, `packets in from the rates: ${sum}`);
    assert.ok(stats.some((e) => e.flows[0]!.bitsInPerSecond! > 0));
    // With --json, stderr has no info lines.
    assert.doesNotMatch(r.stderr, /running; Ctrl-C/);
  } finally {
    child.kill('SIGKILL');
    await Promise.all([dst.close(), src.close()]);
  }
});

test('relay --log-level: warn hides the lifecycle lines but not the periodic ones; a bad level is a usage error', async () => {
  const child = startCli(relayArgs('udp://127.0.0.1:9', '--stats-interval', '1', '--log-level', 'warn'));
  const done = collect(child);
  try {
    await waitForOutput(child, 'stderr', new RegExp(`^${TIMESTAMP} sluice: redirect-1: in 0 pkt/s`, 'm'));
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /running; Ctrl-C|SIGINT: stopping/);
  } finally {
    child.kill('SIGKILL');
  }
  const debug = startCli(relayArgs('udp://127.0.0.1:9', '--log-level', 'nonsense'));
  const bad = await collect(debug);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--log-level.*Allowed choices are fatal, error, warn, info, debug, trace, silent/);
});
