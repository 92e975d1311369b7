/**
 * Property tests (issue 16) for every decoder of bytes that come from the
 * network: MPEG-TS packets and PSI sections, IP address text and bytes,
 * the TPO message header, driver buffer (and its decompression), data
 * mover field and cursor, the handshake, datagram authentication, the
 * replay window, segment reassembly, the flow sequencer, the port demux
 * and the TS continuity checker.
 *
 * For each: arbitrary bytes and hostile variants of valid inputs
 * (truncated, bit-flipped, lying length fields, extended, cut) never throw
 * anything but the module's typed error; a view of a larger buffer
 * decodes as a copy does (nothing beyond the input is read); encoders and
 * decoders round-trip; whatever decodes re-encodes to the same bytes.
 * Runs are bounded so the file takes seconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { PCR_MODULUS } from '../../src/wire/mpegts/pcr.js';
import { TS_PACKET_SIZE, decodeTsPacket, encodeTsPacket, maxTsPayload, type TsPacketSpec } from '../../src/wire/mpegts/packet.js';
import { checkTsDatagram, isTsDatagramAt } from '../../src/wire/mpegts/datagram.js';
import { decodePatSection, decodePmtSection, encodePatSection, encodePmtSection, psiSectionOffset } from '../../src/wire/mpegts/psi.js';
import { formatIpv6, ipv4ToInt, ipv6Bytes } from '../../src/wire/ip-address.js';
import { WireError } from '../../src/wire/tpo/errors.js';
import { Reader, Writer } from '../../src/wire/tpo/cursor.js';
import {
  decodeDriverBuffer,
  decodeMessages,
  encodeDriverBuffer,
  encodeMessages,
  CODECS,
  MAX_DRIVER_BUFFER,
  ROUTING_HEADER_LENGTH,
  type CarriedMessage,
} from '../../src/wire/tpo/driver-buffer.js';
import { decodeDataMoverField, encodeDataMoverField, dataMoverFieldLength, type DataMoverField } from '../../src/wire/tpo/data-mover.js';
import { compress, openDriverBuffer } from '../../src/wire/tpo/compression.js';
import { decodeInitiate, decodeRespond, encodeInitiate, encodeRespond, peekKeyId, INITIATE_LENGTH, MAX_CLOCK_SKEW_MS } from '../../src/wire/tpo/handshake.js';
import { InitiationGuard } from '../../src/tpo/protocol/initiation-guard.js';
import { openDatagram, sealDatagram, TAG_LENGTH } from '../../src/tpo/protocol/datagram-crypto.js';
import { ReplayWindow } from '../../src/tpo/protocol/replay-window.js';
import { Reassembler, segmentBuffer, type Segment } from '../../src/tpo/protocol/segments.js';
import { TD_BUFFER_END, TD_BUFFER_START } from '../../src/wire/tpo/data-mover.js';
import { FlowSequencer } from '../../src/tpo/gateway/flow-sequencer.js';
import { decodeParity, encodeParity, parityLength, MAX_PARITY_MEMBERS, type Parity } from '../../src/wire/tpo/parity.js';
import { ParityCache } from '../../src/tpo/protocol/parity.js';
import { PortDemux } from '../../src/tpo/link/port-demux.js';
import { newPortStats, type DatagramPort, type DatagramSource } from '../../src/tpo/io/port.js';
import { TsContinuityChecker } from '../../src/media/ts-checker.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';
import { anyInput, carriedMessageArb, hostile, plain, sameInAnySurroundings, typedOnly } from './decoder-props.js';

const isWire = (e: unknown) => e instanceof WireError;
const never = () => false;

// ---------------------------------------------------------------------------
// MPEG-TS

const tsSpec: fc.Arbitrary<TsPacketSpec> = fc
  .record({
    pid: fc.integer({ min: 0, max: 0x1fff }),
    payloadUnitStart: fc.boolean(),
    continuityCounter: fc.integer({ min: 0, max: 15 }),
    pcr: fc.option(fc.bigInt({ min: 0n, max: PCR_MODULUS - 1n }), { nil: undefined }),
    randomAccess: fc.boolean(),
    discontinuity: fc.boolean(),
    payload: fc.uint8Array({ maxLength: 184 }),
  })
  .map((r) => ({ ...r, payload: r.payload.subarray(0, maxTsPayload(r.pcr !== undefined, r.randomAccess || r.discontinuity)) }));
const tsPacket = tsSpec.map((s) => Uint8Array.from(encodeTsPacket(s)));

test('TS packet: never throws, never points outside its 188 bytes, reads nothing beyond them (property)', () => {
  fc.assert(
    fc.property(anyInput(tsPacket, 400), fc.nat(8), (bytes, offset) => {
      const o = sameInAnySurroundings((b) => decodeTsPacket(b, offset), bytes, never, 'decodeTsPacket');
      assert.ok(o.ok);
      const r = o.value as ReturnType<typeof decodeTsPacket>;
      if (!r.ok) return;
      assert.ok(offset + TS_PACKET_SIZE <= bytes.length);
      assert.ok(
        r.payloadOffset >= offset + 4 && r.payloadOffset + r.payloadLength <= offset + TS_PACKET_SIZE,
        `payload ${r.payloadOffset}+${r.payloadLength} outside the packet at ${offset}`,
      );
      assert.ok(r.pid <= 0x1fff && r.continuityCounter <= 15);
      if (r.pcr !== undefined) assert.ok(r.pcr >= 0n && r.pcr < PCR_MODULUS, `PCR ${r.pcr} outside 0..${PCR_MODULUS - 1n}`);
    }),
    { numRuns: 800 },
  );
});

test('TS packet: a PCR extension above 299 (invalid) never yields a PCR outside its range', () => {
  // Found by the property above: base 2^33 - 1 with extension 511 decoded to 2^33 × 300 + 211.
  const p = new Uint8Array(188).fill(0xff);
  p.set([0x47, 0x00, 0x00, 0x20, 183, 0x10]);
  const r = decodeTsPacket(p);
  if (r.ok && r.pcr !== undefined) assert.ok(r.pcr < PCR_MODULUS, `PCR ${r.pcr} ≥ ${PCR_MODULUS}`);
});

test('TS packet: encode → decode round-trips (property)', () => {
  fc.assert(
    fc.property(tsSpec, (s) => {
      const b = encodeTsPacket(s);
      const r = decodeTsPacket(b);
      assert.ok(r.ok);
      assert.equal(r.pid, s.pid);
      assert.equal(r.continuityCounter, s.continuityCounter);
      assert.equal(r.pcr, s.pcr);
      assert.deepEqual([...b.subarray(r.payloadOffset, r.payloadOffset + r.payloadLength)], [...s.payload]);
    }),
    { numRuns: 300 },
  );
});

test('TS datagram framing: the in-place check agrees with the view check and never says yes beyond the buffer (property)', () => {
  const datagram = fc.array(tsPacket, { minLength: 1, maxLength: 7 }).map((ps) => Uint8Array.from(ps.flatMap((p) => [...p])));
  fc.assert(
    fc.property(anyInput(datagram, 1400), fc.nat(300), fc.nat(300), (bytes, before, after) => {
      const big = new Uint8Array(before + bytes.length + after).fill(0x47);
      big.set(bytes, before);
      const check = checkTsDatagram(bytes);
      assert.equal(isTsDatagramAt(big, before, bytes.length), check.ok);
      if (check.ok) assert.equal(check.packets * TS_PACKET_SIZE, bytes.length);
      // A length running past the end of the buffer is never a datagram.
      assert.equal(isTsDatagramAt(bytes, 0, bytes.length + TS_PACKET_SIZE), false);
    }),
    { numRuns: 800 },
  );
});

const patSection = fc
  .record({
    transportStreamId: fc.nat(0xffff),
    version: fc.nat(31),
    programs: fc.array(fc.record({ programNumber: fc.nat(0xffff), pmtPid: fc.integer({ min: 0x10, max: 0x1ffe }) }), { maxLength: 40 }),
  })
  .map((s) => encodePatSection(s));
const pmtSection = fc
  .record({
    programNumber: fc.nat(0xffff),
    pcrPid: fc.integer({ min: 0x10, max: 0x1fff }),
    version: fc.nat(31),
    streams: fc.array(fc.record({ streamType: fc.nat(255), elementaryPid: fc.integer({ min: 0x10, max: 0x1ffe }) }), { maxLength: 30 }),
  })
  .map((s) => encodePmtSection(s));

test('PAT/PMT sections: never throw, read nothing beyond the input, refuse every single-bit error and every truncation (property)', () => {
  for (const [name, valid, decode] of [
    ['PAT', patSection, decodePatSection],
    ['PMT', pmtSection, decodePmtSection],
  ] as const) {
    fc.assert(
      fc.property(anyInput(valid, 400), (bytes) => {
        const o = sameInAnySurroundings((b) => decode(b), bytes, never, `decode${name}Section`);
        assert.ok(o.ok);
        const r = o.value as { ok: boolean; sectionSize?: number };
        if (r.ok) assert.ok(r.sectionSize! <= bytes.length);
      }),
      { numRuns: 600 },
    );
    fc.assert(
      fc.property(valid, fc.nat(), (section, bit) => {
        assert.equal(decode(section).ok, true);
        const bad = Uint8Array.from(section);
        bad[(bit % (bad.length * 8)) >> 3]! ^= 1 << (bit & 7);
        assert.equal(decode(bad).ok, false, `${name}: bit ${bit % (bad.length * 8)} flipped and still accepted`);
        for (let n = 0; n < section.length; n += 1 + (n % 5)) assert.equal(decode(section.subarray(0, n)).ok, false, `${name}: truncated to ${n} and accepted`);
      }),
      { numRuns: 200 },
    );
  }
});

test('PSI section offset: inside the payload or -1 (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: -4, max: 450 }), fc.integer({ min: -4, max: 450 }), (buf, off, len) => {
      const at = psiSectionOffset(buf, off, len);
      if (at !== -1) assert.ok(at > off && at < off + len && at < buf.length);
    }),
    { numRuns: 1000 },
  );
});

test('TS continuity checker: any datagrams, never throws, counts every one (property)', () => {
  const ts = new SyntheticTsStream({ bitrateBps: 2_000_000 });
  const corpus = Array.from({ length: 8 }, () => Uint8Array.from(ts.nextDatagram()));
  fc.assert(
    fc.property(fc.array(anyInput(fc.constantFrom(...corpus), 1500), { maxLength: 40 }), (datagrams) => {
      const c = new TsContinuityChecker();
      for (const d of datagrams) c.push(d);
      const s = c.stats();
      assert.equal(s.datagrams, datagrams.length);
      assert.equal(
        s.packets,
        datagrams.reduce((n, d) => n + Math.floor(d.length / TS_PACKET_SIZE), 0),
      );
    }),
    { numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------
// IP addresses (text from policies and configs; bytes from the kernel and the wire)

const ipv4Text = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const ipv6Raw = fc.uint8Array({ minLength: 16, maxLength: 16 });
const addressText = fc.oneof(
  ipv4Text,
  ipv6Raw.map(formatIpv6),
  fc.string({ maxLength: 60 }),
  fc
    .tuple(fc.oneof(ipv4Text, ipv6Raw.map(formatIpv6)), fc.string({ maxLength: 6 }), fc.nat(40))
    .map(([a, s, at]) => a.slice(0, at % (a.length + 1)) + s + a.slice(at % (a.length + 1))),
  ipv6Raw.map((b) => `${formatIpv6(b)}%eth0`),
);

test('IP address text: a number/16 bytes or a TypeError; bytes → text → bytes is the identity (property)', () => {
  fc.assert(
    fc.property(addressText, (text) => {
      const v4 = typedOnly(
        () => ipv4ToInt(text),
        (e) => e instanceof TypeError,
        'ipv4ToInt',
      );
      if (v4.ok) assert.ok(Number.isInteger(v4.value) && (v4.value as number) >= 0 && (v4.value as number) <= 0xffffffff);
      const v6 = typedOnly(
        () => ipv6Bytes(text),
        (e) => e instanceof TypeError,
        'ipv6Bytes',
      );
      if (v6.ok) assert.equal((v6.value as Uint8Array).length, 16);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(ipv6Raw, (b) => assert.deepEqual([...ipv6Bytes(formatIpv6(b))], [...b])),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 40 }).filter((b) => b.length !== 16),
      (b) => void typedOnly(() => assert.throws(() => formatIpv6(b), TypeError), never),
    ),
    { numRuns: 50 },
  );
});

// ---------------------------------------------------------------------------
// TPO wire: messages, driver buffers, data mover field, cursor

const message = carriedMessageArb(120);
const messageList = fc.array(message, { minLength: 1, maxLength: 6 });
const rawMessages = messageList.map((ms) => ({ ms, raw: encodeMessages(ms) }));

test('messages: typed errors only, nothing read beyond the input, data inside it; what decodes re-encodes to the same bytes (property)', () => {
  fc.assert(
    fc.property(
      anyInput(
        rawMessages.map((x) => x.raw),
        600,
      ),
      fc.nat(8),
      (bytes, count) => {
        const o = sameInAnySurroundings((b) => decodeMessages(b, count), bytes, isWire, 'decodeMessages');
        if (o.ok)
          assert.deepEqual(
            [...encodeMessages(o.value as CarriedMessage[])],
            [...bytes],
            'accepted bytes that do not re-encode the same: two encodings of one message',
          );
      },
    ),
    { numRuns: 1500 },
  );
});

test('messages: a lying dataLength or header length is refused (property)', () => {
  fc.assert(
    fc.property(message, fc.nat(0xffffffff), fc.nat(255), (m, lie, hl) => {
      const raw = encodeMessages([m]);
      const badLen = Uint8Array.from(raw);
      if (lie !== m.data.length) {
        new DataView(badLen.buffer).setUint32(12, lie);
        assert.throws(() => decodeMessages(badLen, 1), isWire, `dataLength ${lie} for ${m.data.length} bytes accepted`);
      }
      if (hl !== raw[1]) {
        const badHl = Uint8Array.from(raw);
        badHl[1] = hl;
        assert.throws(() => decodeMessages(badHl, 1), isWire, `headerLength ${hl} accepted`);
      }
    }),
    { numRuns: 500 },
  );
});

const driverBuffer = fc
  .tuple(rawMessages, fc.nat(255), fc.constantFrom(...CODECS))
  .map(([{ ms, raw }, domain, codec]) =>
    encodeDriverBuffer(
      { function: 'messages', codec: codec === 'none' ? 'none' : codec, domain, count: ms.length, rawLength: raw.length },
      codec === 'none' ? raw : compress(codec, raw),
    ),
  );

test('driver buffer: typed errors only, nothing read beyond the input; a lying length, count or any changed byte is refused (property)', () => {
  fc.assert(
    fc.property(anyInput(driverBuffer, 600), (bytes) => {
      const o = sameInAnySurroundings(decodeDriverBuffer, bytes, isWire, 'decodeDriverBuffer');
      if (o.ok) assert.ok((o.value as { header: { dataLength: number } }).header.dataLength === bytes.length - ROUTING_HEADER_LENGTH);
      sameInAnySurroundings(openDriverBuffer, bytes, isWire, 'openDriverBuffer');
    }),
    { numRuns: 800 },
  );
  fc.assert(
    fc.property(hostile(driverBuffer), ({ valid, bytes }) => {
      if (bytes.length === valid.length && bytes.every((x, i) => x === valid[i])) return;
      assert.throws(() => decodeDriverBuffer(bytes), isWire, 'a changed driver buffer was accepted');
    }),
    { numRuns: 800 },
  );
});

test('driver buffer: compressed payloads round-trip; a lying raw length, count or a bomb is refused within its declared size (property)', () => {
  fc.assert(
    fc.property(
      rawMessages,
      fc.constantFrom('deflate' as const, 'brotli' as const),
      fc.integer({ min: -200, max: 200 }),
      fc.integer({ min: -2, max: 2 }),
      ({ ms, raw }, codec, dRaw, dCount) => {
        const payload = compress(codec, raw);
        const good = openDriverBuffer(encodeDriverBuffer({ function: 'messages', codec, domain: 3, count: ms.length, rawLength: raw.length }, payload));
        assert.deepEqual(plain(good.messages), plain(ms));
        const rawLength = raw.length + dRaw;
        const count = ms.length + dCount;
        if ((dRaw || dCount) && rawLength >= 0 && count >= 0) {
          assert.throws(
            () => openDriverBuffer(encodeDriverBuffer({ function: 'messages', codec, domain: 3, count, rawLength }, payload)),
            isWire,
            `rawLength ${rawLength} (really ${raw.length}), count ${count} (really ${ms.length}) accepted`,
          );
        }
      },
    ),
    { numRuns: 200 },
  );
  // 8 MiB of zeros in a few KiB: stopped at the declared length, never inflated whole.
  const zeros = new Uint8Array(8 << 20);
  for (const codec of ['deflate', 'brotli'] as const) {
    const bomb = compress(codec, zeros);
    assert.ok(bomb.length < 64 * 1024);
    for (const rawLength of [0, 1000, MAX_DRIVER_BUFFER]) {
      assert.throws(
        () => openDriverBuffer(encodeDriverBuffer({ function: 'messages', codec, domain: 0, count: 0, rawLength }, bomb)),
        (e: unknown) => isWire(e) && (e as WireError).reason === 'length',
      );
    }
  }
  // A control buffer is not for the far edge.
  assert.throws(
    () => openDriverBuffer(encodeDriverBuffer({ function: 'control', codec: 'none', domain: 0, count: 0, rawLength: 0 }, new Uint8Array(0))),
    isWire,
  );
});

const u53 = fc.maxSafeNat();
const field: fc.Arbitrary<DataMoverField> = fc.record(
  {
    connectionId: fc.nat(0xffffffff),
    transport: fc.record({ flags: fc.nat(31), logical: u53, physical: u53 }),
    ack: fc.record({
      highestSent: u53,
      highestReceived: u53,
      ackDelayUs: fc.nat(0xffffffff),
      deliveryRate: fc.nat(0xffffffff),
      cumulative: u53,
      bitmap: fc.uint8Array({ maxLength: 40 }),
      ranges: fc.array(
        fc.tuple(u53, fc.integer({ min: 1, max: 0xffffffff })).map(([largest, length]) => ({ largest, length: Math.min(length, largest + 1) })),
        { maxLength: 6 },
      ),
    }),
  },
  { requiredKeys: ['connectionId', 'transport'] },
);
const fieldDatagram = fc.tuple(field, fc.uint8Array({ maxLength: 40 })).map(([f, p]) => encodeDataMoverField(f, p));

test('data mover field: typed errors only, nothing read beyond the input; what decodes re-encodes to the same bytes (property)', () => {
  fc.assert(
    fc.property(anyInput(fieldDatagram, 400), (bytes) => {
      const o = sameInAnySurroundings(decodeDataMoverField, bytes, isWire, 'decodeDataMoverField');
      if (!o.ok) return;
      const d = o.value as ReturnType<typeof decodeDataMoverField>;
      assert.ok(d.payloadOffset <= bytes.length);
      assert.equal(d.payloadOffset, dataMoverFieldLength(d.field));
      assert.deepEqual([...encodeDataMoverField(d.field)], [...bytes.subarray(0, d.payloadOffset)]);
    }),
    { numRuns: 1500 },
  );
});

test('data mover field: a lying subfield length, bitmap length or range count is refused (property)', () => {
  fc.assert(
    fc.property(field, fc.nat(0xffff), fc.nat(0xffff), fc.nat(0xffff), (f, subLen, bitmapLen, ranges) => {
      const d = encodeDataMoverField(f);
      const v = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset);
      if (subLen !== 20) {
        const bad = Uint8Array.from(d);
        v(bad).setUint16(8, subLen);
        assert.throws(() => decodeDataMoverField(bad), isWire, `transport subfield length ${subLen} accepted`);
      }
      if (!f.ack) return;
      const ackAt = 28;
      const ackLen = v(d).getUint16(ackAt);
      for (const [at, value, real] of [
        [ackAt, subLen, ackLen],
        [ackAt + 36, bitmapLen, f.ack.bitmap.length],
        [ackAt + 38, ranges, f.ack.ranges.length],
      ] as const) {
        if (value === real) continue;
        const bad = Uint8Array.from(d);
        v(bad).setUint16(at, value);
        assert.throws(() => decodeDataMoverField(bad), isWire, `a lying u16 ${value} (really ${real}) at ${at} accepted`);
      }
    }),
    { numRuns: 600 },
  );
});

test('cursor: reads stay inside their window and past-the-end reads are truncated (property)', () => {
  const op = fc.constantFrom('u8', 'u16', 'u32', 'u64', 'bytes', 'skip');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(64), fc.nat(64), fc.array(fc.tuple(op, fc.nat(20)), { maxLength: 20 }), (bytes, a, b, ops) => {
      const start = Math.min(a, bytes.length);
      const end = Math.min(bytes.length, start + b);
      const inWindow = new Reader(bytes, 't', start, end);
      const alone = new Reader(Uint8Array.from(bytes.subarray(start, end)), 't');
      for (const [name, n] of ops) {
        const run = (r: Reader) => () => (name === 'bytes' ? [...r.bytesOf(n, 'f')] : name === 'skip' ? r.skip(n, 'f') : r[name]('f'));
        const x = typedOnly(run(inWindow), isWire, 'Reader');
        const y = typedOnly(run(alone), isWire, 'Reader');
        assert.deepEqual(plain(x.ok ? x.value : (x.error as WireError).reason), plain(y.ok ? y.value : (y.error as WireError).reason));
        assert.equal(inWindow.left, alone.left);
      }
    }),
    { numRuns: 800 },
  );
  // u64 beyond 2^53 is a value error, not a rounded number.
  const b = new Uint8Array(8);
  new Writer(b).u32(0x200000).u32(0);
  assert.throws(
    () => new Reader(b, 't').u64('x'),
    (e: unknown) => isWire(e) && (e as WireError).reason === 'value',
  );
});

// ---------------------------------------------------------------------------
// Handshake

const psk = randomBytes(32);
const initiation = fc.record({
  initiatorId: fc.nat(0xffffffff),
  keyId: fc.nat(0xffffffff),
  timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
  nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
});
const initiateDatagram = initiation.map((i) => encodeInitiate(psk, i));

test('handshake: peekKeyId and both decoders throw only WireErrors, read nothing beyond the input, and refuse every change (property)', () => {
  fc.assert(
    fc.property(anyInput(initiateDatagram, 1300), (bytes) => {
      const k = sameInAnySurroundings(peekKeyId, bytes, isWire, 'peekKeyId');
      if (k.ok) assert.ok(Number.isInteger(k.value) && (k.value as number) >= 0 && (k.value as number) <= 0xffffffff);
      sameInAnySurroundings((b) => decodeInitiate(psk, b), bytes, isWire, 'decodeInitiate');
    }),
    { numRuns: 400 },
  );
  fc.assert(
    fc.property(initiation, hostile(initiateDatagram), fc.nat(0xffffffff), (i, h, responderId) => {
      const sent = encodeInitiate(psk, i);
      const got = decodeInitiate(psk, sent);
      assert.deepEqual(plain(got), plain(i));
      const changed = h.bytes.length !== h.valid.length || h.bytes.some((x, j) => x !== h.valid[j]);
      if (changed) assert.throws(() => decodeInitiate(psk, h.bytes), isWire, 'a changed initiation authenticated');
      const answer = encodeRespond(psk, sent, { initiatorId: i.initiatorId, responderId, nonce: i.nonce });
      assert.deepEqual(plain(decodeRespond(psk, sent, answer)), plain({ initiatorId: i.initiatorId, responderId, nonce: i.nonce }));
      const badAnswer = hostile(fc.constant(answer));
      fc.assert(
        fc.property(badAnswer, ({ bytes }) => {
          const o = sameInAnySurroundings((b) => decodeRespond(psk, sent, b), bytes, isWire, 'decodeRespond');
          if (bytes.length !== answer.length || bytes.some((x, j) => x !== answer[j])) assert.equal(o.ok, false, 'a changed response authenticated');
        }),
        { numRuns: 5 },
      );
    }),
    { numRuns: 100 },
  );
});

test('handshake guard: an initiation is answered at most once, never when stale, never when older than one answered (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat(20_000), { minLength: 6, maxLength: 6 }),
      fc.array(fc.tuple(fc.nat(5), fc.integer({ min: -2 * MAX_CLOCK_SKEW_MS, max: 2 * MAX_CLOCK_SKEW_MS })), { maxLength: 30 }),
      (ages, events) => {
        const g = new InitiationGuard();
        const now = 1_000_000_000_000;
        const inits = ages.map((age, k) => ({ initiatorId: k, keyId: 0, timestamp: now - age, nonce: new Uint8Array(16).fill(k) }));
        const answered = new Set<number>();
        let newest = -Infinity;
        for (const [k, skew] of events) {
          const datagram = encodeInitiate(psk, inits[k]!);
          const i = decodeInitiate(psk, datagram);
          const ok = g.accept(i, now + skew);
          if (Math.abs(now + skew - i.timestamp) > MAX_CLOCK_SKEW_MS) assert.equal(ok, false, 'stale initiation answered');
          if (ok) {
            assert.ok(!answered.has(k), 'an initiation was answered twice');
            assert.ok(i.timestamp > newest, 'an initiation older than one answered was answered');
            answered.add(k);
            newest = i.timestamp;
          }
        }
      },
    ),
    { numRuns: 300 },
  );
  assert.equal(INITIATE_LENGTH, 1200);
});

// ---------------------------------------------------------------------------
// Datagram authentication and the replay window

test('datagram authentication: any change, truncation or wrong field length fails closed, never throws (property)', () => {
  const key = randomBytes(32);
  fc.assert(
    fc.property(
      field,
      fc.uint8Array({ maxLength: 200 }),
      fc.nat(300),
      fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
      (f, segment, fieldLenGuess, flips) => {
        const fieldBytes = encodeDataMoverField(f);
        const physical = f.transport.physical;
        const d = sealDatagram(key, physical, fieldBytes, segment);
        const opened = openDatagram(key, physical, d, fieldBytes.length);
        assert.ok(opened);
        assert.deepEqual([...opened], [...segment]);
        const bad = Uint8Array.from(d);
        for (const bit of flips) bad[(bit % (bad.length * 8)) >> 3]! ^= 1 << (bit & 7);
        const changed = bad.some((x, i) => x !== d[i]);
        const o = typedOnly(() => openDatagram(key, physical, bad, fieldBytes.length), never, 'openDatagram');
        if (changed) assert.equal((o as { value: unknown }).value, undefined, 'a changed datagram authenticated');
        const t = typedOnly(
          () => openDatagram(key, physical, d.subarray(0, d.length - 1 - (fieldLenGuess % d.length)), fieldBytes.length),
          never,
          'openDatagram',
        );
        assert.equal((t as { value: unknown }).value, undefined);
        const w = typedOnly(() => openDatagram(key, physical, d, fieldLenGuess), never, 'openDatagram');
        if (fieldLenGuess !== fieldBytes.length) assert.equal((w as { value: unknown }).value, undefined, 'authenticated with another field length');
        assert.ok(d.length === fieldBytes.length + segment.length + TAG_LENGTH);
      },
    ),
    { numRuns: 300 },
  );
});

test('replay window: any numbers (negative, fractional, huge) never throw, and none is accepted twice (property)', () => {
  const num = fc.oneof(
    fc.nat(100_000),
    fc.maxSafeNat(),
    fc.integer({ min: -5, max: -1 }),
    fc.double(),
    fc.constantFrom(Number.NaN, Infinity, 2 ** 53, 2 ** 64),
  );
  fc.assert(
    fc.property(fc.array(num, { maxLength: 200 }), (ns) => {
      const w = new ReplayWindow(64);
      const accepted = new Set<number>();
      for (const n of ns) {
        const c = w.check(n);
        const a = w.accept(n);
        assert.equal(a, c);
        if (a) {
          assert.ok(Number.isSafeInteger(n) && n >= 0, `accepted ${n}`);
          assert.ok(!accepted.has(n), `${n} accepted twice`);
          accepted.add(n);
        }
      }
    }),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------------------
// Segment reassembly

/** A segment whose bytes name it (logical number, length), so any delivered buffer can be parsed back into the segments it was built from. */
function taggedSegment(logical: number, flags: number, len: number): Segment {
  const b = new Uint8Array(Math.max(8, len));
  const v = new DataView(b.buffer);
  v.setUint32(0, logical >>> 0);
  v.setUint32(4, b.length);
  b.fill(logical & 0xff, 8);
  return { logical, flags, bytes: b };
}

