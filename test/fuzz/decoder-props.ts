/**
 * The properties every decoder is held to (issue 16), as assertions the
 * decoder tests share:
 *
 * - `typedOnly`: whatever the input, the decoder returns or throws the
 *   module's own typed error; never a RangeError from a DataView, a
 *   TypeError from reading `undefined`, a stack overflow.
 * - `sameInAnySurroundings`: decoding a view of a larger buffer gives the
 *   same outcome as decoding a copy of exactly those bytes, whatever
 *   surrounds the view: the decoder never reads beyond its input.
 * - `viewsWithin`: byte arrays in the result that share the input's
 *   memory lie inside the input.
 * - fast-check arbitraries for hostile variants of valid inputs.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatIpv6 } from '../../src/wire/ip-address.js';
import { MESSAGE_FUNCTIONS, MESSAGE_PROTOCOLS, type MessageHeader } from '../../src/wire/tpo/message.js';
import type { CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';

// A failing property shows the assertion's message (which decoder, what it threw), not only the input.
fc.configureGlobal({ ...fc.readConfigureGlobal(), includeErrorInReport: true });

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export function outcome(f: () => unknown): Outcome {
  try {
    return { ok: true, value: f() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Describes an error for comparison: class, and the fields typed errors carry. */
function errorKey(e: unknown): string {
  if (!(e instanceof Error)) return `non-error ${String(e)}`;
  const x = e as Error & { reason?: unknown; field?: unknown; code?: unknown };
  return `${e.constructor.name}/${String(x.reason ?? '')}/${String(x.field ?? '')}/${String(x.code ?? '')}`;
}

/** Calls `f`; if it throws, the error must satisfy `typed`. Returns the outcome. */
export function typedOnly(f: () => unknown, typed: (e: unknown) => boolean, what = 'decoder'): Outcome {
  const o = outcome(f);
  if (!o.ok && !typed(o.error)) {
    const e = o.error as Error;
    assert.fail(`${what} threw an untyped error: ${e?.constructor?.name}: ${e?.message}\n${e?.stack?.split('\n').slice(1, 4).join('\n')}`);
  }
  return o;
}

/** `bytes` as a view into a larger buffer filled with `fill` (or random bytes) around it. */
export function embed(bytes: Uint8Array, before: number, after: number, fill: number | 'random'): Uint8Array {
  const big = new Uint8Array(before + bytes.length + after);
  if (fill === 'random') for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 17) & 0xff;
  else big.fill(fill);
  big.set(bytes, before);
  return big.subarray(before, before + bytes.length);
}

/**
 * The decoder gives the same outcome (value, or error class/reason/field)
 * for `bytes` alone and for `bytes` as a view with different bytes around
 * it. Returns the outcome of the exact copy.
 */
export function sameInAnySurroundings(decode: (b: Uint8Array) => unknown, bytes: Uint8Array, typed: (e: unknown) => boolean, what = 'decoder'): Outcome {
  const exact = typedOnly(() => decode(Uint8Array.from(bytes)), typed, what);
  for (const [before, after, fill] of [
    [0, 64, 0x00],
    [8, 64, 0xff],
    [3, 200, 'random'],
  ] as const) {
    const view = embed(bytes, before, after, fill);
    const o = typedOnly(() => decode(view), typed, what);
    if (exact.ok !== o.ok)
      assert.fail(
        `${what}: ${bytes.length} bytes decode ${exact.ok ? 'fine' : `to ${errorKey(exact.error)}`} alone but ${o.ok ? 'fine' : `to ${errorKey(o.error)}`} as a view followed by ${after} bytes of ${fill}: it reads beyond its input`,
      );
    if (exact.ok && o.ok)
      assert.deepEqual(
        plain(o.value),
        plain(exact.value),
        `${what}: a view decodes differently from a copy (${after} bytes of ${fill} after it): it reads beyond its input`,
      );
    if (!exact.ok && !o.ok) assert.equal(errorKey(o.error), errorKey(exact.error), `${what}: a view fails differently from a copy`);
    if (o.ok) viewsWithin(o.value, view, what);
  }
  return exact;
}

/** Byte arrays compared by content, whatever their class (Buffer or Uint8Array). */
export function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Every Uint8Array in `value` that shares `input`'s memory lies inside `input`. */
export function viewsWithin(value: unknown, input: Uint8Array, what = 'decoder', seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof Uint8Array) {
    if (value.buffer === input.buffer) {
      const lo = input.byteOffset;
      const hi = input.byteOffset + input.byteLength;
      assert.ok(
        value.byteOffset >= lo && value.byteOffset + value.byteLength <= hi,
        `${what}: a view in its result covers bytes ${value.byteOffset - lo}..${value.byteOffset + value.byteLength - lo} of a ${input.byteLength}-byte input`,
      );
    }
    return;
  }
  for (const x of Object.values(value)) viewsWithin(x, input, what, seen);
}

