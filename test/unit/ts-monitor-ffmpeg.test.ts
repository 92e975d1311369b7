/**
 * The TS monitor on a real H.264/AAC transport stream made by ffmpeg (3 s,
 * CBR 1.5 Mbit/s), fed 7 packets per datagram at the stream's own PCR
 * timing on a fake clock: a clean stream has no priority-1 error and shows
 * its PIDs' kinds; with every 50th datagram deleted, each PID's CC error
 * count equals the gaps deleted on that PID; a VBR clip raises no PCR
 * accuracy alarm. Skipped, with the reason
 * printed, when ffmpeg is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AF_DISCONTINUITY, AF_PCR, PID_NULL, TS_PACKET_SIZE } from '../../src/wire/mpegts/packet.js';
import { readPcr } from '../../src/wire/mpegts/pcr.js';
import { createTsMonitor, type TsMonitor } from '../../src/media/ts-monitor.js';
import type { MediaAlarm } from '../../src/media/monitor-types.js';

const PER_DATAGRAM = 7;
const hasFfmpeg = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' }).status === 0;
const skip = hasFfmpeg ? false : 'ffmpeg is not installed (Debian package ffmpeg; .ci/run installs it)';

/** A 3 s (default) H.264/AAC TS from ffmpeg; `muxrate` makes it CBR, padded with null packets. */
function makeClip(seconds: number, muxrate?: number): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ts-monitor-'));
  try {
    const out = join(dir, 'out.ts');
    // prettier-ignore
    const r = spawnSync('ffmpeg', [
      '-hide_banner', '-loglevel', 'error', '-y',
      '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine',
      '-t', String(seconds), '-c:v', 'libx264', '-g', '50', '-c:a', 'aac', '-f', 'mpegts',
      ...(muxrate === undefined ? [] : ['-muxrate', String(muxrate)]), out,
    ], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `ffmpeg failed: ${r.stderr}`);
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Pkt {
  readonly pid: number;
  readonly payload: boolean;
  readonly discontinuity: boolean;
}

function parse(ts: Uint8Array): { packets: Pkt[]; pcrs: [index: number, pcr: number][] } {
  const packets: Pkt[] = [];
  const pcrs: [number, number][] = [];
  for (let o = 0, i = 0; o + TS_PACKET_SIZE <= ts.length; o += TS_PACKET_SIZE, i++) {
    const afc = (ts[o + 3]! >> 4) & 3;
    const flags = afc & 2 && ts[o + 4]! > 0 ? ts[o + 5]! : 0;
    if (flags & AF_PCR && ts[o + 4]! >= 7) pcrs.push([i, readPcr(ts, o + 6)]);
    packets.push({ pid: ((ts[o + 1]! & 0x1f) << 8) | ts[o + 2]!, payload: (afc & 1) !== 0, discontinuity: (flags & AF_DISCONTINUITY) !== 0 });
  }
  return { packets, pcrs };
}

/** Time of packet `i` in ms from the first PCR, interpolated (or extrapolated) between the PCRs around it. */
function pcrTime(pcrs: readonly [number, number][], i: number): number {
  let k = 0;
  while (k + 2 < pcrs.length && pcrs[k + 1]![0] <= i) k++;
  const [i0, p0] = pcrs[k]!;
  const [i1, p1] = pcrs[k + 1]!;
  return (p0 - pcrs[0]![1] + ((i - i0) * (p1 - p0)) / (i1 - i0)) / 27_000;
}

/** Feeds the clip's datagrams (those `keep` accepts) at their PCR times, ticking every 100 ms. */
function play(ts: Uint8Array, pcrs: readonly [number, number][], keep: (datagram: number) => boolean, onAlarm?: (a: MediaAlarm) => void): TsMonitor {
  const monitor = createTsMonitor({ onAlarm });
  let nextTick = 100;
  const count = Math.ceil(ts.length / TS_PACKET_SIZE / PER_DATAGRAM);
  for (let d = 0; d < count; d++) {
    const t = pcrTime(pcrs, d * PER_DATAGRAM);
    for (; nextTick <= t; nextTick += 100) monitor.tick(nextTick);
    if (keep(d)) monitor.push(ts.subarray(d * PER_DATAGRAM * TS_PACKET_SIZE, (d + 1) * PER_DATAGRAM * TS_PACKET_SIZE), t);
  }
  return monitor;
}

/**
 * CC gaps a receiver of the kept datagrams sees per PID: a kept payload
 * packet whose predecessors on its PID back to the last kept one include
 * deleted payload packets (and no discontinuity_indicator resets it).
 */
function expectedGaps(packets: readonly Pkt[], keep: (datagram: number) => boolean): Map<number, number> {
  const gaps = new Map<number, number>();
  const seen = new Set<number>();
  const pending = new Set<number>();
  packets.forEach((p, i) => {
    if (p.pid === PID_NULL || !p.payload) return;
    if (!keep(Math.floor(i / PER_DATAGRAM))) {
      if (seen.has(p.pid)) pending.add(p.pid);
      return;
    }
    if (pending.has(p.pid) && !p.discontinuity) gaps.set(p.pid, (gaps.get(p.pid) ?? 0) + 1);
    pending.delete(p.pid);
    seen.add(p.pid);
  });
  return gaps;
}

test(
  'a real H.264/AAC TS from ffmpeg: no priority-1 error, kinds found; every 50th datagram deleted: CC errors per PID equal the gaps',
  {
    skip,
  },
  () => {
    const clip = makeClip(3, 1_500_000);
    const { packets, pcrs } = parse(clip);
    assert.ok(pcrs.length > 100, `PCRs in the clip: ${pcrs.length}`);

    const clean = play(clip, pcrs, () => true).stats();
    const ts = clean.ts!;
    assert.equal(clean.datagrams, Math.ceil(packets.length / PER_DATAGRAM));
    assert.equal(ts.packets, packets.length);
    const p1 = {
      tsSyncLoss: ts.tsSyncLoss,
      syncByteError: ts.syncByteError,
      patError: ts.patError,
      ccError: ts.ccError,
      pmtError: ts.pmtError,
      pidError: ts.pidError,
    };
    assert.deepEqual(p1, { tsSyncLoss: 0, syncByteError: 0, patError: 0, ccError: 0, pmtError: 0, pidError: 0 });
    // ffmpeg's muxer stamps each PCR from its byte position at the mux rate: accurate, every 20 ms or so.
    assert.deepEqual([ts.pcrRepetitionError, ts.pcrDiscontinuityError, ts.pcrAccuracyError, ts.crcError, ts.sectionError], [0, 0, 0, 0, 0]);
    const kinds = ts.pids.map((p) => p.kind);
    assert.ok(kinds.includes('H.264') && kinds.includes('AAC'), `kinds: ${kinds.join(', ')}`);
    assert.deepEqual(clean.activeAlarms, []);

    // Every 50th datagram, starting at ten different places (the clip is mostly null packets, so one
    // pass hits few payload packets).
    let total = 0;
    for (let phase = 0; phase < 50; phase += 5) {
      const keep = (d: number) => (d + phase) % 50 !== 49;
      const lossy = play(clip, pcrs, keep).stats().ts!;
      const want = expectedGaps(packets, keep);
      for (const p of lossy.pids) assert.equal(p.ccErrors, want.get(p.pid) ?? 0, `phase ${phase}: PID 0x${p.pid.toString(16)} (${p.kind})`);
      const sum = [...want.values()].reduce((a, b) => a + b, 0);
      assert.equal(lossy.ccError, sum, `phase ${phase}`);
      total += sum;
    }
    assert.ok(total >= 10, `gaps injected over all phases: ${total}`);
  },
);

test('a real VBR TS from ffmpeg (no -muxrate): no priority-1 error and no PCR accuracy alarm, its bytes not following its clock', { skip }, () => {
  const clip = makeClip(6);
  const { pcrs } = parse(clip);
  const alarms: string[] = [];
  const ts = play(
    clip,
    pcrs,
    () => true,
    (a) => alarms.push(a.kind),
  ).stats().ts!;
  assert.deepEqual([ts.tsSyncLoss, ts.syncByteError, ts.patError, ts.ccError, ts.pmtError, ts.pidError], [0, 0, 0, 0, 0, 0]);
  assert.equal(ts.pcrAccuracyError, 0);
  assert.ok(!alarms.includes('pcrAccuracyError'));
});
