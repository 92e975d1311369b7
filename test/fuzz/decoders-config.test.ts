/**
 * Property tests (issue 16) for the decoders of structured input a user
 * or a program hands Sluice: policies (library calls), relay config files,
 * TPO gateway configs, the flow table, endpoints, source prefixes and the
 * CLI's rate and duration arguments.
 *
 * Arbitrary values (JSON, and anything JavaScript can pass) and hostile
 * variants of valid inputs give a result or the module's typed error
 * (PolicyValidationError, TpoConfigError, FlowTableError), never a crash;
 * what is accepted is sane (finite numbers, ports in range); the large-
 * input fast paths agree with the schemas they shortcut. Hostile YAML
 * (alias bombs, unresolved aliases, deep nesting, numbers beyond a
 * double) and nonsense values accepted silently were issue 16 items 5 and
 * 17: those tests failed before the fixes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { PolicyValidationError } from '../../src/errors.js';
import { parseAggregate, parseConfig, parseFlowPolicy, parsePolicy, parseSegment } from '../../src/policy/validate.js';
import { aggregateSchema, segmentSchema } from '../../src/policy/schema.js';
import { parseConfigText } from '../../src/policy/config.js';
import { parseEndpoint, parseEndpointInput } from '../../src/wire/endpoint.js';
import { parseSourceRule } from '../../src/policy/source-filter.js';
import { parseBitRate, parseTpoConfig, parseTpoConfigText, TpoConfigError } from '../../src/tpo/config/config.js';
import { compileInterceptTable, InterceptTable, FlowTableError } from '../../src/tpo/config/intercept-rules.js';
import { parseBitrate, parseDuration } from '../../src/cli/output.js';
import { typedOnly } from './decoder-props.js';

const isPolicyError = (e: unknown) =>
  e instanceof PolicyValidationError &&
  e.issues.length > 0 &&
  e.issues.every((i) => typeof i.path === 'string' && typeof i.message === 'string' && i.message.length > 0);
const isTpoError = (e: unknown) => e instanceof TpoConfigError && e.issues.length > 0;

// ---------------------------------------------------------------------------
// Hostile values

/** Values that break numeric and string fields. */
const nasty = fc.constantFrom<unknown>(
  Infinity,
  -Infinity,
  Number.NaN,
  -0,
  0,
  -1,
  1e400,
  2 ** 53,
  2 ** 64,
  1.5,
  '',
  ' ',
  '0',
  '-1',
  'Infinity',
  'NaN',
  '1e400',
  '9'.repeat(400),
  '\u0000',
  'any',
  'a'.repeat(10_000),
  null,
  true,
  [],
  {},
  [[]],
  { __proto__: { polluted: 1 } },
  Object.create(null),
);
/** Anything JavaScript can pass, JSON or not. */
const anything = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.anything({
    maxDepth: 3,
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
  }),
  nasty,
);

/** `valid` with one leaf (at any depth) replaced by a hostile value, or a key added. */
function corrupt(valid: unknown, path: number[], value: unknown, addKey: boolean): unknown {
  if (valid === null || typeof valid !== 'object') return value;
  const clone: Record<string, unknown> | unknown[] = Array.isArray(valid) ? [...valid] : { ...(valid as Record<string, unknown>) };
  const keys = Object.keys(clone);
  if (!keys.length || path.length === 0) {
    if (addKey && !Array.isArray(clone)) (clone as Record<string, unknown>)['unknownField'] = value;
    return clone;
  }
  const k = keys[path[0]! % keys.length]!;
  (clone as Record<string, unknown>)[k] = corrupt((clone as Record<string, unknown>)[k], path.slice(1), value, addKey);
  return clone;
}
const corruption = fc.record({ path: fc.array(fc.nat(), { maxLength: 5 }), value: fc.oneof(anything, nasty), addKey: fc.boolean() });

// ---------------------------------------------------------------------------
// Policies

