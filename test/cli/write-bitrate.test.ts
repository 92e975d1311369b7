/**
 * `sluice write --bitrate`: each destination gets the whole file as its own
 * stream at the bitrate, paced by the stream scheduler; checked at
 * loopback receivers. Bounds are loose (noisy 2-core VMs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../harness/process/cli.js';
import { openReceiver } from '../../harness/traffic/udp.js';

const pattern = (n: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
};

interface Dest {
  to: string;
  packets: number;
  bytes: number;
  errors: number;
  elapsedMs: number;
  achievedBitrate: number;
  lateness: { p50: number; p99: number; max: number };
}

test('write --bitrate: a file to two destinations, each at the bitrate, counters and achieved rate in --json', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-bitrate-'));
  const a = await openReceiver();
  const b = await openReceiver();
  try {
    const data = pattern(50_000); // 500 ms at 800 kbit/s
    await writeFile(join(dir, 'f.ts'), data);
    const r = await runCli(['write', '--file', join(dir, 'f.ts'), '--to', a.url, '--to', b.url, '--packet-size', '1316', '--bitrate', '800k', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      event: string;
      engine: string;
      bitrate: number;
      packets: number;
      sent: number;
      bytes: number;
      errors: number;
      destinations: Dest[];
      elapsedMs: number;
      achievedBitrate: number;
      ticks: number;
      writes: number;
      overruns: number;
      tickMs: number;
    };
    assert.equal(out.event, 'write');
    assert.equal(out.bitrate, 800_000);
    assert.equal(out.packets, 2 * 38);
    assert.equal(out.sent, 2 * 38);
    assert.equal(out.bytes, 100_000);
    assert.equal(out.errors, 0);
    assert.equal(out.tickMs, 10);
    assert.deepEqual(
      out.destinations.map((d) => d.to),
      [a.url, b.url],
    );
    for (const d of out.destinations) {
      assert.equal(d.bytes, 50_000);
      assert.equal(d.packets, 38);
      // Never faster than the bitrate; how much later than 500 ms it ends is
      // the host's timer latency (a busy machine only makes it later).
      assert.ok(d.elapsedMs >= 499, `${d.to}: ${d.elapsedMs} ms`);
      assert.ok(d.achievedBitrate <= 800e3 * 1.002, `${d.to}: ${d.achievedBitrate} bit/s`);
      process.stdout.write(`# ${d.to}: ${d.elapsedMs} ms (ideal 500), ${d.achievedBitrate} bit/s\n`);
      assert.ok(d.lateness.max >= d.lateness.p50);
    }
    assert.ok(out.writes < out.sent, 'destinations share writes');
    await a.waitFor(38);
    await b.waitFor(38);
    assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(data));
    assert.ok(Buffer.concat(b.received.map((d) => d.data)).equals(data));
  } finally {
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('write --bitrate: human output, portable tier; junk bitrates and bad destinations are refused with exit code 2', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-bitrate-'));
  const a = await openReceiver();
  try {
    const data = pattern(20_000); // 200 ms at 800 kbit/s (decimal rate 0.8M)
    await writeFile(join(dir, 'f.bin'), data);
    const r = await runCli(['write', '--file', join(dir, 'f.bin'), '--to', a.url, '--bitrate', '0.8M', '--tier', 'portable']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /late p50 ms/);
    assert.match(
      r.stdout,
      /portable engine: 14 of 14 packets, 20000 bytes in [\d.]+ ms; 1 stream\(s\) at 800\.0kbit\/s, achieved [\d.]+kbit\/s per destination/,
    );
    await a.waitFor(14);
    assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(data));

    for (const junk of ['4X', '0']) {
      const bad = await runCli(['write', '--file', join(dir, 'f.bin'), '--to', a.url, '--bitrate', junk]);
      assert.equal(bad.code, 2, `${junk}: ${bad.stderr}`);
      assert.match(bad.stderr, /--bitrate <rate>.*is invalid\. expected a bitrate in bits per second such as 4M/);
    }
    const badTo = await runCli(['write', '--file', join(dir, 'f.bin'), '--to', 'udp://nowhere', '--bitrate', '1M']);
    assert.equal(badTo.code, 2);
    assert.match(badTo.stderr, /--to: udp:\/\/nowhere: /);
  } finally {
    await a.close();
    await rm(dir, { recursive: true, force: true });
  }
});