test('reassembly: hostile segment streams never throw; every buffer is a start..end run of segments as first received; held is bounded (property)', () => {
  const seg = fc.record({
    d: fc.integer({ min: -4, max: 80 }),
    flags: fc.oneof(fc.constantFrom(0, TD_BUFFER_START, TD_BUFFER_END, TD_BUFFER_START | TD_BUFFER_END), fc.nat(255)),
    len: fc.nat(40),
  });
  fc.assert(
    fc.property(fc.array(seg, { maxLength: 300 }), fc.boolean(), (segs, ordered) => {
      const max = 32;
      const r = new Reassembler(max, ordered);
      for (const s of segs) {
        typedOnly(() => r.push(taggedSegment(Math.max(0, r.cumulative + s.d), s.flags, s.len)), never, 'Reassembler.push');
        assert.ok(r.held <= max, `holds ${r.held} segments, window ${max}`);
      }
    }),
    { numRuns: 300 },
  );
  // The same, checking what comes out.
  fc.assert(
    fc.property(fc.array(seg, { maxLength: 300 }), fc.boolean(), (segs, ordered) => {
      const r = new Reassembler(32, ordered);
      const first = new Map<number, Segment>();
      for (const s of segs) {
        const logical = Math.max(0, r.cumulative + s.d);
        const x = taggedSegment(logical, s.flags, s.len);
        if (!r.has(logical) && logical - r.cumulative < 32) first.set(logical, x);
        for (const buf of r.push(x)) {
          // Parse the buffer back into its segments.
          const parts: number[] = [];
          const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
          for (let at = 0; at < buf.length;) {
            assert.ok(at + 8 <= buf.length, 'a delivered buffer ends inside a segment');
            const n = v.getUint32(at);
            const len = v.getUint32(at + 4);
            const orig = first.get(n);
            assert.ok(orig, `segment ${n} in a buffer was never accepted`);
            assert.deepEqual([...buf.subarray(at, at + len)], [...orig.bytes], `segment ${n} delivered with other bytes than first received`);
            parts.push(n);
            at += len;
          }
          assert.ok(
            parts.every((n, i) => i === 0 || n === parts[i - 1]! + 1),
            `buffer from non-consecutive segments ${parts.join(',')}`,
          );
          assert.ok(first.get(parts[0]!)!.flags & TD_BUFFER_START, 'a buffer that does not begin with a start segment');
          assert.ok(first.get(parts.at(-1)!)!.flags & TD_BUFFER_END, 'a buffer that does not end with an end segment');
          assert.ok(
            parts.slice(1).every((n) => !(first.get(n)!.flags & TD_BUFFER_START)),
            'a start segment inside a buffer',
          );
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('reassembly, unordered: a start, then a whole buffer handed out early, then an end are not spliced into one buffer', () => {
  // Found by the property above: segment 1 (start and end) completes early and is handed out; when
  // segment 0 (a start) arrives, the in-order path skipped the early one and glued 0 to 2 (an end).
  const r = new Reassembler(32, false);
  const seg = (logical: number, flags: number) => ({ logical, flags, bytes: Uint8Array.of(logical) });
  const out = [...r.push(seg(2, TD_BUFFER_END)), ...r.push(seg(1, TD_BUFFER_START | TD_BUFFER_END)), ...r.push(seg(0, TD_BUFFER_START))];
  assert.deepEqual(
    out.map((b) => [...b]).filter((b) => b.length > 1),
    [],
    `spliced buffer(s) handed out: ${JSON.stringify(out.map((b) => [...b]))}`,
  );
  assert.ok(r.malformed > 0, 'a start followed by another start (segment 1) is malformed and must be counted');
});

test('reassembly: segmenting and reassembling any buffers is the identity (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 1, max: 1400 }),
      fc.boolean(),
      (buffers, size, ordered) => {
        const r = new Reassembler(16_384, ordered);
        let n = 0;
        const out: Uint8Array[] = [];
        for (const b of buffers) {
          const segs = segmentBuffer(b, size, n);
          n += segs.length;
          for (const s of segs) out.push(...r.push(s));
        }
        assert.deepEqual(
          out.map((b) => [...b]),
          buffers.map((b) => [...b]),
        );
      },
    ),
    { numRuns: 100 },
  );
});

test('reassembly: a buffer that never ends does not grow past the largest driver buffer (a peer cannot make it hold more)', () => {
  for (const ordered of [true, false]) {
    const r = new Reassembler(16_384, ordered);
    const seg = new Uint8Array(1200);
    let n = 0;
    const delivered: number[] = [];
    // 2 MiB of segments after one start, then an end: more than any driver buffer can be.
    r.push({ logical: n++, flags: TD_BUFFER_START, bytes: seg });
    while (n * seg.length < 2 * MAX_DRIVER_BUFFER) for (const b of r.push({ logical: n++, flags: 0, bytes: seg })) delivered.push(b.length);
    for (const b of r.push({ logical: n++, flags: TD_BUFFER_END, bytes: seg })) delivered.push(b.length);
    assert.ok(
      delivered.every((len) => len <= ROUTING_HEADER_LENGTH + MAX_DRIVER_BUFFER),
      `delivered a buffer of ${Math.max(...delivered)} bytes`,
    );
    assert.ok(r.malformed + r.refused > 0, 'the oversized buffer was not counted');
    // And the next buffer is delivered normally.
    const next = r.push({ logical: n++, flags: TD_BUFFER_START | TD_BUFFER_END, bytes: Uint8Array.of(1, 2, 3) });
    assert.deepEqual(
      next.map((b) => [...b]),
      [[1, 2, 3]],
    );
  }
});

// ---------------------------------------------------------------------------
// Flow sequencer and port demux (the gateway's first steps with a peer's data)

test('flow sequencer: any messages never throw; each flow gets its messages once, in sequence order; held is bounded (property)', () => {
  const msg = fc.record({
    key: fc.constantFrom('a', 'b', 'c'),
    fn: fc.constantFrom('data', 'data', 'data', 'open', 'close', 'reset', 'window'),
    seq: fc.oneof(fc.nat(40), fc.nat(0xffffffff), fc.constantFrom(0xffffffff, 0xfffffffe)),
  });
  fc.assert(
    fc.property(fc.array(msg, { maxLength: 300 }), (ms) => {
      const got = new Map<string, number[]>();
      let overflows = 0;
      const s = new FlowSequencer<{ seq: number; fn: string }>({
        deliver: (key, item) => {
          if (item.fn === 'reset') return;
          const xs = got.get(key) ?? [];
          xs.push(item.seq);
          got.set(key, xs);
        },
        onOrphans: () => {},
        onOverflow: (key) => {
          overflows++;
          got.delete(key);
        },
        maxHeld: 16,
        now: () => 0,
      });
      for (const m of ms) typedOnly(() => s.push(m.key, { function: m.fn, sequence: m.seq }, { seq: m.seq, fn: m.fn }), never, 'FlowSequencer.push');
      for (const [key, seqs] of got) {
        // Restarts at 0 are new flows; within one, each number is the previous + 1.
        for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] === (seqs[i - 1]! + 1) >>> 0 || seqs[i] === 0, `flow ${key}: ${seqs[i - 1]} then ${seqs[i]}`);
      }
      void overflows;
    }),
    { numRuns: 300 },
  );
  // A flow that holds more than maxHeld messages waiting for a gap is ended, not kept growing.
  let overflowed = 0;
  const s = new FlowSequencer<number>({ deliver: () => {}, onOrphans: () => {}, onOverflow: () => overflowed++, maxHeld: 16, now: () => 0 });
  for (let seq = 1; seq <= 17; seq++) s.push('k', { function: 'data', sequence: seq }, seq);
  assert.equal(overflowed, 1);
  assert.equal(s.size, 0);
});

class FakePort extends EventEmitter implements DatagramPort {
  readonly kind = 'portable' as const;
  readonly fallbackReason = undefined;
  readonly stats = newPortStats();
  send(): void {}
  flush(): void {}
  address() {
    return { address: '127.0.0.1', port: 1, family: 'IPv4' as const };
  }
  async close(): Promise<void> {}
}

test('port demux: any datagram is delivered to a link or counted as dropped, exactly once, and never throws (property)', () => {
  const prefixes = [1, 2, 3].map((kind) => Uint8Array.of(1, kind));
  const valid = fc.oneof(
    fieldDatagram,
    initiateDatagram,
    fc.tuple(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 100 })).map(([p, t]) => Uint8Array.from([...p, ...t])),
    fc.tuple(fc.constantFrom(7, 9, 0xabcdef), fc.uint8Array({ minLength: 30, maxLength: 60 })).map(([id, t]) => {
      const b = Uint8Array.from([1, 1, 0, 1, 0, 0, 0, 0, ...t]);
      new DataView(b.buffer).setUint32(4, id);
      return b;
    }),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(anyInput(valid, 200), fc.boolean()), { maxLength: 60 }), (datagrams) => {
      const port = new FakePort();
      const demux = new PortDemux(port);
      let delivered = 0;
      const views = [
        demux.view({ ownsConnection: (id) => id === 7, keyId: 1, role: 'initiator', peer: { address: '127.0.0.1', port: 9000 } }),
        demux.view({ ownsConnection: (id) => id === 9 || id === 0xabcdef, keyId: 2, role: 'responder' }),
      ];
      for (const v of views) v.on('message', () => delivered++);
      let expected = 0;
      for (const [d, fromPeer] of datagrams) {
        const counted = () => delivered + Object.values(demux.dropped).reduce((n, x) => n + x, 0);
        const before = counted();
        const from: DatagramSource = { address: '127.0.0.1', port: fromPeer ? 9000 : 9001, family: 'IPv4' };
        typedOnly(() => port.emit('message', Buffer.from(d), from), never, 'PortDemux');
        assert.ok(counted() > before, 'a datagram was neither delivered nor counted');
        expected++;
      }
      assert.ok(delivered + Object.values(demux.dropped).reduce((n, x) => n + x, 0) >= expected);
      demux.close();
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------
// TPO parity (latency-sensitive flows' forward error correction)

const paritySegments = fc
  .array(
    fc.record({
      flags: fc.constantFrom(0, TD_BUFFER_START, TD_BUFFER_END, TD_BUFFER_START | TD_BUFFER_END),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 200 }),
    }),
    {
      minLength: 2,
      maxLength: MAX_PARITY_MEMBERS,
    },
  )
  .chain((segs) =>
    fc
      .uniqueArray(fc.maxSafeNat(), { minLength: segs.length, maxLength: segs.length })
      .map((logicals) => segs.map((s, i) => ({ ...s, logical: logicals[i]! }))),
  );

test('parity: typed errors only, nothing read beyond the input; lengths agree with each other and the input (property)', () => {
  fc.assert(
    fc.property(anyInput(paritySegments.map(encodeParity), 1500), (bytes) => {
      const o = sameInAnySurroundings(decodeParity, bytes, isWire, 'decodeParity');
      if (!o.ok) return;
      const p = o.value as Parity;
      assert.ok(p.members.length >= 2 && p.members.length <= MAX_PARITY_MEMBERS);
      assert.equal(p.xor.length, Math.max(...p.members.map((m) => m.length)));
      assert.equal(new Set(p.members.map((m) => m.logical)).size, p.members.length);
      assert.equal(parityLength(p.members.length, p.xor.length), bytes.length);
    }),
    { numRuns: 1500 },
  );
});

test('parity: any one member of a group is rebuilt byte-exact from the others, never two, and nothing from a copy of the wrong length (property)', () => {
  fc.assert(
    fc.property(paritySegments, fc.nat(), fc.nat(), (segs, lose, lose2) => {
      const parity = decodeParity(encodeParity(segs));
      const missing = lose % segs.length;
      const cache = new ParityCache();
      segs.forEach((s, i) => i !== missing && cache.keep(s.logical, s.flags, s.bytes, 0));
      const has = (n: number) => segs.some((s, i) => i !== missing && s.logical === n);
      const rebuilt = cache.rebuild(parity, has);
      assert.ok(rebuilt, 'one missing member is rebuilt');
      assert.equal(rebuilt.logical, segs[missing]!.logical);
      assert.equal(rebuilt.flags, segs[missing]!.flags);
      assert.deepEqual([...rebuilt.bytes], [...segs[missing]!.bytes]);
      // Nothing missing, or two missing: nothing to rebuild.
      assert.equal(
        cache.rebuild(parity, () => true),
        undefined,
      );
      const second = (missing + 1 + (lose2 % (segs.length - 1))) % segs.length;
      assert.equal(
        cache.rebuild(parity, (n) => has(n) && n !== segs[second]!.logical),
        undefined,
      );
      // A kept copy whose length disagrees with the parity's: refused, not misbuilt.
      const liar = new ParityCache();
      segs.forEach((s, i) => i !== missing && liar.keep(s.logical, s.flags, i === second ? Uint8Array.from([...s.bytes, 1]) : s.bytes, 0));
      assert.equal(liar.rebuild(parity, has), undefined);
    }),
    { numRuns: 500 },
  );
});

test('parity cache: bounded in segments, bytes and age whatever is kept', () => {
  const cache = new ParityCache(8, 4000, 100);
  for (let i = 0; i < 100; i++) cache.keep(i, 0, new Uint8Array(700), i);
  assert.ok(cache.size <= 5, `${cache.size} copies kept within 4000 bytes`);
  cache.keep(1000, 0, new Uint8Array(10), 500);
  assert.equal(cache.size, 1, 'copies older than the age bound are gone');
  cache.keep(1001, 0, new Uint8Array(5000), 501);
  assert.equal(cache.size, 1, 'a copy larger than the whole bound is not kept');
});