const ep = fc
  .tuple(fc.constantFrom('127.0.0.1', '10.0.0.2', '::1', '[::1]', '0.0.0.0'), fc.integer({ min: 1, max: 65535 }))
  .map(([h, p]) => (h === '::1' ? `udp://[::1]:${p}` : h === '[::1]' ? `[::1]:${p}` : `udp://${h}:${p}`));
const flowPolicy = fc
  .record({
    type: fc.constantFrom('redirect', 'replicate'),
    listen: ep,
    to: fc.array(ep, { minLength: 1, maxLength: 4 }),
    allow: fc.oneof(fc.constant('any'), fc.constantFrom('127.0.0.1', '10.0.0.0/8', '::1/128')),
    maxDatagramSize: fc.integer({ min: 1, max: 65507 }),
    payload: fc.constantFrom('any', 'mpegts'),
    maxQueuedPackets: fc.integer({ min: 1, max: 1_000_000 }),
  })
  .map((p) => ({ ...p, to: p.type === 'redirect' ? p.to[0] : p.to }));
const aggregate = (min: number, max: number) =>
  fc.array(fc.tuple(ep, fc.uint8Array({ maxLength: 16 })), { minLength: min, maxLength: max }).map((ms) => ({
    type: 'aggregate',
    messages: ms.map(([to, data]) => ({ to, data })),
    schedule: { kind: 'sequence', sequence: ms.map((_, i) => ms.length - i) },
  }));
const segment = fc
  .array(fc.tuple(ep, fc.uint8Array({ maxLength: 16 })), { minLength: 1, maxLength: 6 })
  .map((es) => ({ type: 'segment', entries: es.map(([to, data]) => ({ to, data })) }));

test('policies: any value, or a valid policy with one field made hostile, parses or is refused with field paths, never crashes (property)', () => {
  const input = fc.oneof(
    anything,
    fc.tuple(fc.oneof(flowPolicy, aggregate(1, 4), segment), corruption).map(([v, c]) => corrupt(v, c.path, c.value, c.addKey)),
  );
  fc.assert(
    fc.property(input, (x) => {
      for (const [name, parse] of [
        ['parsePolicy', parsePolicy],
        ['parseFlowPolicy', parseFlowPolicy],
        ['parseAggregate', parseAggregate],
        ['parseSegment', parseSegment],
        ['parseConfig', parseConfig],
      ] as const) {
        const o = typedOnly(() => parse(x as never), isPolicyError, name);
        if (!o.ok) continue;
        // Whatever is accepted has sane numbers.
        JSON.stringify(o.value, (_, v) => {
          if (typeof v === 'number') assert.ok(Number.isFinite(v), `${name} accepted ${v}`);
          return v;
        });
      }
    }),
    { numRuns: 1500 },
  );
});

test('policies: the large-aggregate and segment fast paths accept exactly what the schemas accept (property)', () => {
  // Per-message numbers at the edges of what a double holds exactly, every schedule kind.
  const edge = fc.constantFrom(2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e300, Number.MAX_SAFE_INTEGER, 3_600_000, 3_600_001, 0.5, -0);
  const edgeAggregate = fc.tuple(aggregate(64, 66), edge, fc.constantFrom('sequence', 'delays', 'range')).map(([a, v, kind]) => {
    const n = a.messages.length;
    const per = Array.from({ length: n }, (_, i) => i + 1);
    per[0] = v;
    const schedule =
      kind === 'sequence' ? { kind, sequence: per } : kind === 'delays' ? { kind, delaysMs: per } : { kind, durationMs: 3_600_000, offsetsMs: per };
    return { ...a, schedule };
  });
  // Printed as a summary when the property fails; not enumerable, so the parsers never see it.
  const summary = (a: unknown) =>
    Object.defineProperty(a as object, fc.toStringMethod, {
      value: () =>
        `aggregate of ${(a as { messages?: unknown[] }).messages?.length} messages, schedule ${JSON.stringify((a as { schedule?: unknown }).schedule)?.slice(0, 120)}`,
      enumerable: false,
    });
  fc.assert(
    fc.property(
      fc
        .oneof(
          aggregate(64, 80),
          edgeAggregate,
          aggregate(64, 70).chain((a) => corruption.map((c) => corrupt(a, c.path, c.value, c.addKey))),
        )
        .map(summary),
      (a) => {
        const { type: _t, ...input } = a as unknown as { type: string };
        const schema = aggregateSchema.safeParse({ type: 'aggregate', ...(input as object) }).success;
        const parsed = typedOnly(() => parseAggregate(input), isPolicyError, 'parseAggregate').ok;
        assert.equal(parsed, schema, `fast path ${parsed ? 'accepted' : 'refused'} what the schema ${schema ? 'accepts' : 'refuses'}`);
      },
    ),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(
      fc.oneof(
        segment,
        segment.chain((s) => corruption.map((c) => corrupt(s, c.path, c.value, c.addKey))),
      ),
      (s) => {
        const { type: _t, ...input } = s as { type: string };
        const schema = segmentSchema.safeParse({ type: 'segment', ...(input as object) }).success;
        const parsed = typedOnly(() => parseSegment(input as never), isPolicyError, 'parseSegment').ok;
        assert.equal(parsed, schema, `fast path ${parsed ? 'accepted' : 'refused'} what the schema ${schema ? 'accepts' : 'refuses'}`);
      },
    ),
    { numRuns: 300 },
  );
});

