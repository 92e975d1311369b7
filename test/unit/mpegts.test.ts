import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32Mpeg } from '../../src/wire/crc32-mpeg.js';
import { PCR_MODULUS, pcrDelta, readPcr, wrapPcr } from '../../src/wire/mpegts/pcr.js';
import { TS_PACKET_SIZE, TS_DATAGRAM_SIZE, decodeTsPacket, encodeTsPacket, maxTsPayload, type TsPacketSpec } from '../../src/wire/mpegts/packet.js';
import { checkTsDatagram } from '../../src/wire/mpegts/datagram.js';
import {
  decodePatSection,
  decodePmtSection,
  encodePatSection,
  encodePmtSection,
  encodePsiPacket,
  encodePsiPayload,
  psiSectionOffset,
} from '../../src/wire/mpegts/psi.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

test('crc32Mpeg: check value and residue', () => {
  assert.equal(crc32Mpeg(ascii('123456789')), 0x0376e6e7);
  assert.equal(crc32Mpeg(new Uint8Array(0)), 0xffffffff);
  const buf = ascii('xx123456789yy');
  assert.equal(crc32Mpeg(buf, 2, 11), 0x0376e6e7);
  assert.throws(() => crc32Mpeg(buf, 5, 3), RangeError);
  assert.throws(() => crc32Mpeg(buf, 0, 99), RangeError);
});

const specArb: fc.Arbitrary<TsPacketSpec> = fc
  .record({
    pid: fc.integer({ min: 0, max: 0x1fff }),
    payloadUnitStart: fc.boolean(),
    continuityCounter: fc.integer({ min: 0, max: 15 }),
    pcr: fc.option(fc.bigInt({ min: 0n, max: PCR_MODULUS - 1n }), { nil: undefined }),
    randomAccess: fc.boolean(),
    discontinuity: fc.boolean(),
    len: fc.nat({ max: 184 }),
    seed: fc.nat(),
  })
  .map(({ len, seed, ...r }) => {
    const max = maxTsPayload(r.pcr !== undefined, r.randomAccess || r.discontinuity);
    const payload = new Uint8Array(Math.min(len, max)).map((_, i) => (seed + i * 7) & 0xff);
    return { ...r, payload };
  });

test('encodeTsPacket/decodeTsPacket round trip (property)', () => {
  fc.assert(
    fc.property(specArb, fc.nat({ max: 50 }), (spec, offset) => {
      const out = new Uint8Array(offset + TS_PACKET_SIZE + 3);
      const pkt = encodeTsPacket(spec, out, offset);
      assert.equal(pkt.length, TS_PACKET_SIZE);
      assert.equal(pkt.byteOffset, offset);
      const d = decodeTsPacket(out, offset);
      if (!d.ok) return assert.fail(d.reason);
      assert.equal(d.pid, spec.pid);
      assert.equal(d.payloadUnitStart, spec.payloadUnitStart);
      assert.equal(d.continuityCounter, spec.continuityCounter);
      assert.equal(d.randomAccess, spec.randomAccess === true);
      assert.equal(d.discontinuity, spec.discontinuity === true);
      assert.equal(d.pcr, spec.pcr);
      assert.equal(d.transportError, false);
      assert.equal(d.scrambling, 0);
      assert.equal(d.hasPayload, spec.payload.length > 0);
      assert.equal(d.payloadLength, spec.payload.length);
      assert.deepEqual(out.subarray(d.payloadOffset, d.payloadOffset + d.payloadLength), spec.payload);
      assert.equal(d.payloadOffset + d.payloadLength, offset + TS_PACKET_SIZE);
      if (spec.pcr !== undefined) assert.equal(BigInt(readPcr(out, offset + 6)), spec.pcr);
    }),
    { numRuns: 2000 },
  );
});

test('encodeTsPacket: header layout and stuffing', () => {
  const full = encodeTsPacket({ pid: 0x100, payloadUnitStart: true, continuityCounter: 5, payload: new Uint8Array(184).fill(1) });
  assert.deepEqual([...full.subarray(0, 4)], [0x47, 0x41, 0x00, 0x15]);
  const one = encodeTsPacket({ pid: 0x100, payloadUnitStart: false, continuityCounter: 0, payload: new Uint8Array(183) });
  assert.equal(one[3]! >> 4, 3);
  assert.equal(one[4], 0); // a one-byte adaptation field: only the length
  const empty = encodeTsPacket({ pid: 0x1fff, payloadUnitStart: false, continuityCounter: 0, payload: new Uint8Array(0) });
  assert.equal(empty[3]! >> 4, 2); // adaptation only
  assert.equal(empty[4], 183);
  assert.ok(empty.subarray(6).every((b) => b === 0xff));
  const d = decodeTsPacket(empty);
  assert.ok(d.ok && !d.hasPayload && d.payloadLength === 0);
});

