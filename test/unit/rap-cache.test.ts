import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { RapCache, type RapCachePayload } from '../../src/media/rap-cache.js';
import { TS_PACKET_SIZE, decodeTsPacket } from '../../src/wire/mpegts/packet.js';
import { decodePatSection, decodePmtSection, psiSectionOffset } from '../../src/wire/mpegts/psi.js';
import { AnnexBScan } from '../../src/media/nal-scan.js';
import { PMT_PID, rtpH264, rtpPacket, toDatagrams, tsPackets } from '../fixtures/rap-stream.js';

function feed(cache: RapCache, datagrams: readonly Uint8Array[], first = 1): void {
  datagrams.forEach((d, i) => cache.push(d, first + i, (first + i) * 10));
}

function pidsOf(prefix: Uint8Array, offset = 0): number[] {
  const out: number[] = [];
  for (let p = offset; p + TS_PACKET_SIZE <= prefix.length; p += TS_PACKET_SIZE) {
    const info = decodeTsPacket(prefix, p);
    assert.ok(info.ok);
    out.push(info.pid);
  }
  return out;
}

for (const codec of ['h264', 'h265'] as const) {
  test(`TS ${codec}: the cache starts at the datagram of the last keyframe, with the PAT and PMT first`, () => {
    const { packets, keyPacket } = tsPackets(35, { codec, gop: 10 });
    const datagrams = toDatagrams(packets);
    const cache = new RapCache({ payload: 'mpegts' });
    feed(cache, datagrams);
    const snap = cache.snapshot();
    assert.ok(snap);
    const keyDatagram = Math.floor(keyPacket.at(-1)! / 7);
    assert.equal(snap.datagrams[0]!.index, keyDatagram + 1);
    assert.deepEqual(
      snap.datagrams.map((d) => d.index),
      Array.from({ length: datagrams.length - keyDatagram }, (_, i) => keyDatagram + 1 + i),
    );
    // The first datagram starts at the keyframe's first packet: what precedes it in its datagram is cut.
    assert.deepEqual(snap.datagrams[0]!.bytes, datagrams[keyDatagram]!.subarray((keyPacket.at(-1)! % 7) * TS_PACKET_SIZE));
    assert.deepEqual(snap.datagrams[1]!.bytes, datagrams[keyDatagram + 1]);
    assert.ok(snap.prefix);
    assert.deepEqual(pidsOf(snap.prefix), [0, PMT_PID]);
    const pat = decodePatSection(snap.prefix.subarray(0, 188), psiSectionOffset(snap.prefix, 4, 184));
    assert.ok(pat.ok);
    const pmt = decodePmtSection(snap.prefix.subarray(188), psiSectionOffset(snap.prefix.subarray(188), 4, 184));
    assert.ok(pmt.ok);
    assert.equal(cache.stats().raps, 4);
    assert.equal(cache.stats().ready, true);
  });
}

test('TS: a keyframe without random_access_indicator is still found by its NAL units; a stream without keyframes caches nothing', () => {
  const { packets, keyPacket } = tsPackets(25, { gop: 10, rai: false });
  const cache = new RapCache({ payload: 'mpegts' });
  feed(cache, toDatagrams(packets));
  assert.equal(cache.snapshot()?.datagrams[0]!.index, Math.floor(keyPacket.at(-1)! / 7) + 1);
  const none = new RapCache({ payload: 'mpegts' });
  feed(none, toDatagrams(tsPackets(25, { gop: 100 }).packets.slice(30)));
  assert.equal(none.snapshot(), undefined);
  assert.equal(none.stats().ready, false);
  assert.ok(none.stats().datagrams <= 2, 'only the unit being read is held');
});

test('the scan finds a start code split between two pieces, and needs the parameter sets before the IDR', () => {
  const au = Uint8Array.from([0, 0, 0, 1, 0x67, 9, 0, 0, 1, 0x68, 9, 0, 0, 1, 0x65, 9]);
  for (let cut = 0; cut <= au.length; cut++) {
    const scan = new AnnexBScan('h264');
    scan.feed(au, 0, cut);
    assert.equal(scan.feed(au, cut, au.length - cut), 'rap', `cut at ${cut}`);
  }
  const noPps = new AnnexBScan('h264');
  assert.equal(noPps.feed(Uint8Array.from([0, 0, 1, 0x67, 9, 0, 0, 1, 0x65, 9]), 0, 10), 'no');
  const slice = new AnnexBScan('h264');
  assert.equal(slice.feed(Uint8Array.from([0, 0, 1, 0x67, 0, 0, 1, 0x68, 0, 0, 1, 0x41, 0, 0, 1, 0x65]), 0, 16), 'no');
});

test('bound: a group of pictures larger than maxCacheBytes drops the cache (counted) until one fits', () => {
  const big = toDatagrams(tsPackets(30, { gop: 10, packetsPerFrame: 8 }).packets);
  const small = toDatagrams(tsPackets(30, { gop: 2, packetsPerFrame: 8 }).packets);
  const gopBytes = (10 * 11 * 188) / 2;
  const cache = new RapCache({ payload: 'mpegts', maxCacheBytes: gopBytes });
  feed(cache, big);
  assert.equal(cache.snapshot(), undefined);
  assert.ok(cache.stats().overflows >= 2);
  assert.ok(cache.stats().bytes <= gopBytes);
  feed(cache, small, big.length + 1);
  const snap = cache.snapshot();
  assert.ok(snap, 'a smaller group of pictures is cached again');
  assert.ok(cache.stats().bytes <= gopBytes);
});

