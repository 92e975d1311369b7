import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';
import { TsContinuityChecker } from '../../src/media/ts-checker.js';
import { PCR_CLOCK_HZ, PCR_MODULUS } from '../../src/wire/mpegts/pcr.js';
import { TS_DATAGRAM_SIZE, TS_PACKET_SIZE, decodeTsPacket, encodeTsPacket } from '../../src/wire/mpegts/packet.js';
import { checkTsDatagram } from '../../src/wire/mpegts/datagram.js';
import { decodePatSection, decodePmtSection, psiSectionOffset } from '../../src/wire/mpegts/psi.js';

const BITRATE = 20_000_000;
/** Stream time of a byte position, in ms. */
const msAt = (byte: number, bitrate = BITRATE): number => (byte * 8 * 1000) / bitrate;

function datagrams(s: SyntheticTsStream, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) out.push(s.nextDatagram());
  return out;
}

function checkAll(list: readonly Uint8Array[]): ReturnType<TsContinuityChecker['stats']> {
  const c = new TsContinuityChecker();
  for (const d of list) c.push(d);
  return c.stats();
}

/** Builds one datagram of video packets with the given CCs (adaptation-only when cc is null). */
function videoDatagram(ccs: readonly (number | null)[], opts: { discontinuityAt?: number } = {}): Uint8Array {
  const out = new Uint8Array(ccs.length * TS_PACKET_SIZE);
  ccs.forEach((cc, i) =>
    encodeTsPacket(
      {
        pid: 0x100,
        payloadUnitStart: false,
        continuityCounter: cc ?? 0,
        discontinuity: opts.discontinuityAt === i,
        payload: new Uint8Array(cc === null ? 0 : 100),
      },
      out,
      i * TS_PACKET_SIZE,
    ),
  );
  return out;
}

test('defaults: 1316-byte datagrams, interval from bitrate', () => {
  const s = new SyntheticTsStream();
  assert.equal(s.bitrateBps, BITRATE);
  assert.equal(s.datagramSize, TS_DATAGRAM_SIZE);
  assert.equal(s.datagramIntervalNs, 526_400); // 1316 B × 8 / 20 Mbit/s
  const d = s.nextDatagram();
  assert.equal(d.length, 1316);
  assert.equal(s.datagrams, 1);
  assert.equal(s.packets, 7);
  assert.equal(s.bytes, 1316);
  assert.equal(s.streamTimeNs, 526_400);
});

test('10,000 datagrams: valid framing, no CC errors, PSI and PCR present', () => {
  const s = new SyntheticTsStream({ bitrateBps: BITRATE });
  const c = new TsContinuityChecker();
  const buf = new Uint8Array(s.datagramSize);
  for (let i = 0; i < 10_000; i++) {
    assert.equal(s.writeDatagram(buf), 1316);
    assert.deepEqual(checkTsDatagram(buf), { ok: true, packets: 7 });
    c.push(buf);
  }
  const st = c.stats();
  const seconds = msAt(s.bytes) / 1000; // ≈ 5.26 s
  assert.equal(st.datagrams, 10_000);
  assert.equal(st.packets, 70_000);
  assert.equal(st.syncErrors, 0);
  assert.equal(st.ccErrors, 0);
  assert.equal(st.missingPackets, 0);
  assert.equal(st.duplicates, 0);
  assert.equal(st.psiErrors, 0);
  assert.equal(st.malformedDatagrams, 0);
  assert.equal(st.pids, 3);
  assert.equal(st.patSeen, s.patPackets);
  assert.equal(st.pmtSeen, s.pmtPackets);
  assert.ok(Math.abs(st.patSeen - seconds * 10) <= 1, `PAT count ${st.patSeen} for ${seconds}s`);
  assert.ok(Math.abs(st.pcrCount - seconds * 50) <= 1, `PCR count ${st.pcrCount} for ${seconds}s`);
  assert.equal(st.pcrCount, s.pcrPackets);
  assert.ok(Math.abs(s.pesStarts - seconds * 25) <= 1);
  assert.equal(typeof st.lastPcr, 'number');
  assert.doesNotThrow(() => JSON.stringify(st));
});