test('endpoints and source prefixes: any text parses or says why; what parses is an IP literal and a port in range (property)', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 30 }),
    ep,
    ep.map((e) => `${e}x`),
    fc.tuple(ep, fc.nat(40), fc.string({ maxLength: 4 })).map(([e, at, s]) => e.slice(0, at) + s + e.slice(at)),
  );
  fc.assert(
    fc.property(text, fc.boolean(), fc.record({ host: fc.string({ maxLength: 20 }), port: fc.oneof(fc.integer(), fc.double()) }), (t, zero, obj) => {
      for (const r of [
        typedOnly(
          () => parseEndpoint(t, { allowPortZero: zero }),
          () => false,
          'parseEndpoint',
        ),
        typedOnly(
          () => parseEndpointInput(obj, { allowPortZero: zero }),
          () => false,
          'parseEndpointInput',
        ),
      ]) {
        const v = (r as { value: ReturnType<typeof parseEndpoint> }).value;
        if (!v.ok) {
          assert.ok(v.reason.length > 0);
          continue;
        }
        assert.equal(isIP(v.endpoint.address.split('%')[0]!), v.endpoint.family);
        assert.ok(Number.isInteger(v.endpoint.port) && v.endpoint.port >= (zero ? 0 : 1) && v.endpoint.port <= 65535);
      }
      const rule = (
        typedOnly(
          () => parseSourceRule(t),
          () => false,
          'parseSourceRule',
        ) as { value: ReturnType<typeof parseSourceRule> }
      ).value;
      if (rule.ok) assert.ok(rule.rule.prefix >= 0 && rule.rule.prefix <= (rule.rule.family === 4 ? 32 : 128));
    }),
    { numRuns: 2000 },
  );
});

// ---------------------------------------------------------------------------
// Relay config files (YAML)

const validYaml = fc
  .array(flowPolicy, { minLength: 1, maxLength: 3 })
  .map((fs) => `tier: auto\nflows:\n${fs.map((f) => `  - ${JSON.stringify(f)}`).join('\n')}\n`);
/** Short YAML that exercises the parser's own failure paths (aliases, tags, merge keys, directives). */
const yamlSpecials = fc.constantFrom(
  '*!',
  '*a',
  'flows: *a',
  '&a [*a]',
  'a: &a 1\nb: *a\nb: 2',
  '!!js/function "f"',
  '!!binary x',
  '<<: *x',
  '? [a]\n: b',
  '%YAML 9.9\n---\na',
  '--- !<tag:x> a',
  'flows: !!set {a}',
  'flows: [{<<: [*x]}]',
  '\t- a',
  '"\\x',
  '{{{',
  'flows: .inf',
  'flows: 0x1p3',
);
/** Character-level damage to a text. */
const damagedText = (valid: fc.Arbitrary<string>) =>
  fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat(8), fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 3 })).map(([t, edits]) =>
    edits.reduce((s, [at, del, ins]) => {
      const i = at % (s.length + 1);
      return s.slice(0, i) + ins + s.slice(i + del);
    }, t),
  );

