/**
 * `sluice write --pace pcr` (issue 20, item 5) with real media: a VBR
 * MPEG-TS file made by ffmpeg (a high-rate section, then a low-rate one)
 * to a loopback receiver that records arrival times. Asserted is what
 * cannot flake on a busy machine: every byte arrives in order; the write
 * takes at least the file's media duration (no datagram leaves before
 * its PCR time); the low-rate section is spread over its media time, not
 * delivered in a burst. Accuracy figures are the bench's (bench/tools/
 * playout-accuracy.ts). Also: the warning of an unpaced TS write, a
 * file without PCR refused clearly, and `--pace rtp` on an RFC 4571 file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../harness/process/cli.js';
import { ffmpegSkipReason, makeVbrTs } from '../../harness/media/ffmpeg.js';
import { pcrSchedule } from '../../src/sender/pace-pcr.js';

const skip = ffmpegSkipReason();
if (skip) process.stdout.write(`# skipping ffmpeg tests of write --pace: ${skip}\n`);

/** A loopback receiver that records each datagram with its arrival time (performance.now()). */
async function arrivals(): Promise<{ url: string; got: { at: number; data: Buffer }[]; close: () => void }> {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  const got: { at: number; data: Buffer }[] = [];
  socket.on('message', (data) => got.push({ at: performance.now(), data }));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return { url: `udp://127.0.0.1:${socket.address().port}`, got, close: () => socket.close() };
}

describe('write --pace pcr with an ffmpeg VBR file', { skip }, () => {
  let dir = '';
  let file = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-write-pace-'));
    file = join(dir, 'vbr.ts');
    await makeVbrTs(file, 2, 2);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('every datagram leaves no earlier than its PCR time; the low-rate section is spread over its media time', async () => {
    const data = await readFile(file);
    const { dueMs, passMs } = pcrSchedule(data, 1316);
    const n = dueMs.length;
    // High then low: the first half of the media time holds most bytes.
    const half = dueMs.findIndex((t) => t >= passMs / 2);
    assert.ok(half > n * 0.7, `the high-rate section holds ${half} of ${n} datagrams`);
    const rx = await arrivals();
    try {
      const r = await runCli(['write', '--file', file, '--pace', 'pcr', '--to', rx.url, '--tier', 'portable', '--json'], 120_000);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { pace: string; packets: number; sent: number; elapsedMs: number; mediaMs: number };
      assert.equal(out.pace, 'pcr');
      assert.equal(out.sent, n);
      assert.ok(Math.abs(out.mediaMs - passMs) < 1e-6);
      // The last datagram is due dueMs[n-1] after the first: no write of it can end sooner.
      assert.ok(out.elapsedMs >= dueMs[n - 1]!, `the write took ${out.elapsedMs} ms, the media lasts ${passMs} ms`);
      const deadline = Date.now() + 10_000;
      while (rx.got.length < n && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      assert.equal(rx.got.length, n, 'every datagram arrived (loopback)');
      assert.ok(Buffer.concat(rx.got.map((g) => g.data)).equals(data), 'in order, byte for byte');
      // The low-rate section: from 200 ms past the middle of the media time to the end.
      const first = dueMs.findIndex((t) => t >= passMs / 2 + 200);
      const mediaSpan = dueMs[n - 1]! - dueMs[first]!;
      const arrivalSpan = rx.got[n - 1]!.at - rx.got[first]!.at;
      assert.ok(mediaSpan > 1000, `low section media span ${mediaSpan} ms`);
      assert.ok(arrivalSpan >= 0.8 * mediaSpan, `the low-rate section arrived over ${arrivalSpan.toFixed(0)} ms of its ${mediaSpan.toFixed(0)} ms media time`);
    } finally {
      rx.close();
    }
  });

  test('an unpaced write of a TS file warns with the flag to use; a non-TS file does not', async () => {
    const rx = await arrivals();
    try {
      const ts = join(dir, 'short.ts');
      await writeFile(ts, (await readFile(file)).subarray(0, 188 * 50));
      const r = await runCli(['write', '--file', ts, '--to', rx.url, '--tier', 'portable']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /looks like MPEG-TS.*--pace pcr/);
      const bin = join(dir, 'f.bin');
      await writeFile(bin, Buffer.alloc(188 * 50, 1));
      const plain = await runCli(['write', '--file', bin, '--to', rx.url, '--tier', 'portable']);
      assert.equal(plain.code, 0, plain.stderr);
      assert.doesNotMatch(plain.stderr, /MPEG-TS/);
    } finally {
      rx.close();
    }
  });

  test('--pace pcr on a file that is not TS, or has no PCR, is refused with the reason', async () => {
    const bin = join(dir, 'f.bin');
    await writeFile(bin, Buffer.alloc(188 * 10, 1));
    const r = await runCli(['write', '--file', bin, '--pace', 'pcr', '--to', 'udp://127.0.0.1:9']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--file.*no MPEG-TS sync byte at byte 0/);
    const noPcr = Buffer.alloc(188 * 10, 0xff);
    for (let o = 0; o < noPcr.length; o += 188) noPcr.set([0x47, 0x01, 0x00, 0x10], o);
    await writeFile(bin, noPcr);
    const r2 = await runCli(['write', '--file', bin, '--pace', 'pcr', '--to', 'udp://127.0.0.1:9']);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /carries no PCR/);
  });
});

test('write --pace rtp: an RFC 4571 file goes out one RTP packet per datagram, no earlier than its timestamp', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-write-rtp-'));
  const rx = await arrivals();
  try {
    const packets = Array.from({ length: 20 }, (_, i) => {
      const p = Buffer.alloc(100 + i, i);
      p[0] = 0x80;
      p[1] = 96;
      p.writeUInt16BE(i, 2);
      p.writeUInt32BE(1000 + i * 900, 4); // 10 ms apart at 90 kHz
      p.writeUInt32BE(0x1234, 8);
      return p;
    });
    const file = join(dir, 'stream.rtp');
    await writeFile(file, Buffer.concat(packets.flatMap((p) => [Buffer.from([p.length >> 8, p.length & 0xff]), p])));
    const r = await runCli(['write', '--file', file, '--pace', 'rtp', '--to', rx.url, '--tier', 'portable', '--json'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { pace: string; packets: number; sent: number; elapsedMs: number };
    assert.equal(out.pace, 'rtp');
    assert.equal(out.sent, 20);
    assert.ok(out.elapsedMs >= 190, `took ${out.elapsedMs} ms for 190 ms of timestamps`);
    const deadline = Date.now() + 5000;
    while (rx.got.length < 20 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.deepEqual(
      rx.got.map((g) => g.data),
      packets,
    );
  } finally {
    rx.close();
    await rm(dir, { recursive: true, force: true });
  }
});
