/**
 * The senders' lateness percentiles come from quickselect, not a sort:
 * they must equal the nearest-rank percentiles of the sorted values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { percentiles } from '../../src/sender/results.js';

function bySort(values: number[]): { p50: number; p99: number; max: number } {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1]! };
}

test('percentiles by selection equal nearest-rank percentiles by sorting', () => {
  const value = fc.oneof(fc.double({ min: 0, max: 1000, noNaN: true }), fc.constantFrom(0, 0.5, 1));
  fc.assert(
    fc.property(fc.array(value, { maxLength: 500 }), (values) => {
      assert.deepEqual(percentiles(values), bySort(values));
    }),
    { numRuns: 300 },
  );
});

test('percentiles of sorted, reversed and constant runs (the pivot cases)', () => {
  const n = 10_000;
  for (const values of [Array.from({ length: n }, (_, i) => i), Array.from({ length: n }, (_, i) => n - i), new Array<number>(n).fill(3)]) {
    assert.deepEqual(percentiles(values), bySort(values));
  }
});