test('RTP/H.264: single NAL units or STAP-A parameter sets, then an IDR in FU-A fragments', () => {
  for (const stap of [false, true]) {
    const { packets, keyPacket } = rtpH264(25, 10, stap);
    const cache = new RapCache({ payload: 'rtp' });
    feed(cache, packets);
    const snap = cache.snapshot();
    assert.ok(snap);
    assert.equal(snap.prefix, undefined);
    assert.equal(snap.datagrams[0]!.index, keyPacket.at(-1)! + 1);
    assert.equal(snap.datagrams.length, packets.length - keyPacket.at(-1)!);
  }
  // An IDR whose parameter sets went out of band is no point this cache can serve.
  const idrOnly = rtpH264(25, 10).packets.filter((p) => p[12] !== 0x67 && p[12] !== 0x68);
  const cache = new RapCache({ payload: 'rtp' });
  feed(cache, idrOnly);
  assert.equal(cache.snapshot(), undefined);
});

test('TS in RTP: the point is found in the payload; the PAT/PMT prefix is an RTP packet numbered one before the first', () => {
  const { packets, keyPacket } = tsPackets(25, { gop: 10 });
  const datagrams = toDatagrams(packets).map((d, i) => rtpPacket((65000 + i) & 0xffff, i * 900, d, 33));
  const cache = new RapCache({ payload: 'rtp-mpegts' });
  feed(cache, datagrams);
  const snap = cache.snapshot();
  assert.ok(snap?.prefix);
  const first = snap.datagrams[0]!.bytes;
  assert.equal(snap.datagrams[0]!.index, Math.floor(keyPacket.at(-1)! / 7) + 1);
  assert.equal(snap.prefix.length, 12 + 2 * 188);
  assert.equal(snap.prefix[0], 0x80);
  assert.equal(snap.prefix[1], 33);
  const seq = (b: Uint8Array): number => (b[2]! << 8) | b[3]!;
  assert.equal((seq(snap.prefix) + 1) & 0xffff, seq(first));
  assert.deepEqual(snap.prefix.subarray(4, 12), first.subarray(4, 12));
  assert.deepEqual(pidsOf(snap.prefix, 12), [0, PMT_PID]);
});

test('bad input never throws and never makes a point out of noise', () => {
  const payloads: RapCachePayload[] = ['mpegts', 'rtp', 'rtp-mpegts'];
  const valid = toDatagrams(tsPackets(12, { gop: 4 }).packets);
  fc.assert(
    fc.property(
      fc.constantFrom(...payloads),
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 1500 }),
          fc.constantFrom(...valid).map((d) => d.slice()),
        ),
        { maxLength: 40 },
      ),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 20 }),
      (payload, list, flips) => {
        const cache = new RapCache({ payload, maxCacheBytes: 4000 });
        list.forEach((d, i) => {
          for (const [at, v] of flips) if (d.length) d[at % d.length] = v;
          cache.push(d, i + 1, i);
        });
        cache.push(undefined as unknown as Uint8Array, 0, 0);
        const snap = cache.snapshot();
        if (snap) assert.ok(snap.datagrams.length > 0);
        assert.ok(cache.stats().bytes <= 4000);
      },
    ),
    { numRuns: 300 },
  );
  const noise = new RapCache({ payload: 'mpegts' });
  for (let i = 0; i < 200; i++) noise.push(new Uint8Array(1316).fill(i & 0xff), i + 1, i);
  assert.equal(noise.snapshot(), undefined);
});

const ffmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

test(
  'an ffmpeg-made H.264 stream: decoding from the cache gives no missing-PPS errors, from a mid-GOP datagram it does',
  { skip: ffmpeg ? false : 'ffmpeg is not installed' },
  () => {
    const made = spawnSync(
      'ffmpeg',
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        'testsrc=size=160x120:rate=25',
        '-t',
        '5',
        '-c:v',
        'libx264',
        '-g',
        '50',
        '-f',
        'mpegts',
        'pipe:1',
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    assert.equal(made.status, 0, made.stderr.toString());
    const ts = new Uint8Array(made.stdout);
    const datagrams: Uint8Array[] = [];
    for (let p = 0; p + 1316 <= ts.length; p += 1316) datagrams.push(ts.subarray(p, p + 1316));
    // Stop mid-way through the second group of pictures (frame ~70 of 125).
    const upTo = Math.floor(datagrams.length * 0.6);
    const cache = new RapCache({ payload: 'mpegts' });
    feed(cache, datagrams.slice(0, upTo));
    const snap = cache.snapshot();
    assert.ok(snap?.prefix, 'a point and its PAT/PMT are cached');
    assert.ok(snap.datagrams[0]!.index > 1, 'the point is the second keyframe, not the start');
    const dir = mkdtempSync(join(tmpdir(), 'rap-cache-'));
    try {
      const decode = (parts: readonly Uint8Array[]): string => {
        const file = join(dir, 'part.ts');
        writeFileSync(file, Buffer.concat(parts));
        const run = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
        return run.stderr;
      };
      const fromCache = decode([snap.prefix, ...snap.datagrams.map((d) => d.bytes), ...datagrams.slice(upTo)]);
      assert.doesNotMatch(fromCache, /non-existing PPS|no frame/i);
      const midGop = decode(datagrams.slice(snap.datagrams[0]!.index + 20));
      assert.match(midGop, /non-existing PPS|no frame|decode_slice_header error/i, 'joining mid-GOP without the cache does show errors');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
