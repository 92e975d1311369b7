/**
 * The demo's real media (issue 20, item 7): media/demo-clip.m2t is
 * H.264 + AAC; marked loopable (markLoopStart) it loops with no
 * continuity error at the demo's checker and at ffmpeg's demuxer (which
 * does count them on the unmarked clip looped); `sluice demo` streams it
 * across the loop point with PASS, and what a player's destination
 * (--watch) captured has codec parameters ffprobe reads. markLoopStart
 * on hostile bytes: a typed error or a change confined to first packets.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../harness/process/cli.js';
import { ffmpegSkipReason, probeCodecs } from '../../harness/media/ffmpeg.js';
import { DEMO_CLIP } from '../../src/cli/demo-clip.js';
import { markLoopStart } from '../../src/media/ts-loop.js';
import { TsContinuityChecker } from '../../src/media/ts-checker.js';
import { pcrSchedule } from '../../src/sender/pace-pcr.js';
import { InvalidArgumentError } from '../../src/errors.js';
import fc from 'fast-check';

const skip = ffmpegSkipReason();
if (skip) process.stdout.write(`# skipping the ffmpeg checks of the demo clip: ${skip}\n`);

test('the marked clip loops with no continuity or PSI error at the checker; its PCR clock re-anchors at each loop', async () => {
  const marked = markLoopStart(await readFile(DEMO_CLIP));
  const checker = new TsContinuityChecker();
  for (let pass = 0; pass < 3; pass++) for (let o = 0; o < marked.length; o += 1316) checker.push(marked.subarray(o, Math.min(marked.length, o + 1316)));
  const c = checker.stats();
  assert.equal(c.ccErrors, 0);
  assert.equal(c.psiErrors, 0);
  assert.ok(c.patSeen > 0 && c.pmtSeen > 0, 'PAT and PMT still read after the adaptation field went in');
  assert.equal(c.discontinuities, 2 * c.pids, 'each PID announces each loop');
  const one = pcrSchedule(marked, 1316);
  const three = pcrSchedule(Buffer.concat([marked, marked, marked]), 1316);
  assert.ok(one.passMs > 9900 && one.passMs < 10_200, `one pass is ${one.passMs} ms`);
  assert.ok(Math.abs(three.passMs - 3 * one.passMs) < 50, `three passes are ${three.passMs} ms`);
  assert.throws(() => markLoopStart(new Uint8Array(100)), InvalidArgumentError);
});

test('markLoopStart on hostile TS: an InvalidArgumentError, or a copy of the same length that differs only in the first packet of a PID and its first packet with payload (property)', async () => {
  const head = (await readFile(DEMO_CLIP)).subarray(0, 188 * 40);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(head.length - 1), fc.nat(255)), { maxLength: 30 }), (flips) => {
      const data = Uint8Array.from(head);
      for (const [at, v] of flips) data[at] = v;
      let out: Uint8Array;
      try {
        out = markLoopStart(data);
      } catch (e) {
        if (e instanceof InvalidArgumentError) return;
        throw e;
      }
      assert.equal(out.length, data.length);
      const firsts = new Set<number>();
      const seen = new Map<number, 'first' | 'payload'>();
      for (let o = 0; o < data.length; o += 188) {
        const pid = ((data[o + 1]! & 0x1f) << 8) | data[o + 2]!;
        const payload = ((data[o + 3]! >>> 4) & 1) === 1;
        if (pid === 0x1fff || seen.get(pid) === 'payload') continue;
        if (!seen.has(pid) || payload) firsts.add(o);
        seen.set(pid, payload ? 'payload' : 'first');
      }
      for (let o = 0; o < data.length; o += 188) {
        if (!firsts.has(o)) assert.ok(Buffer.from(out.subarray(o, o + 188)).equals(Buffer.from(data.subarray(o, o + 188))), `packet at ${o} changed`);
      }
    }),
    { numRuns: 300 },
  );
});

describe('the demo clip with ffmpeg', { skip }, () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-demo-clip-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const continuityFailures = async (file: string): Promise<number> => {
    const { stderr } = await promisify(execFile)('ffmpeg', ['-hide_banner', '-v', 'debug', '-i', file, '-f', 'null', '-'], { maxBuffer: 64 << 20 });
    return stderr.split('\n').filter((l) => l.includes('Continuity check failed')).length;
  };

  test('H.264 + AAC; looped twice, ffmpeg finds continuity failures in the raw clip and none in the marked one', async () => {
    assert.deepEqual(await probeCodecs(DEMO_CLIP), ['aac', 'h264']);
    const raw = await readFile(DEMO_CLIP);
    await writeFile(join(dir, 'raw2.ts'), Buffer.concat([raw, raw]));
    const marked = markLoopStart(raw);
    await writeFile(join(dir, 'marked2.ts'), Buffer.concat([marked, marked]));
    assert.ok((await continuityFailures(join(dir, 'raw2.ts'))) > 0, 'the check sees an unannounced loop');
    assert.equal(await continuityFailures(join(dir, 'marked2.ts')), 0);
  });

  test('sluice demo loops the clip with PASS; the --watch capture has H.264 and AAC codec parameters', async () => {
    const capture: Buffer[] = [];
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
    socket.on('message', (m) => capture.push(m));
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    try {
      const watch = `udp://127.0.0.1:${socket.address().port}`;
      const r = await runCli(['demo', '--duration', '11s', '--subscribers', '2', '--tier', 'portable', '--watch', watch, '--json'], 120_000);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; tiers: { sent: number; ccErrors: number; lost: number }[] };
      assert.equal(summary.ok, true);
      assert.equal(summary.tiers[0]!.ccErrors, 0);
      assert.ok(summary.tiers[0]!.sent > (await readFile(DEMO_CLIP)).length / 1316, 'past the loop point');
      await new Promise((res) => setTimeout(res, 300));
      const file = join(dir, 'watch.ts');
      await writeFile(file, Buffer.concat(capture));
      assert.deepEqual(await probeCodecs(file), ['aac', 'h264']);
      assert.equal(await continuityFailures(file), 0);
    } finally {
      socket.close();
    }
  });
});