test('relay config text: any text or damaged valid YAML parses or is refused with a PolicyValidationError (property)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 200 }), yamlSpecials, validYaml, damagedText(validYaml)), (text) => {
      const o = typedOnly(() => parseConfigText(text, 'sluice.yaml'), isPolicyError, 'parseConfigText');
      if (o.ok) assert.ok((o.value as { flows: unknown[] }).flows.length > 0);
    }),
    { numRuns: 800 },
  );
});

/** YAML that attacks the parser itself: exponential aliases, nesting deeper than any stack, numbers beyond a double. */
function hostileYaml(): { name: string; text: (flows: string) => string; field?: string }[] {
  const letters = 'abcdefghij';
  const bomb = [
    `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]`,
    ...[...letters.slice(1)].map((l, i) => `${l}: &${l} [${Array(9).fill(`*${letters[i]}`).join(',')}]`),
  ].join('\n');
  return [
    { name: 'an alias bomb (a billion laughs)', text: (flows) => `${bomb}\n${flows}` },
    { name: 'an alias bomb inside a field', text: () => `${bomb}\nflows:\n  - *j\n` },
    { name: 'nesting 20,000 deep', text: () => `flows: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n` },
    { name: 'block nesting 5,000 deep', text: () => `flows:\n${Array.from({ length: 5000 }, (_, i) => `${' '.repeat(i)}- `).join('\n')}x\n` },
  ];
}
const oneFlow = 'flows:\n  - {type: redirect, listen: "udp://127.0.0.1:5000", to: "udp://127.0.0.1:5001", allow: any}\n';

test('relay config text: alias bombs and deep nesting are refused with a PolicyValidationError that names the file, not a stack trace or a stack overflow', () => {
  for (const h of hostileYaml()) {
    const o = typedOnly(() => parseConfigText(h.text(oneFlow), 'hostile.yaml'), isPolicyError, `parseConfigText(${h.name})`);
    assert.equal(o.ok, false, `${h.name} was accepted`);
    const msg = (o as { error: Error }).error.message;
    assert.match(msg, /hostile\.yaml/, `${h.name}: the message does not name the file: ${msg.slice(0, 200)}`);
    assert.doesNotMatch(msg, /call stack|RangeError|ReferenceError/i, `${h.name}: the message leaks an internal error: ${msg.slice(0, 200)}`);
  }
});

test('relay config text: a number beyond a double (1e400) is refused as out of range for its field, not as missing', () => {
  for (const field of ['maxQueuedPackets', 'maxDatagramSize']) {
    const text = `flows:\n  - {type: redirect, listen: "udp://127.0.0.1:5000", to: "udp://127.0.0.1:5001", allow: any, ${field}: 1e400}\n`;
    assert.throws(
      () => parseConfigText(text, 'big.yaml'),
      (e: unknown) => isPolicyError(e) && (e as PolicyValidationError).issues.some((i) => i.path === `flows[0].${field}` && !/required/i.test(i.message)),
    );
  }
});

// ---------------------------------------------------------------------------
// TPO gateway configs

const key = (n = 64) => 'ab'.repeat(n / 2);
const validTpo = fc.record({
  name: fc.constantFrom('a', 'site-b'),
  listen: fc.constantFrom('127.0.0.1:7400', '[::1]:0', '0.0.0.0:7400'),
  peers: fc.constant([{ name: 'b', address: '127.0.0.1:7401', key: key(), keyId: 1, maxRate: '50M', initialRate: 2_000_000 }]),
  table: fc.constant([{ protocol: 'tcp', listen: '127.0.0.1:8080', target: '10.0.0.1:80', src: '127.0.0.0/8', dstPort: '1-65535' }]),
  routes: fc.constant([{ dst: '10.0.0.0/8', peer: 'b' }]),
  deliver: fc.constant({ allow: ['10.0.0.0/8'], connectTimeoutMs: 5000 }),
  limits: fc.constant({ maxFlows: 100, udpIdleMs: 60_000, peerDeadMs: 30_000 }),
});

