/**
 * Messages due together leave with destinations taking turns, at most
 * `burst` in a row to one destination, each destination's order kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Interleaver } from '../../src/sender/interleave.js';

function longestRun(order: Int32Array, destOf: Int32Array): number {
  let longest = 0;
  let run = 0;
  for (let i = 0; i < order.length; i++) {
    run = i > 0 && destOf[order[i]!] === destOf[order[i - 1]!] ? run + 1 : 1;
    longest = Math.max(longest, run);
  }
  return longest;
}

test('turns of at most burst messages, every message once, each destination in order (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 300 }), fc.integer({ min: 1, max: 20 }), (dests, burst) => {
      const destOf = Int32Array.from(dests);
      const slots = Int32Array.from(dests.keys());
      const out = new Interleaver(8).order(slots, slots.length, destOf, burst, new Int32Array(slots.length));
      assert.deepEqual(
        [...out].sort((a, b) => a - b),
        [...slots],
        'a permutation',
      );
      for (let d = 0; d < 8; d++) {
        const mine = [...out].filter((s) => destOf[s] === d);
        assert.deepEqual(
          mine,
          [...mine].sort((a, b) => a - b),
          `destination ${d} keeps its order`,
        );
      }
      // A run longer than burst can only happen once every other destination is done.
      const distinct = new Set(dests).size;
      if (distinct > 1) {
        const lastOthers = Math.max(
          ...[...out]
            .map((s, i) => ({ s, i }))
            .filter(({ s }) => destOf[s] !== destOf[out[out.length - 1]!])
            .map(({ i }) => i),
        );
        assert.ok(longestRun(out.subarray(0, lastOthers + 1), destOf) <= burst, 'no run beyond burst while others wait');
      }
    }),
    { numRuns: 300 },
  );
});

test('10 destinations x 100 messages, burst 1: strict rotation; burst 16: runs of 16', () => {
  const destOf = Int32Array.from({ length: 1000 }, (_, i) => i % 10);
  const slots = Int32Array.from(destOf.keys());
  const i = new Interleaver(10);
  assert.equal(longestRun(i.order(slots, 1000, destOf, 1, new Int32Array(1000)), destOf), 1);
  assert.equal(longestRun(i.order(slots, 1000, destOf, 16, new Int32Array(1000)), destOf), 16);
  // The scratch state resets between calls: a single destination passes through.
  const one = new Int32Array(5).fill(3);
  assert.deepEqual([...i.order(Int32Array.from([0, 1, 2, 3, 4]), 5, one, 2, new Int32Array(5))], [0, 1, 2, 3, 4]);
});
