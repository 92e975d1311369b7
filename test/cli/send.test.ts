/**
 * `sluice send --aggregate FILE` and `sluice write`: one-shot sends from the
 * shell, checked at loopback receivers; bad input gives exit code 2 with
 * the field named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { openReceiver } from '../helpers/udp.js';

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
    assert.deepEqual(out.messages.map((m) => 'ABCDEFG'[m.index]), ['B', 'E', 'A', 'D', 'C', 'F', 'G']);
    await u1.waitFor(4);
    await u2.waitFor(3);
    assert.deepEqual(u1.received.map((d) => d.data.toString()), ['E', 'A', 'C', 'G']);
    assert.deepEqual(u2.received.map((d) => d.data.toString()), ['B', 'D', 'F']);

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
