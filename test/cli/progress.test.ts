/**
 * Long one-shot work (issue 19): `write`, `send` and `demo` show progress
 * (plain lines off a terminal, JSON events with --json), and SIGINT stops
 * them early with the partial counters and exit 0. A SIGINT delivered
 * twice at once (as npx does) still exits 0. Loopback receivers; timing
 * bounds are loose (noisy 2-core VMs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCli, collect, runCli } from '../../harness/process/cli.js';
import { openReceiver } from '../../harness/traffic/udp.js';
import { TIMESTAMP, jsonLines, waitForJson, waitForOutput } from './output-wait.js';

const pattern = (n: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
};

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-progress-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('write --bitrate off a terminal: a timestamped progress line every --progress-interval, then the report', async () => {
  await withDir(async (dir) => {
    const rx = await openReceiver();
    try {
      // 200 kB at 1 Mbit/s: 1.6 s.
      await writeFile(join(dir, 'f.bin'), pattern(200_000));
      const r = await runCli(['write', '--file', join(dir, 'f.bin'), '--to', rx.url, '--packet-size', '1000', '--bitrate', '1M', '--progress-interval', '0.4']);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l.includes('sluice write:'));
      const format = new RegExp(
        `^${TIMESTAMP} sluice write: (\\d+) of 200 packets \\([\\d.]+%\\), [\\d.]+ [kM]?B of 200\\.0 kB, [\\d.]+ Mbit/s, [\\d.]+ pkt/s, elapsed \\d+:\\d\\d, ETA \\d+:\\d\\d$`,
      );
      assert.ok(lines.length >= 2, `progress lines:\n${r.stderr}`);
      let last = 0;
      for (const l of lines) {
        const m = format.exec(l);
        assert.ok(m, `progress line format: ${l}`);
        assert.ok(Number(m[1]) >= last, 'progress never goes back');
        last = Number(m[1]);
      }
      assert.match(r.stdout, /: 200 of 200 packets, 200000 bytes in /);
      assert.doesNotMatch(r.stdout, /interrupted/);
    } finally {
      await rx.close();
    }
  });
});

test('write --json: progress events on stdout before the result; an unpaced write in several chunks counts every packet', async () => {
  await withDir(async (dir) => {
    const [a, b] = await Promise.all([openReceiver(), openReceiver()]);
    try {
      await writeFile(join(dir, 'f.bin'), pattern(150_000));
      const paced = await runCli([
        'write',
        '--file',
        join(dir, 'f.bin'),
        '--to',
        a.url,
        '--packet-size',
        '1000',
        '--bitrate',
        '1M',
        '--json',
        '--progress-interval',
        '0.3',
      ]);
      assert.equal(paced.code, 0, paced.stderr);
      const events = jsonLines<{ event: string; unit?: string; sent: number; total: number; bytes: number; totalBytes: number; t: number }>(paced.stdout);
      const progress = events.filter((e) => e.event === 'progress');
      assert.ok(progress.length >= 2, paced.stdout);
      for (const e of progress) {
        assert.equal(e.unit, 'packets');
        assert.equal(e.total, 150);
        assert.equal(e.totalBytes, 150_000);
        assert.ok(e.sent <= 150 && e.bytes <= 150_000 && e.t > 0);
      }
      assert.equal(events.at(-1)!.event, 'write');
      assert.equal(events.at(-1)!.sent, 150);

      // 6 MB to two destinations: 12 MB, three chunks of about 4 MiB.
      await writeFile(join(dir, 'big.bin'), pattern(6_000_000));
      const whole = await runCli(['write', '--file', join(dir, 'big.bin'), '--to', a.url, '--to', b.url, '--burst', '4', '--json']);
      assert.equal(whole.code, 0, whole.stderr);
      const w = JSON.parse(whole.stdout.trim().split('\n').pop()!) as {
        packets: number;
        sent: number;
        bytes: number;
        destinations: { packets: number; bytes: number }[];
      };
      assert.equal(w.packets, 2 * Math.ceil(6_000_000 / 1472));
      assert.equal(w.sent, w.packets);
      assert.equal(w.bytes, 12_000_000);
      assert.deepEqual(
        w.destinations.map((d) => [d.packets, d.bytes]),
        [
          [w.packets / 2, 6_000_000],
          [w.packets / 2, 6_000_000],
        ],
      );
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

test('SIGINT mid-write: the write stops, the report gives what was sent and what was not, exit 0', async () => {
  await withDir(async (dir) => {
    const rx = await openReceiver();
    try {
      // 500 kB at 800 kbit/s: 5 s, interrupted after the first progress line.
      await writeFile(join(dir, 'f.bin'), pattern(500_000));
      const child = startCli([
        'write',
        '--file',
        join(dir, 'f.bin'),
        '--to',
        rx.url,
        '--packet-size',
        '1000',
        '--bitrate',
        '800k',
        '--progress-interval',
        '0.5',
      ]);
      const done = collect(child);
      await waitForOutput(child, 'stderr', /sluice write: [1-9]\d* of 500 packets/);
      child.kill('SIGINT');
      const r = await done;
      assert.equal(r.code, 0, r.stderr);
      const m = /interrupted by SIGINT: (\d+) of 500 packets sent, (\d+) not sent/.exec(r.stdout);
      assert.ok(m, r.stdout);
      const [sent, notSent] = [Number(m[1]), Number(m[2])];
      assert.ok(sent > 0 && notSent > 0 && sent + notSent === 500, `${sent} + ${notSent}`);
      assert.match(r.stdout, new RegExp(`: ${sent} of 500 packets, ${sent * 1000} bytes in `));
      // What the report says was sent is what arrived (loopback).
      await rx.settle(200);
      assert.equal(rx.received.length, sent);
    } finally {
      await rx.close();
    }
  });
});

test('SIGINT mid-send of a long aggregate: the slices not yet handed over are not sent; --json result says so; exit 0', async () => {
  await withDir(async (dir) => {
    const rx = await openReceiver();
    try {
      // 300 messages 20 ms apart: 6 s, in slices of 1 s. Lateness is not the point: never drop here.
      const n = 300;
      const aggregate = {
        schedule: { kind: 'delays', delaysMs: Array.from({ length: n }, (_, i) => i * 20) },
        maxLatenessMs: 60_000,
        messages: Array.from({ length: n }, (_, i) => ({ to: rx.url, text: `m${i}`, stream: i % 2 ? 'odd' : 'even' })),
      };
      await writeFile(join(dir, 'agg.json'), JSON.stringify(aggregate));
      const child = startCli(['send', '--aggregate', join(dir, 'agg.json'), '--json', '--progress-interval', '0.3']);
      const done = collect(child);
      await waitForJson<{ sent: number }>(child, 'progress', (e) => e.sent > 0);
      child.kill('SIGINT');
      const r = await done;
      assert.equal(r.code, 0, r.stderr);
      const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
        event: string;
        interrupted: string;
        notSent: number;
        sent: number;
        dropped: number;
        messages: { index: number; dueMs: number; status: string }[];
        streams: Record<string, { sent: number }>;
      };
      assert.equal(result.event, 'aggregate');
      assert.equal(result.interrupted, 'SIGINT');
      assert.ok(result.notSent > 0 && result.sent > 0, `${result.sent} sent, ${result.notSent} not sent`);
      assert.equal(result.sent + result.dropped + result.notSent, n);
      // The outcomes are the first messages of the schedule, with their due times in the whole schedule.
      assert.deepEqual(
        result.messages.map((m) => [m.index, m.dueMs]),
        Array.from({ length: result.sent + result.dropped }, (_, i) => [i, i * 20]),
      );
      assert.equal(result.streams.odd!.sent + result.streams.even!.sent, result.sent);
      await rx.settle(200);
      assert.deepEqual(
        rx.received.map((d) => String(d.data)),
        Array.from({ length: result.sent }, (_, i) => `m${i}`),
      );
    } finally {
      await rx.close();
    }
  });
});

test('SIGINT mid-demo: the stream ends early, the subscribers drain, the summary says so, exit 0', async () => {
  const child = startCli(['demo', '--tier', 'portable', '--duration', '30s', '--subscribers', '2', '--bitrate', '2M']);
  const done = collect(child);
  await waitForOutput(child, 'stderr', /^\[\s+1s\] .*ETA 0:29/m);
  child.kill('SIGINT');
  const r = await done;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /interrupted by SIGINT; the stream was to last 30 s/);
  assert.match(r.stdout, /^portable\s+2\s+[1-9]\d*\s+\d+\s+\d+\s+0\s/m);
  assert.match(r.stdout, /PASS/);
});

test("a SIGINT delivered twice at once (as npx forwards the terminal's) still stops cleanly with exit 0", async () => {
  const child = startCli(['relay', '--tier', 'portable', '--listen', 'udp://127.0.0.1:0', '--to', 'udp://127.0.0.1:9', '--allow', 'any']);
  const done = collect(child);
  await waitForOutput(child, 'stderr', /running; Ctrl-C to stop/);
  child.kill('SIGINT');
  child.kill('SIGINT');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /redirect-1 \(redirect, portable\)/);
});