test('encodeTsPacket rejects invalid specs', () => {
  const p = new Uint8Array(10);
  const base = { pid: 1, payloadUnitStart: false, continuityCounter: 0, payload: p };
  assert.throws(() => encodeTsPacket({ ...base, pid: 0x2000 }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, pid: 1.5 }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, continuityCounter: 16 }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, pcr: PCR_MODULUS }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, pcr: -1n }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, pcr: 5 as unknown as bigint }), TypeError);
  assert.throws(() => encodeTsPacket({ ...base, payload: [1, 2] as unknown as Uint8Array }), TypeError);
  assert.throws(() => encodeTsPacket({ ...base, payload: new Uint8Array(185) }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, pcr: 0n, payload: new Uint8Array(177) }), RangeError);
  assert.throws(() => encodeTsPacket({ ...base, randomAccess: true, payload: new Uint8Array(183) }), RangeError);
  assert.throws(() => encodeTsPacket(base, new Uint8Array(200), 13), RangeError);
});

test('decodeTsPacket never throws on arbitrary bytes (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: -5, max: 400 }), (bytes, offset) => {
      const d = decodeTsPacket(bytes, offset);
      if (d.ok) {
        assert.ok(d.payloadOffset >= offset + 4 && d.payloadOffset + d.payloadLength <= offset + TS_PACKET_SIZE);
      } else {
        assert.equal(typeof d.reason, 'string');
      }
    }),
    { numRuns: 3000 },
  );
  // Sync byte forced, so header parsing paths are exercised too.
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 188, maxLength: 188 }), (bytes) => {
      bytes[0] = 0x47;
      const d = decodeTsPacket(bytes);
      if (d.ok) assert.ok(d.payloadOffset + d.payloadLength <= TS_PACKET_SIZE);
    }),
    { numRuns: 3000 },
  );
});

test('decodeTsPacket reasons', () => {
  const pkt = encodeTsPacket({ pid: 0x100, payloadUnitStart: false, continuityCounter: 0, pcr: 123n, payload: new Uint8Array(10) });
  assert.deepEqual(decodeTsPacket(pkt.subarray(0, 187)), { ok: false, reason: 'truncated' });
  assert.deepEqual(decodeTsPacket(pkt, 1), { ok: false, reason: 'truncated' });
  assert.deepEqual(decodeTsPacket(pkt, -1), { ok: false, reason: 'truncated' });
  const bad = Uint8Array.from(pkt);
  bad[0] = 0x46;
  assert.deepEqual(decodeTsPacket(bad), { ok: false, reason: 'sync' });
  bad[0] = 0x47;
  bad[3] = bad[3]! & 0xcf;
  assert.deepEqual(decodeTsPacket(bad), { ok: false, reason: 'afc' });
  bad.set(pkt);
  bad[4] = 184;
  assert.deepEqual(decodeTsPacket(bad), { ok: false, reason: 'adaptation-overflow' });
  bad[4] = 3; // PCR flag set but only 3 bytes of adaptation field
  assert.deepEqual(decodeTsPacket(bad), { ok: false, reason: 'adaptation-fields' });
});

test('checkTsDatagram', () => {
  const dg = new Uint8Array(TS_DATAGRAM_SIZE);
  for (let i = 0; i < 7; i++) encodeTsPacket({ pid: 0x100, payloadUnitStart: false, continuityCounter: i, payload: new Uint8Array(184) }, dg, i * 188);
  const ok = checkTsDatagram(dg);
  assert.deepEqual(ok, { ok: true, packets: 7 });
  assert.equal(checkTsDatagram(dg), ok, 'results are shared, not allocated');
  assert.deepEqual(checkTsDatagram(new Uint8Array(0)), { ok: false, reason: 'empty' });
  assert.deepEqual(checkTsDatagram(dg.subarray(0, 1315)), { ok: false, reason: 'length' });
  const bad = Uint8Array.from(dg);
  bad[188 * 6] = 0;
  assert.deepEqual(checkTsDatagram(bad), { ok: false, reason: 'sync' });
  assert.deepEqual(checkTsDatagram(Buffer.from(dg.subarray(0, 188))), { ok: true, packets: 1 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1400 }), (b) => {
      const r = checkTsDatagram(b);
      const expected = b.length > 0 && b.length % 188 === 0 && b.every((x, i) => i % 188 !== 0 || x === 0x47);
      assert.equal(r.ok, expected);
    }),
  );
});

