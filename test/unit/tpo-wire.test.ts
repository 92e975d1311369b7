/**
 * The TPO wire codecs (docs/WIRE.md): every structure round-trips; every
 * truncation is refused with a WireError; a driver buffer refuses every
 * single-bit corruption (CRC-32); arbitrary bytes never throw anything but
 * a WireError, and whatever decodes re-encodes to the same bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { WireError } from '../../src/wire/tpo/errors.js';
import { carriedMessageArb } from '../fuzz/decoder-props.js';
import { decodeDriverBuffer, decodeMessages, encodeDriverBuffer, encodeMessages, CODECS } from '../../src/wire/tpo/driver-buffer.js';
import { decodeDataMoverField, encodeDataMoverField, type DataMoverField } from '../../src/wire/tpo/data-mover.js';

const message = carriedMessageArb(200);
const messages = fc.array(message, { maxLength: 8 });

const isWireError = (e: unknown) => e instanceof WireError;

test('messages and driver buffers round-trip', () => {
  fc.assert(
    fc.property(messages, fc.nat(255), fc.constantFrom(...CODECS), (ms, domain, codec) => {
      const raw = encodeMessages(ms);
      assert.deepEqual(
        decodeMessages(raw, ms.length).map((m) => ({ header: m.header, data: [...m.data] })),
        ms.map((m) => ({ header: m.header, data: [...m.data] })),
      );
      // The codec field is only carried: compression is the driver's (here the payload stays raw, so rawLength = its length).
      const buf = encodeDriverBuffer({ function: 'messages', codec, domain, count: ms.length, rawLength: raw.length }, raw);
      const d = decodeDriverBuffer(buf);
      assert.deepEqual(d.header, { function: 'messages', codec, domain, count: ms.length, dataLength: raw.length, rawLength: raw.length });
      assert.deepEqual([...d.payload], [...raw]);
    }),
    { numRuns: 200 },
  );
});

test('a driver buffer: every truncation and every single-bit corruption is refused with a WireError', () => {
  fc.assert(
    fc.property(messages, (ms) => {
      const raw = encodeMessages(ms);
      const buf = encodeDriverBuffer({ function: 'messages', codec: 'none', domain: 0, count: ms.length, rawLength: raw.length }, raw);
      for (let n = 0; n < buf.length; n++) assert.throws(() => decodeDriverBuffer(buf.subarray(0, n)), isWireError, `prefix of ${n}`);
      for (let bit = 0; bit < buf.length * 8; bit += 1 + (bit % 7)) {
        const bad = Uint8Array.from(buf);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        assert.throws(() => decodeDriverBuffer(bad), isWireError, `bit ${bit}`);
      }
      // Extra bytes after the payload are refused too.
      assert.throws(() => decodeDriverBuffer(Uint8Array.from([...buf, 0])), isWireError);
    }),
    { numRuns: 60 },
  );
});

test('messages: every truncation and a count that disagrees are refused', () => {
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 4 }), (ms) => {
      const raw = encodeMessages(ms);
      for (let n = 0; n < raw.length; n++) assert.throws(() => decodeMessages(raw.subarray(0, n), ms.length), isWireError);
      assert.throws(() => decodeMessages(raw, ms.length + 1), isWireError);
      assert.throws(() => decodeMessages(raw, ms.length - 1), isWireError);
    }),
    { numRuns: 100 },
  );
});

const u53 = fc.maxSafeNat();
const field: fc.Arbitrary<DataMoverField> = fc.record(
  {
    connectionId: fc.nat(0xffffffff),
    transport: fc.record({ flags: fc.nat(15), logical: u53, physical: u53 }),
    ack: fc.record({
      highestSent: u53,
      highestReceived: u53,
      ackDelayUs: fc.nat(0xffffffff),
      deliveryRate: fc.nat(0xffffffff),
      cumulative: u53,
      bitmap: fc.uint8Array({ maxLength: 64 }),
      ranges: fc.array(
        fc.tuple(u53, fc.integer({ min: 1, max: 0xffffffff })).map(([largest, length]) => ({ largest, length: Math.min(length, largest + 1) })),
        { maxLength: 8 },
      ),
    }),
  },
  { requiredKeys: ['connectionId', 'transport'] },
);

test('the data mover field round-trips with its payload offset', () => {
  fc.assert(
    fc.property(field, fc.uint8Array({ maxLength: 64 }), (f, payload) => {
      const dgram = encodeDataMoverField(f, payload);
      const d = decodeDataMoverField(dgram);
      assert.equal(d.payloadOffset, dgram.length - payload.length);
      assert.deepEqual(
        JSON.parse(JSON.stringify(d.field, (_, v) => (v instanceof Uint8Array ? [...v] : v))),
        JSON.parse(JSON.stringify(f, (_, v) => (v instanceof Uint8Array ? [...v] : v))),
      );
    }),
    { numRuns: 300 },
  );
});

test('the data mover field: every truncation is refused; corruption is refused or decodes to what re-encodes to the same bytes', () => {
  fc.assert(
    fc.property(field, fc.nat(), fc.nat(255), (f, at, xor) => {
      const dgram = encodeDataMoverField(f);
      for (let n = 0; n < dgram.length; n++) assert.throws(() => decodeDataMoverField(dgram.subarray(0, n)), isWireError, `prefix of ${n}`);
      const bad = Uint8Array.from(dgram);
      bad[at % bad.length]! ^= xor || 1;
      try {
        const d = decodeDataMoverField(bad);
        // Not detectable here (a flipped sequence number is still a number): the AEAD tag over
        // this field catches it on the wire. Decoding is exact either way.
        assert.deepEqual([...encodeDataMoverField(d.field)], [...bad.subarray(0, d.payloadOffset)]);
      } catch (e) {
        assert.ok(isWireError(e), String(e));
      }
    }),
    { numRuns: 300 },
  );
});

test('arbitrary bytes never throw anything but a WireError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(8), (bytes, count) => {
      for (const decode of [() => decodeDriverBuffer(bytes), () => decodeDataMoverField(bytes), () => decodeMessages(bytes, count)]) {
        try {
          decode();
        } catch (e) {
          assert.ok(isWireError(e), String(e));
        }
      }
    }),
    { numRuns: 2000 },
  );
});

test('encoding refuses what the format cannot carry, naming the field', () => {
  const h = {
    function: 'data',
    protocol: 'tcp',
    sequence: 0,
    src: { address: '10.0.0.1', port: 1 },
    dst: { address: '::1', port: 2 },
    status: 0,
    dataLength: 0,
  } as const;
  assert.throws(
    () => encodeMessages([{ header: h, data: new Uint8Array(0) }]),
    (e: unknown) => isWireError(e) && (e as WireError).field === 'address',
  );
  assert.throws(
    () => encodeMessages([{ header: { ...h, dst: { address: '10.0.0.2', port: 70000 } }, data: new Uint8Array(0) }]),
    (e: unknown) => isWireError(e) && (e as WireError).field === 'dst.port',
  );
  assert.throws(
    () => encodeMessages([{ header: { ...h, dst: { address: '10.0.0.2', port: 1 }, dataLength: 3 }, data: new Uint8Array(2) }]),
    (e: unknown) => isWireError(e) && (e as WireError).field === 'dataLength',
  );
  assert.throws(
    () => encodeDriverBuffer({ function: 'messages', codec: 'none', domain: 256, count: 0, rawLength: 0 }, new Uint8Array(0)),
    (e: unknown) => isWireError(e) && (e as WireError).field === 'domain',
  );
});

test('CRC-32: the portable version equals zlib (and the check value 0xCBF43926)', async () => {
  const { crc32, crc32Portable } = await import('../../src/wire/crc32.js');
  assert.equal(crc32Portable(new TextEncoder().encode('123456789')), 0xcbf43926);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 500 }), fc.uint8Array({ maxLength: 100 }), (a, b) => {
      assert.equal(crc32Portable(b, crc32Portable(a)), crc32(b, crc32(a)));
    }),
    { numRuns: 300 },
  );
});
