/**
 * The data path's fast paths (issue 18) against their references: the
 * data mover field's direct decoder against the checked one (same result,
 * or both refuse), a driver buffer sealed in place against one encoded
 * from its payload, and the reassembler with segments whose bytes are
 * valid only during push() (the AEAD's scratch region) against one given
 * buffers of their own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeDataMoverField,
  decodeDataMoverFieldChecked,
  encodeDataMoverField,
  TD_BUFFER_END,
  TD_BUFFER_START,
  type DataMoverField,
} from '../../src/wire/tpo/data-mover.js';
import { encodeDriverBuffer, encodeDriverBufferInPlace, ROUTING_HEADER_LENGTH } from '../../src/wire/tpo/driver-buffer.js';
import { Reassembler } from '../../src/tpo/protocol/segments.js';

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
      bitmap: fc.uint8Array({ maxLength: 24 }),
      ranges: fc.array(
        fc.tuple(u53, fc.integer({ min: 1, max: 0xffffffff })).map(([largest, length]) => ({ largest, length: Math.min(length, largest + 1) })),
        { maxLength: 4 },
      ),
    }),
  },
  { requiredKeys: ['connectionId', 'transport'] },
);

function outcome(decode: (d: Uint8Array) => unknown, d: Uint8Array): unknown {
  try {
    return { ok: decode(d) };
  } catch (err) {
    return { refused: (err as Error).name };
  }
}

test('data mover field: the direct decoder gives what the checked one gives, on valid and damaged fields (property)', () => {
  const damaged = fc
    .tuple(field, fc.uint8Array({ maxLength: 20 }), fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 4 }), fc.nat(220))
    .map(([f, payload, edits, cut]) => {
      const d = encodeDataMoverField(f, payload);
      for (const [at, v] of edits) if (at < d.length) d[at] = v;
      return cut % 3 === 0 ? d.subarray(0, Math.min(d.length, cut)) : d;
    });
  fc.assert(
    fc.property(damaged, (d) => {
      assert.deepEqual(outcome(decodeDataMoverField, d), outcome(decodeDataMoverFieldChecked, d));
    }),
    { numRuns: 3000 },
  );
});

test('driver buffer: sealed in place is byte for byte the buffer encoded from its payload (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(255), fc.nat(100), (payload, domain, count) => {
      const h = { function: 'messages', codec: 'none', domain, count, rawLength: payload.length } as const;
      const room = new Uint8Array(ROUTING_HEADER_LENGTH + payload.length);
      room.set(payload, ROUTING_HEADER_LENGTH);
      assert.deepEqual([...encodeDriverBufferInPlace(h, room)], [...encodeDriverBuffer(h, payload)]);
    }),
  );
});

test('reassembler: segments lent only for the call rebuild the same buffers as segments of their own, in any order (property)', () => {
  const buffers = fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 });
  fc.assert(
    fc.property(buffers, fc.boolean(), fc.integer(), (sizes, ordered, seed) => {
      const segs: { logical: number; flags: number; bytes: Uint8Array }[] = [];
      let n = 0;
      for (const k of sizes)
        for (let i = 0; i < k; i++, n++)
          segs.push({
            logical: n,
            flags: (i === 0 ? TD_BUFFER_START : 0) | (i === k - 1 ? TD_BUFFER_END : 0),
            bytes: Uint8Array.from({ length: 1 + ((n * 7) % 50) }, (_, j) => n + j),
          });
      // A shuffle (deterministic per seed) with a duplicate now and then.
      const order = segs.map((_, i) => i);
      let r = seed >>> 0;
      for (let i = order.length - 1; i > 0; i--) {
        r = (r * 1103515245 + 12345) >>> 0;
        const j = r % (i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const own = new Reassembler(1024, ordered);
      const lent = new Reassembler(1024, ordered);
      const scratch = new Uint8Array(64);
      const a: number[][] = [];
      const b: number[][] = [];
      for (const i of [...order, order[0]!]) {
        const s = segs[i]!;
        for (const x of own.push(s)) a.push([...x]);
        // The lent bytes are overwritten after each push, as the next datagram's open would.
        scratch.set(s.bytes);
        for (const x of lent.push({ ...s, bytes: scratch.subarray(0, s.bytes.length) }, true)) b.push([...x]);
        scratch.fill(0xee);
      }
      assert.deepEqual(b, a);
      assert.equal(lent.cumulative, own.cumulative);
      assert.equal(lent.duplicates, own.duplicates);
    }),
    { numRuns: 500 },
  );
});
