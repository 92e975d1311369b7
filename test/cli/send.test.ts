/**
 * `sluice send --aggregate FILE` and `sluice write`: one-shot sends from the
 * shell, checked at loopback receivers; bad input gives exit code 2 with
 * the field named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile, mkdtemp, mkdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../harness/process/cli.js';
import { openReceiver } from '../../harness/traffic/udp.js';
import { probeTiers } from '../../src/dataplane/tiers.js';

test('send --aggregate: the design example from a JSON file, payloads as text, hex, base64 and file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-send-'));
  const u1 = await openReceiver();
  const u2 = await openReceiver();
  try {
    await writeFile(join(dir, 'g.bin'), 'G');
    const doc = {
      schedule: { kind: 'sequence', sequence: [3, 1, 5, 4, 2, 6, 7], tickMs: 2 },
      messages: [
        { to: u1.url, text: 'A', stream: 'video1' },
        { to: u2.url, text: 'B', stream: 'video2' },
        { to: u1.url, text: 'C', stream: 'video2' },
        { to: u2.url, hex: '44', stream: 'video1' },
        { to: u1.url, base64: 'RQ==', stream: 'video1' },
        { to: u2.url, text: 'F', stream: 'video2' },
        { to: u1.url, file: 'g.bin', stream: 'video2' },
      ],
    };
    await writeFile(join(dir, 'agg.json'), JSON.stringify(doc));
    const r = await runCli(['send', '--aggregate', join(dir, 'agg.json'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { event: string; sent: number; messages: { index: number }[] };
    assert.equal(out.event, 'aggregate');
    assert.equal(out.sent, 7);
    assert.deepEqual(
      out.messages.map((m) => 'ABCDEFG'[m.index]),
      ['B', 'E', 'A', 'D', 'C', 'F', 'G'],
    );
    await u1.waitFor(4);
    await u2.waitFor(3);
    assert.deepEqual(
      u1.received.map((d) => d.data.toString()),
      ['E', 'A', 'C', 'G'],
    );
    assert.deepEqual(
      u2.received.map((d) => d.data.toString()),
      ['B', 'D', 'F'],
    );

    await writeFile(join(dir, 'bad.json'), JSON.stringify({ schedule: { kind: 'delays', delaysMs: [0] }, messages: [{ to: u1.url, text: 'x', hex: '00' }] }));
    const bad = await runCli(['send', '--aggregate', join(dir, 'bad.json')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /messages\[0\]: give the payload as exactly one of/);
  } finally {
    await u1.close();
    await u2.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('write: a file to two destinations, cut into packets', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-'));
  const a = await openReceiver();
  const b = await openReceiver();
  try {
    const data = Buffer.alloc(3000, 7);
    await writeFile(join(dir, 'f.bin'), data);
    const r = await runCli(['write', '--file', join(dir, 'f.bin'), '--to', a.url, '--to', b.url, '--packet-size', '1000']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /6 of 6 packets, 6000 bytes/);
    await a.waitFor(3);
    await b.waitFor(3);
    assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(data));
  } finally {
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('write --tier: results name the tier and the engine that ran; an unavailable tier is refused, never replaced', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-tier-'));
  const a = await openReceiver();
  const tiers = await probeTiers();
  try {
    await writeFile(join(dir, 'f.bin'), Buffer.alloc(2500, 3));
    const args = ['write', '--file', join(dir, 'f.bin'), '--to', a.url, '--packet-size', '1000'];
    let received = 0;
    for (const t of tiers) {
      const json = await runCli([...args, '--tier', t.tier, '--json']);
      if (!t.available) {
        assert.notEqual(json.code, 0, `${t.tier} is unavailable here (${t.detail}), yet the write ran`);
        assert.match(json.stderr, new RegExp(`tier '${t.tier}' is unavailable`));
        continue;
      }
      assert.equal(json.code, 0, json.stderr);
      const out = JSON.parse(json.stdout.trim().split('\n').pop()!) as { engine: string; tier: string; sent: number };
      // The kernel tier has no send engine of its own: the batched one sends for it, and says so.
      assert.deepEqual({ engine: out.engine, tier: out.tier, sent: out.sent }, { engine: t.tier === 'kernel' ? 'batched' : t.tier, tier: t.tier, sent: 3 });
      const human = await runCli([...args, '--tier', t.tier]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(
        human.stdout,
        t.tier === 'kernel' ? /^batched engine \(tier kernel\): 3 of 3 packets/m : new RegExp(`^${t.tier} engine: 3 of 3 packets`, 'm'),
      );
      received += 6;
    }
    await a.waitFor(received);
  } finally {
    await a.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('send --aggregate: a file payload outside the JSON folder, a FIFO or a huge file exits 2 at once; --allow-any-file sends one outside', async () => {
  const root = await mkdtemp(join(tmpdir(), 'sluice-send-'));
  const u = await openReceiver();
  try {
    const dir = join(root, 'job');
    await mkdir(dir);
    await writeFile(join(root, 'secret'), 'PRIVATE');
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await writeFile(join(dir, 'huge'), '');
    await truncate(join(dir, 'huge'), 1024 ** 3);
    const agg = (file: string) => JSON.stringify({ schedule: { kind: 'delays', delaysMs: [0] }, messages: [{ to: u.url, file }] });
    await writeFile(join(dir, 'out.json'), agg('../secret'));
    await writeFile(join(dir, 'abs.json'), agg(join(root, 'secret')));
    await writeFile(join(dir, 'fifo.json'), agg('fifo'));
    await writeFile(join(dir, 'huge.json'), agg('huge'));
    const [out, abs, fifo, huge, allowed] = await Promise.all([
      runCli(['send', '--aggregate', join(dir, 'out.json')]),
      runCli(['send', '--aggregate', join(dir, 'abs.json')]),
      runCli(['send', '--aggregate', join(dir, 'fifo.json')]),
      runCli(['send', '--aggregate', join(dir, 'huge.json')]),
      runCli(['send', '--aggregate', join(dir, 'abs.json'), '--allow-any-file', '--json']),
    ]);
    for (const [r, why] of [
      [out, /out\.json: messages\[0\]\.file: cannot read \.\.\/secret: resolves to .* outside/],
      [abs, /abs\.json: messages\[0\]\.file: .*absolute paths are refused/],
      [fifo, /fifo\.json: messages\[0\]\.file: cannot read fifo: a FIFO/],
      [huge, /huge\.json: messages\[0\]\.file: cannot read huge: 1073741824 bytes, more than the limit of 65507/],
    ] as const) {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, why);
    }
    assert.equal(allowed.code, 0, allowed.stderr);
    await u.waitFor(1);
    assert.deepEqual(
      u.received.map((d) => d.data.toString()),
      ['PRIVATE'],
      'only the one sent with --allow-any-file',
    );
  } finally {
    await u.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('write --file: a FIFO, a device and a file larger than a write carries exit 2 without reading', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-'));
  try {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await writeFile(join(dir, 'big'), '');
    await truncate(join(dir, 'big'), 40 * 1024 * 1024);
    const to = ['--to', 'udp://127.0.0.1:9', '--to', 'udp://127.0.0.1:10'];
    const [fifo, zero, big, paced] = await Promise.all([
      runCli(['write', '--file', join(dir, 'fifo'), ...to]),
      runCli(['write', '--file', '/dev/zero', ...to]),
      runCli(['write', '--file', join(dir, 'big'), ...to]),
      runCli(['write', '--file', '/dev/zero', ...to, '--bitrate', '1M']),
    ]);
    for (const [r, why] of [
      [fifo, /--file: cannot read .*fifo: a FIFO \(named pipe\), not a regular file/],
      [zero, /--file: cannot read \/dev\/zero: a character device/],
      [
        big,
        /--file: cannot read .*big: 41943040 bytes, more than the limit of 33554432 \(a write carries at most 67108864 bytes in all, the file once per destination; --bitrate streams larger files\)/,
      ],
      [paced, /--file: cannot read \/dev\/zero: a character device/],
    ] as const) {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, why);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