test('PAT/PMT content and repetition interval; PMT right after PAT', () => {
  const s = new SyntheticTsStream({ programNumber: 3, pmtPid: 0x1234, videoPid: 0x200, psiIntervalMs: 100 });
  const list = datagrams(s, 3000);
  const patAt: number[] = [];
  let packet = 0;
  let prevWasPat = false;
  for (const d of list) {
    for (let o = 0; o < d.length; o += TS_PACKET_SIZE, packet++) {
      const p = decodeTsPacket(d, o);
      if (!p.ok) return assert.fail(p.reason);
      if (p.pid === 0) {
        assert.ok(p.payloadUnitStart);
        const pat = decodePatSection(d, psiSectionOffset(d, p.payloadOffset, p.payloadLength));
        if (!pat.ok) return assert.fail(pat.reason);
        assert.deepEqual(pat.programs, [{ programNumber: 3, pmtPid: 0x1234 }]);
        patAt.push(packet);
      } else if (p.pid === 0x1234) {
        assert.ok(prevWasPat, 'PMT follows PAT');
        const pmt = decodePmtSection(d, psiSectionOffset(d, p.payloadOffset, p.payloadLength));
        if (!pmt.ok) return assert.fail(pmt.reason);
        assert.equal(pmt.programNumber, 3);
        assert.equal(pmt.pcrPid, 0x200);
        assert.deepEqual(pmt.streams, [{ streamType: 0x1b, elementaryPid: 0x200 }]);
      } else {
        assert.equal(p.pid, 0x200);
      }
      prevWasPat = p.pid === 0;
    }
  }
  assert.equal(patAt[0], 0, 'stream starts with PAT');
  const packetMs = msAt(TS_PACKET_SIZE);
  for (let i = 1; i < patAt.length; i++) {
    const gapMs = msAt((patAt[i]! - patAt[i - 1]!) * TS_PACKET_SIZE);
    assert.ok(Math.abs(gapMs - 100) <= 2 * packetMs + 1e-9, `PAT gap ${gapMs} ms`);
  }
  // PAT k is sent at k × 100 ms of stream time, at most one packet late (a due PCR goes first).
  for (const [k, at] of patAt.entries()) {
    assert.ok(msAt(at * TS_PACKET_SIZE) >= k * 100 - 1e-9, `PAT ${k} early`);
    assert.ok(msAt((at - 2) * TS_PACKET_SIZE) < k * 100 || at <= 1, `PAT ${k} late`);
  }
});

test('PCR: monotonic, ≤ 40 ms apart, consistent with the bitrate', () => {
  for (const bitrate of [300_000, 1_000_000, 7_654_321, 20_000_000, 80_000_000]) {
    const s = new SyntheticTsStream({ bitrateBps: bitrate, pcrIntervalMs: 20 });
    const n = Math.ceil(bitrate / 8 / 1316); // ~1 s of stream
    let packet = 0;
    let prev: { pcr: bigint; packet: number } | undefined;
    let count = 0;
    for (const d of datagrams(s, n)) {
      for (let o = 0; o < d.length; o += TS_PACKET_SIZE, packet++) {
        const p = decodeTsPacket(d, o);
        if (!p.ok) return assert.fail(p.reason);
        if (p.pcr === undefined) continue;
        count++;
        assert.equal(p.pcr, s.pcrForPacket(packet));
        if (prev) {
          assert.ok(p.pcr > prev.pcr, 'monotonic');
          // Δpcr equals Δbytes × 8 × 27 MHz / bitrate, to within rounding.
          const expected = ((packet - prev.packet) * TS_PACKET_SIZE * 8 * PCR_CLOCK_HZ) / bitrate;
          assert.ok(Math.abs(Number(p.pcr - prev.pcr) - expected) <= 1, `bitrate ${bitrate}`);
          assert.ok(Number(p.pcr - prev.pcr) <= 0.04 * PCR_CLOCK_HZ, 'PCR interval ≤ 40 ms');
        }
        prev = { pcr: p.pcr, packet };
      }
    }
    assert.ok(count >= 45, `bitrate ${bitrate}: ${count} PCRs`);
  }
});

test('PCR wraps at 2^33 × 300', () => {
  const s = new SyntheticTsStream({ bitrateBps: 300_000 });
  const wrapPacket = Math.ceil((Number(PCR_MODULUS) / PCR_CLOCK_HZ) * (300_000 / 8 / TS_PACKET_SIZE));
  assert.ok(s.pcrForPacket(wrapPacket) < 27_000_000n * 2n);
  assert.ok(s.pcrForPacket(wrapPacket - 2) > PCR_MODULUS - 27_000_000n * 2n);
});

test('PES starts carry a PES header with PTS', () => {
  const s = new SyntheticTsStream();
  let starts = 0;
  for (const d of datagrams(s, 2000)) {
    for (let o = 0; o < d.length; o += TS_PACKET_SIZE) {
      const p = decodeTsPacket(d, o);
      if (!p.ok || p.pid !== 0x100 || !p.payloadUnitStart) continue;
      starts++;
      assert.deepEqual([...d.subarray(p.payloadOffset, p.payloadOffset + 4)], [0, 0, 1, 0xe0]);
      assert.equal(d[p.payloadOffset + 7], 0x80);
    }
  }
  assert.equal(starts, s.pesStarts);
  assert.ok(starts >= 25, `${starts} PES starts in ~1 s`); // 2000 datagrams ≈ 1.05 s at 25 Hz
});