// ---------------------------------------------------------------------------
// Hostile variants of valid inputs, as fast-check arbitraries

export type Mutation =
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'flip'; readonly bits: readonly number[] }
  | { readonly op: 'set'; readonly at: number; readonly size: 1 | 2 | 4; readonly value: number; readonly le: boolean }
  | { readonly op: 'extend'; readonly tail: Uint8Array }
  | { readonly op: 'cut'; readonly from: number; readonly to: number };

const INTERESTING = [
  0, 1, 2, 3, 4, 7, 8, 15, 16, 20, 28, 52, 0x7f, 0x80, 0xff, 0x100, 0x400, 0x7fff, 0x8000, 0xffff, 0x10000, 0x100000, 0x7fffffff, 0x80000000, 0xffffffff,
];

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('flip' as const), bits: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }) }),
  fc.record({
    op: fc.constant('set' as const),
    at: fc.nat(),
    size: fc.constantFrom(1 as const, 2 as const, 4 as const),
    value: fc.oneof(fc.constantFrom(...INTERESTING), fc.nat(0xffffffff)),
    le: fc.boolean(),
  }),
  fc.record({ op: fc.constant('extend' as const), tail: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ op: fc.constant('cut' as const), from: fc.nat(), to: fc.nat() }),
);

export function mutate(b: Uint8Array, m: Mutation): Uint8Array {
  switch (m.op) {
    case 'truncate':
      return Uint8Array.from(b.subarray(0, b.length ? m.at % b.length : 0));
    case 'flip': {
      const out = Uint8Array.from(b);
      if (out.length) for (const bit of m.bits) out[(bit % (out.length * 8)) >> 3]! ^= 1 << (bit & 7);
      return out;
    }
    case 'set': {
      const out = Uint8Array.from(b);
      if (out.length < m.size) return out;
      const at = m.at % (out.length - m.size + 1);
      const v = new DataView(out.buffer);
      if (m.size === 1) v.setUint8(at, m.value & 0xff);
      else if (m.size === 2) v.setUint16(at, m.value & 0xffff, m.le);
      else v.setUint32(at, m.value >>> 0, m.le);
      return out;
    }
    case 'extend': {
      const out = new Uint8Array(b.length + m.tail.length);
      out.set(b);
      out.set(m.tail, b.length);
      return out;
    }
    case 'cut': {
      if (!b.length) return b;
      const a = m.from % b.length;
      const z = a + (m.to % (b.length - a + 1));
      return Uint8Array.from([...b.subarray(0, a), ...b.subarray(z)]);
    }
  }
}

/** `valid` or one to three mutations of it. */
export function hostile(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<{ valid: Uint8Array; bytes: Uint8Array; mutations: Mutation[] }> {
  return fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([v, ms]) => ({ valid: v, bytes: ms.reduce(mutate, v), mutations: ms }));
}

/** Arbitrary bytes, hostile variants of valid ones, and valid ones, mixed. */
export function anyInput(valid: fc.Arbitrary<Uint8Array>, maxLength = 512): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength }) },
    { weight: 5, arbitrary: hostile(valid).map((h) => h.bytes) },
    { weight: 1, arbitrary: valid },
  );
}

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIpv6(b));
const port = fc.nat(65535);

/** Any valid TPO message header with `dataLength` (addresses of one family; the latency-sensitive flag present only when set, as decoded). */
export function messageHeaderArb(dataLength: number): fc.Arbitrary<MessageHeader> {
  return fc
    .oneof(fc.tuple(ipv4, ipv4), fc.tuple(ipv6, ipv6))
    .chain(([src, dst]) =>
      fc.record(
        {
          function: fc.constantFrom(...MESSAGE_FUNCTIONS),
          protocol: fc.constantFrom(...(Object.keys(MESSAGE_PROTOCOLS) as (keyof typeof MESSAGE_PROTOCOLS)[])),
          sequence: fc.nat(0xffffffff),
          src: fc.record({ address: fc.constant(src), port }, { noNullPrototype: true }),
          dst: fc.record({ address: fc.constant(dst), port }, { noNullPrototype: true }),
          status: fc.nat(255),
          dataLength: fc.constant(dataLength),
        },
        { noNullPrototype: true },
      ),
    )
    .chain((h) => fc.boolean().map((ls): MessageHeader => (ls ? { ...h, latencySensitive: true } : h)));
}

/** Any valid carried message with at most `maxData` bytes of data. */
export function carriedMessageArb(maxData: number): fc.Arbitrary<CarriedMessage> {
  return fc.uint8Array({ maxLength: maxData }).chain((data) => messageHeaderArb(data.length).map((header) => ({ header, data })));
}