/** The numbers and keys of an accepted config must mean what they say. */
function assertSaneTpo(c: ReturnType<typeof parseTpoConfig>, input: unknown): void {
  JSON.stringify(c, (_, v) => {
    if (typeof v === 'number') assert.ok(Number.isFinite(v), `accepted the non-finite ${v}`);
    return v;
  });
  for (const p of c.peers) {
    assert.ok(p.key.length >= 16, 'a key shorter than 16 bytes');
    if (p.maxRateBps !== undefined) assert.ok(p.maxRateBps > 0 && Number.isFinite(p.maxRateBps), `maxRate ${p.maxRateBps}`);
    if (p.initialRateBps !== undefined) assert.ok(p.initialRateBps > 0 && Number.isFinite(p.initialRateBps), `initialRate ${p.initialRateBps}`);
  }
  // A rate that was given must be a cap, not silently "none".
  const peers = (input as { peers?: { maxRate?: unknown; key?: unknown }[] }).peers ?? [];
  peers.forEach((raw, i) => {
    const p = c.peers[i];
    if (!p) return;
    if (raw.maxRate !== undefined) assert.ok(p.maxRateBps !== undefined, `maxRate ${JSON.stringify(raw.maxRate)} accepted as no cap`);
    if (typeof raw.key === 'string') assert.equal(p.key.length * 2, raw.key.length, `a ${raw.key.length}-digit hex key became ${p.key.length} bytes`);
  });
}

test('TPO config: any value, or a valid config with one field made hostile, parses or is refused with a TpoConfigError, never crashes (property)', () => {
  const readKey = (): Buffer => Buffer.from(key(64));
  fc.assert(
    fc.property(
      fc.oneof(
        anything,
        fc.tuple(validTpo, corruption).map(([v, c]) => corrupt(v, c.path, c.value, c.addKey)),
      ),
      (x) => {
        typedOnly(() => parseTpoConfig(x, 'tpo.yaml', readKey), isTpoError, 'parseTpoConfig');
      },
    ),
    { numRuns: 1500 },
  );
});

test('TPO config text: any text or damaged valid YAML parses or is refused with a TpoConfigError (property)', () => {
  const readKey = (): Buffer => Buffer.from(key(64));
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 200 }), yamlSpecials, damagedText(validTpo.map((v) => JSON.stringify(v)))), (text) => {
      typedOnly(() => parseTpoConfigText(text, 'tpo.yaml', readKey), isTpoError, 'parseTpoConfigText');
    }),
    { numRuns: 500 },
  );
});

test('TPO config: what is accepted means what it says: finite positive rates, a rate is a cap, every hex digit of the key is used', () => {
  const readKey = (): Buffer => Buffer.from(key(64));
  const rate = fc.oneof(
    fc.constantFrom<unknown>(0, '0', '0M', '0.0k', '9'.repeat(400), `${'9'.repeat(400)}M`, Infinity, 1e-9, '0.000001'),
    fc.integer({ min: 1, max: 1e9 }),
  );
  const hexKey = fc.integer({ min: 32, max: 128 }).chain((n) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)));
  fc.assert(
    fc.property(validTpo, rate, hexKey, (v, maxRate, k) => {
      const input = { ...v, peers: [{ ...v.peers[0]!, maxRate, key: k }] };
      const o = typedOnly(() => parseTpoConfig(input, 'tpo.yaml', readKey), isTpoError, 'parseTpoConfig');
      if (o.ok) assertSaneTpo(o.value as ReturnType<typeof parseTpoConfig>, input);
    }),
    { numRuns: 300 },
  );
});

