/**
 * What a peer can make the receiver hold (issue 16, item 14). Segments are
 * authenticated, but the peer may be broken or hostile: a buffer whose
 * last segment never comes, starts without ends, numbers far ahead, huge
 * segments. Whatever it sends, a session's reassembly holds at most
 * maxHeldBytes + maxBufferBytes of segment bytes, never hands out a buffer
 * larger than a driver buffer, and counts what it refuses or drops; real
 * buffers after the garbage are still rebuilt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { DEFAULT_MAX_BUFFER_BYTES, Reassembler, segmentBuffer, type Segment } from '../../src/tpo/protocol/segments.js';
import { DataMover } from '../../src/tpo/protocol/data-mover.js';
import { deriveSessionKeys, sealDatagram } from '../../src/tpo/protocol/datagram-crypto.js';
import { encodeDataMoverField, TD_BUFFER_END, TD_BUFFER_START, TD_DATA } from '../../src/wire/tpo/data-mover.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

/** ArrayBuffer memory in use after a full collection. */
function liveBufferBytes(): number {
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

const START = TD_BUFFER_START;
const END = TD_BUFFER_END;

for (const ordered of [true, false]) {
  test(`${ordered ? 'ordered' : 'unordered'}: a buffer that never sees its last segment holds at most one driver buffer's worth, however long it goes on`, () => {
    const r = new Reassembler(16_384, ordered);
    const base = liveBufferBytes();
    // A start, then 10,000 middle segments of 1,350 bytes (13.5 MB), in order: no end ever comes.
    r.push({ logical: 0, flags: START, bytes: Buffer.alloc(1350, 1) });
    for (let n = 1; n <= 10_000; n++) r.push({ logical: n, flags: 0, bytes: Buffer.alloc(1350, 1) });
    const held = liveBufferBytes() - base;
    assert.ok(held <= DEFAULT_MAX_BUFFER_BYTES + (1 << 20), `${(held / 1e6).toFixed(1)} MB held`);
    assert.ok(r.heldBytes <= DEFAULT_MAX_BUFFER_BYTES, `${r.heldBytes} bytes held`);
    assert.equal(r.oversized, 1, 'the buffer was dropped once it outgrew any driver buffer');
    // The stream goes on: a real buffer after the garbage is rebuilt.
    const real = randomBytes(5000);
    const out = segmentBuffer(real, 1350, 10_001).flatMap((s) => r.push(s));
    assert.equal(out.length, 1);
    assert.deepEqual(Buffer.from(out[0]!), real);
  });
}

test('segments far ahead of a gap: held bytes are capped (counted as refused); the segment at the gap is still taken', () => {
  const r = new Reassembler(16_384, false, { maxHeldBytes: 1 << 20 });
  const base = liveBufferBytes();
  // 60 KiB segments from 1 upwards, never 0: without a cap, 16,383 of them would be 1 GB.
  for (let n = 1; n < 2000; n++) r.push({ logical: n, flags: 0, bytes: Buffer.alloc(60 * 1024, 2) });
  assert.ok(r.heldBytes <= 1 << 20, `${r.heldBytes} bytes held`);
  assert.ok(liveBufferBytes() - base <= 3 << 20);
  assert.ok(r.refused >= 1900, `${r.refused} refused`);
  // Segment 0 fills the gap (always taken): the held ones are middles without a start, dropped and counted.
  r.push({ logical: 0, flags: START | END, bytes: new Uint8Array([1]) });
  assert.equal(r.heldBytes, 0);
  assert.ok(r.malformed > 0);
});

/** A hostile stream: random numbers near and far, random flags, sizes up to 64 KiB, duplicates. */
const hostileSegment = fc.record({
  ahead: fc.oneof(fc.integer({ min: -5, max: 40 }), fc.integer({ min: 0, max: 2000 })),
  flags: fc.constantFrom(0, START, END, START | END),
  size: fc.oneof(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 1, max: 65_000 })),
});

test('hostile segment streams: memory stays under the caps after every segment, no buffer larger than the limit, nothing throws (property)', () => {
  const limits = { maxHeldBytes: 256 * 1024, maxBufferBytes: 64 * 1024, maxSegmentsPerBuffer: 64 };
  fc.assert(
    fc.property(fc.boolean(), fc.array(hostileSegment, { minLength: 1, maxLength: 400 }), (ordered, stream) => {
      const r = new Reassembler(512, ordered, limits);
      for (const h of stream) {
        const seg: Segment = { logical: Math.max(0, r.cumulative + h.ahead), flags: h.flags, bytes: new Uint8Array(h.size) };
        const out = r.push(seg);
        for (const b of out) assert.ok(b.length <= limits.maxBufferBytes, `a buffer of ${b.length} bytes`);
        assert.ok(r.heldBytes <= limits.maxHeldBytes + limits.maxBufferBytes, `${r.heldBytes} bytes held`);
        assert.ok(r.held <= 512);
      }
      // The peer fills every gap (one-segment buffers at the cumulative point, always taken) ...
      for (let k = 0; r.held > 0; k++) {
        assert.ok(k <= 512, 'filling the gaps ends');
        r.push({ logical: r.cumulative, flags: START | END, bytes: new Uint8Array(1) });
      }
      assert.ok(r.heldBytes <= limits.maxBufferBytes);
      // ... and whatever came before, real buffers after it are rebuilt byte-exact.
      const real = [randomBytes(3000), randomBytes(700)];
      const segs: Segment[] = [];
      for (const b of real) segs.push(...segmentBuffer(b, 1000, r.cumulative + segs.length));
      const got = segs.flatMap((s) => r.push(s)).map((b) => Buffer.from(b).toString('hex'));
      for (const b of real) assert.ok(got.includes(b.toString('hex')), 'a real buffer after the garbage');
    }),
    { numRuns: 300 },
  );
});

test('a data mover fed an authenticated hostile stream (a start and no end, segments far ahead) holds bounded bytes and counts the drops', () => {
  const psk = randomBytes(32);
  const ni = randomBytes(16);
  const nr = randomBytes(16);
  const keys = deriveSessionKeys(psk, ni, nr, false);
  const peerKeys = deriveSessionKeys(psk, ni, nr, true);
  const mover = new DataMover({ localId: 2, peerId: 1, keys, transmit: () => {}, orderedDelivery: false });
  let delivered = 0;
  mover.on('buffer', () => delivered++);
  let physical = 0;
  const send = (logical: number, flags: number, bytes: Uint8Array) => {
    const field = encodeDataMoverField({ connectionId: 2, transport: { flags: TD_DATA | flags, logical, physical } });
    mover.receive(sealDatagram(peerKeys.send, physical++, field, bytes));
  };
  try {
    const base = liveBufferBytes();
    send(0, START, new Uint8Array(1350));
    for (let n = 1; n <= 4000; n++) send(n, 0, new Uint8Array(1350));
    for (let n = 6000; n < 6000 + 2000; n++) send(n, 0, new Uint8Array(30_000));
    const cap = 24 * 1024 * 1024 + DEFAULT_MAX_BUFFER_BYTES;
    assert.ok(mover.stats.reassemblyBytes <= cap, `${mover.stats.reassemblyBytes} bytes held`);
    assert.ok(liveBufferBytes() - base <= cap + (4 << 20));
    assert.ok(mover.stats.buffersDropped >= 1, 'the endless buffer was dropped');
    assert.ok(mover.stats.segmentsRefused > 0, 'segments over the held-bytes cap were refused');
    assert.equal(delivered, 0);
  } finally {
    mover.close();
  }
});
