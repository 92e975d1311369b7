/**
 * Driver buffers cut into segments and rebuilt: any arrival order, any
 * duplication, same buffers in the same order; the ack bitmap says what is
 * held; the receive window bounds what a peer can make it hold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Reassembler, segmentBuffer, type Segment } from '../../src/tpo/protocol/segments.js';
import { TD_BUFFER_END, TD_BUFFER_START } from '../../src/wire/tpo/data-mover.js';

/** Every segment, every third one twice, in an order drawn from `rnd` (Fisher-Yates). */
function shuffledWithDuplicates(segs: readonly Segment[], rnd: fc.Stream<number>): Segment[] {
  const arrivals = [...segs, ...segs.filter((_, i) => i % 3 === 0)];
  const it = rnd[Symbol.iterator]();
  for (let i = arrivals.length - 1; i > 0; i--) {
    const j = it.next().value! % (i + 1);
    [arrivals[i], arrivals[j]] = [arrivals[j]!, arrivals[i]!];
  }
  return arrivals;
}

test('segments: consecutive numbers, start and end flags, views of the buffer', () => {
  const buf = new Uint8Array(2500).map((_, i) => i & 0xff);
  const segs = segmentBuffer(buf, 1000, 7);
  assert.deepEqual(
    segs.map((s) => [s.logical, s.flags, s.bytes.length]),
    [
      [7, TD_BUFFER_START, 1000],
      [8, 0, 1000],
      [9, TD_BUFFER_END, 500],
    ],
  );
  assert.equal(segs[1]!.bytes.buffer, buf.buffer);
  assert.equal(segmentBuffer(new Uint8Array(10), 1000, 0)[0]!.flags, TD_BUFFER_START | TD_BUFFER_END);
});

test('any order, with duplicates: every buffer once, in order, byte-exact (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 1200 }),
      fc.infiniteStream(fc.nat()),
      (buffers, size, rnd) => {
        const segs: Segment[] = [];
        for (const b of buffers) segs.push(...segmentBuffer(b, size, segs.length));
        const arrivals = shuffledWithDuplicates(segs, rnd);
        const r = new Reassembler();
        const out = arrivals.flatMap((s) => r.push(s));
        assert.equal(out.length, buffers.length);
        out.forEach((b, i) => assert.deepEqual(Buffer.from(b), Buffer.from(buffers[i]!)));
        assert.equal(r.cumulative, segs.length);
        assert.equal(r.held, 0);
        assert.equal(r.duplicates, arrivals.length - segs.length);
        assert.equal(r.malformed, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('unordered: every buffer once, byte-exact, as soon as its own segments are in (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 1200 }),
      fc.infiniteStream(fc.nat()),
      (buffers, size, rnd) => {
        const segs: Segment[] = [];
        const owner: number[] = [];
        buffers.forEach((b, k) => {
          const part = segmentBuffer(b, size, segs.length);
          segs.push(...part);
          owner.push(...part.map(() => k));
        });
        const arrivals = shuffledWithDuplicates(segs, rnd);
        const r = new Reassembler(16_384, false);
        const seen = new Set<number>();
        const got: Buffer[] = [];
        for (const a of arrivals) {
          seen.add(a.logical);
          for (const b of r.push(a)) {
            got.push(Buffer.from(b));
            // Handed out no later than when its last segment came in.
            const k = buffers.findIndex((x) => Buffer.from(x).equals(Buffer.from(b)));
            assert.ok(k >= 0);
          }
          // Every buffer whose segments have all arrived has been handed out.
          const complete = buffers.filter((_, k) => owner.every((o, i) => o !== k || seen.has(i))).length;
          assert.equal(got.length, complete);
        }
        assert.deepEqual(got.map((b) => b.toString('hex')).sort(), buffers.map((b) => Buffer.from(b).toString('hex')).sort());
        assert.equal(r.cumulative, segs.length);
        assert.equal(r.held, 0);
        assert.equal(r.malformed, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('the ack bitmap marks what is held beyond the cumulative point; the window refuses what is too far ahead', () => {
  const r = new Reassembler(64);
  const seg = (n: number, flags = TD_BUFFER_START | TD_BUFFER_END): Segment => ({ logical: n, flags, bytes: new Uint8Array([n]) });
  r.push(seg(0));
  r.push(seg(2));
  r.push(seg(5));
  r.push(seg(12));
  assert.equal(r.cumulative, 1);
  // Held: 2, 5, 12 -> bits 0, 3, 10.
  assert.deepEqual([...r.bitmap(16)], [0b0000_1001, 0b0000_0100]);
  assert.deepEqual([...r.bitmap(1)], [0b0000_1001], 'cut to the size allowed');
  assert.ok(r.has(0) && r.has(2) && !r.has(3));
  assert.deepEqual(r.push(seg(65)), []);
  assert.equal(r.refused, 1, 'beyond the receive window');
  assert.equal(r.held, 3);
  assert.equal(r.push(seg(1)).length, 2, 'filling the gap releases 1 and 2');
});

test('malformed sequences (a middle without a start) are counted, not delivered', () => {
  const r = new Reassembler();
  assert.deepEqual(r.push({ logical: 0, flags: TD_BUFFER_END, bytes: new Uint8Array(1) }), []);
  assert.equal(r.malformed, 1);
  assert.equal(r.push({ logical: 1, flags: TD_BUFFER_START | TD_BUFFER_END, bytes: new Uint8Array([9]) }).length, 1);
});