test('TPO config text: alias bombs and deep nesting are refused with a TpoConfigError that names the file', () => {
  const tpo = `listen: 127.0.0.1:7400\npeers:\n  - {name: b, key: ${key()}}\n`;
  for (const h of hostileYaml()) {
    const o = typedOnly(() => parseTpoConfigText(h.text(tpo).replace(/^flows:/m, 'table:'), 'hostile.yaml'), isTpoError, `parseTpoConfigText(${h.name})`);
    assert.equal(o.ok, false, `${h.name} was accepted`);
    const msg = (o as { error: Error }).error.message;
    assert.match(msg, /hostile\.yaml/);
    assert.doesNotMatch(msg, /call stack|RangeError|ReferenceError/i, `${h.name}: ${msg.slice(0, 200)}`);
  }
});

test('TPO flow table: any entries compile or are refused with a FlowTableError; lookups of any tuple never throw (property)', () => {
  const entry = fc.record(
    {
      name: fc.string({ maxLength: 8 }),
      protocol: fc.constantFrom('tcp', 'udp', 'icmp', 'sctp'),
      src: fc.oneof(fc.constantFrom('10.0.0.0/8', '::/0', '1.2.3.4', '0.0.0.0/0', 'fe80::/10'), fc.string({ maxLength: 20 })),
      dst: fc.oneof(fc.constantFrom('10.0.0.0/8', '::1', '192.168.0.0/33'), fc.string({ maxLength: 20 })),
      srcPort: fc.oneof(fc.nat(70_000), fc.constantFrom('1-65535', '100-50', '0-0', '99999', '5-')),
      dstPort: fc.oneof(fc.nat(70_000), fc.constantFrom('80', '1-1024', '65535-65535')),
      domain: fc.oneof(fc.nat(300), fc.constant(-1)),
    },
    { requiredKeys: ['protocol'] },
  );
  fc.assert(
    fc.property(
      fc.array(fc.oneof(entry, anything), { maxLength: 6 }),
      fc.record({
        protocol: fc.constantFrom('tcp' as const, 'udp' as const, 'icmp' as const),
        src: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 10 })),
        dst: fc.oneof(fc.ipV4(), fc.ipV6()),
        srcPort: fc.integer({ min: -1, max: 70_000 }),
        dstPort: fc.nat(65535),
      }),
      (entries, key) => {
        const o = typedOnly(
          () => compileInterceptTable(entries),
          (e) => e instanceof FlowTableError,
          'compileInterceptTable',
        );
        if (!o.ok) return;
        const t = new InterceptTable(o.value as ReturnType<typeof compileInterceptTable>);
        typedOnly(
          () => t.lookup(key),
          () => false,
          'InterceptTable.lookup',
        );
      },
    ),
    { numRuns: 800 },
  );
});

// ---------------------------------------------------------------------------
// Rates and durations (CLI arguments, config values)

const rateText = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.stringMatching(/^\d{1,6}(\.\d{1,3})?\s?[kKmMgG]?(bit\/s|bps)?$/),
  fc.constantFrom('9'.repeat(400), `${'9'.repeat(400)}M`, '0', '0.0', '0M', '0.4', '0.00001k', '1e9', ' 5M ', '-5M', '5MM', '5 Mbit/s', '.5M'),
);

test('rates and durations: any text is a finite positive number or refused (the CLI and the TPO config)', () => {
  fc.assert(
    fc.property(rateText, (t) => {
      for (const [name, f] of [
        ['cli parseBitrate', parseBitrate],
        ['cli parseDuration', parseDuration],
      ] as const) {
        const v = (
          typedOnly(
            () => f(t),
            () => false,
            name,
          ) as { value: number | undefined }
        ).value;
        if (v !== undefined) assert.ok(Number.isFinite(v) && v > 0, `${name}(${JSON.stringify(t.slice(0, 20))}) = ${v}`);
      }
      const o = typedOnly(
        () => parseBitRate(t),
        (e) => e instanceof Error,
        'tpo parseBitRate',
      );
      if (o.ok) assert.ok(Number.isFinite(o.value) && (o.value as number) > 0, `tpo parseBitRate(${JSON.stringify(t.slice(0, 20))}) = ${o.value}`);
    }),
    { numRuns: 1000 },
  );
});