const pidArb = fc.integer({ min: 0x10, max: 0x1ffe });

test('PAT round trip (property) and corruption detection', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 0xffff }), pidArb).map(([programNumber, pmtPid]) => ({ programNumber, pmtPid })),
        { maxLength: 40 },
      ),
      fc.integer({ min: 0, max: 31 }),
      (transportStreamId, programs, version) => {
        const s = encodePatSection({ transportStreamId, programs, version });
        const d = decodePatSection(s);
        assert.ok(d.ok, JSON.stringify(d));
        assert.equal(d.transportStreamId, transportStreamId);
        assert.equal(d.version, version);
        assert.equal(d.currentNext, true);
        assert.deepEqual(d.programs, programs);
        assert.equal(d.sectionSize, s.length);
      },
    ),
  );
  const s = encodePatSection({ transportStreamId: 1, programs: [{ programNumber: 1, pmtPid: 0x1000 }] });
  assert.equal(s.length, 16);
  assert.equal(crc32Mpeg(s), 0);
  for (let i = 3; i < s.length; i++) {
    const c = Uint8Array.from(s);
    c[i]! ^= 0x10;
    assert.deepEqual(decodePatSection(c), { ok: false, reason: 'crc' }, `byte ${i}`);
  }
  assert.deepEqual(decodePatSection(s.subarray(0, 10)), { ok: false, reason: 'truncated' });
  const wrongTable = Uint8Array.from(s);
  wrongTable[0] = 2;
  assert.deepEqual(decodePatSection(wrongTable), { ok: false, reason: 'table-id' });
  assert.throws(() => encodePatSection({ transportStreamId: 1, programs: [{ programNumber: 1, pmtPid: 0x1fff }] }), RangeError);
  assert.throws(() => encodePatSection({ transportStreamId: 0x10000, programs: [] }), RangeError);
});

test('PMT round trip (property) and corruption detection', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0x10, max: 0x1fff }),
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 255 }), pidArb).map(([streamType, elementaryPid]) => ({ streamType, elementaryPid })),
        { maxLength: 30 },
      ),
      fc.integer({ min: 0, max: 31 }),
      (programNumber, pcrPid, streams, version) => {
        const s = encodePmtSection({ programNumber, pcrPid, streams, version });
        const d = decodePmtSection(s);
        assert.ok(d.ok, JSON.stringify(d));
        assert.equal(d.programNumber, programNumber);
        assert.equal(d.pcrPid, pcrPid);
        assert.equal(d.version, version);
        assert.deepEqual(d.streams, streams);
      },
    ),
  );
  const s = encodePmtSection({ programNumber: 1, pcrPid: 0x100, streams: [{ streamType: 0x1b, elementaryPid: 0x100 }] });
  const c = Uint8Array.from(s);
  c[12] = 0x24;
  assert.deepEqual(decodePmtSection(c), { ok: false, reason: 'crc' });
  assert.deepEqual(decodePmtSection(encodePatSection({ transportStreamId: 1, programs: [] })), { ok: false, reason: 'table-id' });
});

test('PSI decoders never throw on arbitrary bytes (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: -2, max: 300 }), (b, off) => {
      assert.equal(typeof decodePatSection(b, off).ok, 'boolean');
      assert.equal(typeof decodePmtSection(b, off).ok, 'boolean');
    }),
    { numRuns: 3000 },
  );
});

test('PSI payload wrapping', () => {
  const pat = encodePatSection({ transportStreamId: 7, programs: [{ programNumber: 1, pmtPid: 0x1000 }] });
  const payload = encodePsiPayload(pat);
  assert.equal(payload.length, 184);
  assert.equal(payload[0], 0);
  assert.ok(payload.subarray(1 + pat.length).every((b) => b === 0xff));
  const pkt = encodePsiPacket(0, 3, pat);
  const d = decodeTsPacket(pkt);
  assert.ok(d.ok && d.payloadUnitStart && d.pid === 0 && d.continuityCounter === 3);
  const start = psiSectionOffset(pkt, d.payloadOffset, d.payloadLength);
  assert.equal(start, 5);
  const t = decodePatSection(pkt, start);
  assert.ok(t.ok && t.transportStreamId === 7);
  assert.throws(() => encodePsiPayload(new Uint8Array(184)), RangeError);
});

test('PCR helpers', () => {
  assert.equal(wrapPcr(PCR_MODULUS + 5n), 5n);
  assert.equal(wrapPcr(-1n), PCR_MODULUS - 1n);
  assert.equal(pcrDelta(Number(PCR_MODULUS) - 10, 20), 30);
  assert.equal(pcrDelta(10, 20), 10);
});
