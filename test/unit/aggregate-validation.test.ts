/**
 * parseAggregate's fast path for large aggregates must give exactly what
 * the schema gives, and fall back to the schema (same errors) on anything
 * unusual.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseAggregate, parseSegment, PolicyValidationError } from '../../src/index.js';
import { aggregateSchema, segmentSchema } from '../../src/policy/schema.js';

const dest = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `udp://10.0.0.${a}:${p}`),
  fc.integer({ min: 1, max: 65535 }).map((p) => `udp://[2001:db8::1]:${p}`),
);
const message = fc.record(
  { to: dest, data: fc.uint8Array({ maxLength: 64 }), stream: fc.string({ minLength: 1, maxLength: 8 }) },
  { requiredKeys: ['to', 'data'] },
);

test('large aggregates: the fast path equals the schema', () => {
  fc.assert(
    fc.property(fc.array(message, { minLength: 64, maxLength: 300 }), fc.integer({ min: 0, max: 100 }), (messages, maxLatenessMs) => {
      const input = { messages, schedule: { kind: 'delays' as const, delaysMs: messages.map((_, i) => i) }, maxLatenessMs };
      const viaSchema = aggregateSchema.parse({ type: 'aggregate', ...input });
      assert.deepEqual(parseAggregate(input), viaSchema);
    }),
    { numRuns: 40 },
  );
});

test('large aggregates: schedules checked on the fast path equal the schema, valid or not', () => {
  const value = fc.oneof(
    fc.integer({ min: 0, max: 4_000_000 }),
    fc.double({ min: -1, max: 4_000_000 }),
    fc.constantFrom(NaN, Infinity, -0, 3_600_000, 3_600_001, 2 ** 53, Number.MAX_SAFE_INTEGER),
    fc.constant('1' as unknown as number),
  );
  const schedule = (n: number) =>
    fc.oneof(
      fc.array(value, { minLength: n, maxLength: n }).map((delaysMs) => ({ kind: 'delays', delaysMs })),
      fc.uniqueArray(value, { minLength: n, maxLength: n }).map((sequence) => ({ kind: 'sequence', sequence, tickMs: 1 })),
      fc.array(value, { minLength: n, maxLength: n }).map((offsetsMs) => ({ kind: 'range', durationMs: 3_600_000, offsetsMs })),
      fc.constant({ kind: 'range', durationMs: 5 }),
    );
  const messages = Array.from({ length: 64 }, (_, i) => ({ to: `udp://127.0.0.1:${7000 + i}`, data: new Uint8Array(1) }));
  fc.assert(
    fc.property(schedule(64), (sched) => {
      const input = { messages, schedule: sched };
      const viaSchema = aggregateSchema.safeParse({ type: 'aggregate', ...input });
      if (viaSchema.success) assert.deepEqual(parseAggregate(input), viaSchema.data);
      else assert.throws(() => parseAggregate(input), PolicyValidationError);
    }),
    { numRuns: 200 },
  );
});

test("large aggregates with one bad message get the schema's error, naming it", () => {
  const messages = Array.from({ length: 100 }, (_, i) => ({ to: `udp://127.0.0.1:${7000 + i}`, data: new Uint8Array(1) }));
  const bad = (patch: object, path: RegExp) => {
    const m = messages.map((x, i) => (i === 57 ? { ...x, ...patch } : x));
    assert.throws(
      () => parseAggregate({ messages: m, schedule: { kind: 'delays', delaysMs: m.map(() => 0) } }),
      (e: unknown) => e instanceof PolicyValidationError && path.test(e.message),
    );
  };
  bad({ to: 'udp://127.0.0.1:0' }, /messages\[57\]\.to/);
  bad({ to: 'udp://nowhere:1' }, /messages\[57\]\.to/);
  bad({ data: 'text' }, /messages\[57\]\.data/);
  bad({ stream: '' }, /messages\[57\]\.stream/);
  bad({ extra: 1 }, /messages\[57\]/);
  bad({ data: new Uint8Array(70_000) }, /messages\[57\]\.data/);
  assert.throws(() => parseAggregate({ messages, schedule: { kind: 'delays', delaysMs: [0] } }), /schedule\.delaysMs/);
});

test('writes: the fast path equals the schema, valid or not', () => {
  const entry = fc.record({
    to: fc.oneof(dest, fc.constantFrom('udp://127.0.0.1:0', 'udp://nowhere:1', 42 as unknown as string)),
    data: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant('text' as unknown as Uint8Array)),
  });
  const extra = fc.oneof(
    fc.constant({}),
    fc.record({ packetSize: fc.integer({ min: 0, max: 70_000 }) }),
    fc.record({ burst: fc.integer({ min: 0, max: 70 }) }),
    fc.record({ gso: fc.constantFrom('auto', 'never', 'maybe') }),
  );
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 20 }), extra, (entries, options) => {
      const input = { ...options, entries };
      const viaSchema = segmentSchema.safeParse({ type: 'segment', ...input });
      if (viaSchema.success) assert.deepEqual(parseSegment(input), viaSchema.data);
      else assert.throws(() => parseSegment(input), PolicyValidationError);
    }),
    { numRuns: 300 },
  );
});

test('large aggregates: a sequence number beyond 2^53 - 1 is refused on the fast path as by the schema (found by the decoder fuzz)', () => {
  const messages = Array.from({ length: 64 }, (_, i) => ({ to: `udp://127.0.0.1:${7000 + i}`, data: new Uint8Array(1) }));
  const sequence = messages.map((_, i) => (i === 0 ? 2 ** 53 : i + 1));
  assert.throws(() => parseAggregate({ messages, schedule: { kind: 'sequence', sequence } }), PolicyValidationError);
});