test('deterministic: same options give the same bytes', () => {
  fc.assert(
    fc.property(fc.integer({ min: 300_000, max: 50_000_000 }), fc.integer({ min: 1, max: 10 }), (bitrateBps, packetsPerDatagram) => {
      const a = new SyntheticTsStream({ bitrateBps, packetsPerDatagram });
      const b = new SyntheticTsStream({ bitrateBps, packetsPerDatagram });
      const buf = new Uint8Array(a.datagramSize);
      for (let i = 0; i < 50; i++) {
        b.writeDatagram(buf);
        assert.deepEqual(a.nextDatagram(), buf);
      }
      const c = new TsContinuityChecker();
      for (let i = 0; i < 200; i++) c.push(a.nextDatagram());
      assert.equal(c.stats().ccErrors, 0);
      assert.equal(c.stats().psiErrors, 0);
    }),
    { numRuns: 20 },
  );
});

test('invalid options and buffers are rejected', () => {
  assert.throws(() => new SyntheticTsStream({ bitrateBps: 0 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ bitrateBps: 299_999 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ bitrateBps: 1.5e6 + 0.5 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ pcrIntervalMs: 41 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ packetsPerDatagram: 0 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ pmtPid: 0x100, videoPid: 0x100 }), RangeError);
  assert.throws(() => new SyntheticTsStream({ videoPid: 0x1fff }), RangeError);
  assert.throws(() => new SyntheticTsStream().writeDatagram(new Uint8Array(1315)), RangeError);
});

test('checker: a dropped datagram shows as CC errors and missing packets', () => {
  const list = datagrams(new SyntheticTsStream(), 2000);
  assert.equal(checkAll(list).ccErrors, 0);
  // Datagram 1000 is all video packets (PSI sits at the start of each 100 ms).
  const dropped = list[1000]!;
  for (let o = 0; o < dropped.length; o += TS_PACKET_SIZE) {
    const p = decodeTsPacket(dropped, o);
    assert.ok(p.ok && p.pid === 0x100);
  }
  const st = checkAll(list.filter((_, i) => i !== 1000));
  assert.equal(st.ccErrors, 1);
  assert.equal(st.missingPackets, 7);
  // Dropping a datagram holding PAT+PMT also breaks their PIDs' continuity.
  const st2 = checkAll(list.filter((_, i) => i !== 0 && i !== 1000 && i !== 1001));
  assert.ok(st2.ccErrors > 0 && st2.missingPackets >= 14);
});

test('checker: a corrupted sync byte is counted and the packet treated as lost', () => {
  const list = datagrams(new SyntheticTsStream(), 200);
  const bad = Uint8Array.from(list[100]!);
  bad[3 * TS_PACKET_SIZE] = 0x48;
  list[100] = bad;
  const st = checkAll(list);
  assert.equal(st.syncErrors, 1);
  assert.equal(st.ccErrors, 1);
  assert.equal(st.missingPackets, 1);
  assert.deepEqual(checkTsDatagram(bad), { ok: false, reason: 'sync' });
});

test('checker: MPEG CC rules (duplicate, adaptation-only, discontinuity, wrap)', () => {
  const cc = (list: Uint8Array[]) => checkAll(list);
  // Wrap 15 → 0 is fine.
  assert.equal(cc([videoDatagram([14, 15, 0, 1])]).ccErrors, 0);
  // One repeat is allowed; a second is not.
  let st = cc([videoDatagram([3, 4, 4, 5])]);
  assert.equal(st.ccErrors, 0);
  assert.equal(st.duplicates, 1);
  st = cc([videoDatagram([3, 4, 4, 4, 5])]);
  assert.equal(st.ccErrors, 1);
  // Adaptation-only packets do not advance the CC (and are not checked).
  assert.equal(cc([videoDatagram([3, null, 4, null, 5])]).ccErrors, 0);
  // discontinuity_indicator allows a jump.
  st = cc([videoDatagram([3, 4, 9, 10], { discontinuityAt: 2 })]);
  assert.equal(st.ccErrors, 0);
  assert.equal(st.discontinuities, 1);
  // A gap is counted modulo 16.
  st = cc([videoDatagram([3, 4]), videoDatagram([8])]);
  assert.equal(st.ccErrors, 1);
  assert.equal(st.missingPackets, 3);
  // Tail bytes that are not a whole packet make the datagram malformed.
  st = cc([new Uint8Array(10), videoDatagram([1]).subarray(0, 187)]);
  assert.equal(st.malformedDatagrams, 2);
  assert.equal(st.packets, 0);
});

test('checker: arbitrary bytes never throw and counters stay consistent (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 1400 }), { maxLength: 20 }), (list) => {
      const c = new TsContinuityChecker();
      for (const d of list) {
        // Force sync bytes on half the packets so the header paths run.
        for (let o = 0; o + TS_PACKET_SIZE <= d.length; o += 2 * TS_PACKET_SIZE) d[o] = 0x47;
        c.push(d);
      }
      const st = c.stats();
      assert.equal(st.datagrams, list.length);
      assert.ok(st.syncErrors <= st.packets);
      c.reset();
      assert.equal(c.stats().packets, 0);
    }),
    { numRuns: 300 },
  );
});
