import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  parsePolicy,
  parseFlowPolicy,
  parseConfigText,
  parseEndpoint,
  formatEndpoint,
  PolicyValidationError,
  planSchedule,
  planSegments,
  parseAggregate,
} from '../../src/index.js';
import { createSourceMatcher, parseSourceRule } from '../../src/policy/source-filter.js';
import { compileFlow } from '../../src/policy/compile.js';

/** Asserts that `fn` throws a PolicyValidationError with an issue at `path` whose message matches. */
function rejects(fn: () => unknown, path: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PolicyValidationError, `expected PolicyValidationError, got ${String(e)}`);
    const hit = e.issues.find((i) => i.path === path);
    assert.ok(hit, `no issue at '${path}': ${JSON.stringify(e.issues)}`);
    assert.match(hit.message, message);
    assert.ok(e.message.includes(path), 'the message names the field');
    return true;
  });
}

const base = { type: 'redirect', listen: 'udp://127.0.0.1:5000', to: 'udp://127.0.0.1:6000', allow: '127.0.0.1' } as const;

describe('endpoints', () => {
  test('parse IPv4, IPv6, with and without scheme', () => {
    assert.deepEqual(parseEndpoint('udp://10.1.2.3:5000'), { ok: true, endpoint: { family: 4, address: '10.1.2.3', port: 5000 } });
    assert.deepEqual(parseEndpoint('[::1]:53'), { ok: true, endpoint: { family: 6, address: '::1', port: 53 } });
    assert.equal(formatEndpoint({ family: 6, address: 'fd00::1', port: 9 }), 'udp://[fd00::1]:9');
  });

  test('reject names, bad ports, unbracketed IPv6 and other schemes with a reason', () => {
    for (const [input, why] of [
      ['udp://localhost:5000', /not an IPv4 or IPv6 address literal/],
      ['udp://1.2.3.4:65536', /out of range/],
      ['udp://1.2.3.4:0', /out of range 1\.\.65535/],
      ['udp://::1:5000', /need brackets/],
      ['tcp://1.2.3.4:5', /unsupported scheme/],
      ['1.2.3.4', /HOST:PORT/],
      ['udp://1.2.3.4:x', /not a number/],
    ] as const) {
      const r = parseEndpoint(input);
      assert.equal(r.ok, false, input);
      assert.match((r as { reason: string }).reason, why, input);
    }
    assert.equal(parseEndpoint('udp://0.0.0.0:0', { allowPortZero: true }).ok, true);
  });

  test('property: format then parse is the identity for every valid endpoint', () => {
    const ep = fc.oneof(
      fc.record({ family: fc.constant(4 as const), address: fc.ipV4(), port: fc.integer({ min: 1, max: 65535 }) }),
      fc.record({ family: fc.constant(6 as const), address: fc.ipV6(), port: fc.integer({ min: 1, max: 65535 }) }),
    );
    fc.assert(
      fc.property(ep, (e) => {
        const r = parseEndpoint(formatEndpoint(e));
        assert.ok(r.ok);
        assert.deepEqual(r.endpoint, { ...e });
      }),
    );
  });

  test('property: parsing arbitrary text never throws', () => {
    fc.assert(fc.property(fc.string(), (s) => void parseEndpoint(s)));
  });
});

describe('source filter', () => {
  test('exact address, prefix, IPv6, IPv4-mapped senders', () => {
    const m = createSourceMatcher({
      any: false,
      rules: ['192.0.2.7', '10.0.0.0/8', 'fd00::/16'].map((t) => (parseSourceRule(t) as { ok: true; rule: never }).rule),
    });
    assert.equal(m('192.0.2.7'), true);
    assert.equal(m('192.0.2.8'), false);
    assert.equal(m('10.200.3.4'), true);
    assert.equal(m('::ffff:10.1.1.1'), true);
    assert.equal(m('fd00:1::5'), true);
    assert.equal(m('fe80::1'), false);
    assert.equal(createSourceMatcher({ any: true })('203.0.113.1'), true);
  });

  test('property: an address is allowed by a prefix iff its leading bits match', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (net, addr, prefix) => {
        const toInt = (a: string) => a.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
        const expected = (toInt(net) & mask) >>> 0 === (toInt(addr) & mask) >>> 0;
        const rule = parseSourceRule(`${net}/${prefix}`);
        assert.ok(rule.ok);
        assert.equal(createSourceMatcher({ any: false, rules: [rule.rule] })(addr), expected);
      }),
    );
  });
});

describe('policy validation', () => {
  test('a valid redirect gets its defaults', () => {
    const spec = parseFlowPolicy(base);
    assert.equal(spec.type, 'redirect');
    assert.equal(spec.maxDatagramSize, 65507);
    assert.equal(spec.payload, 'any');
    assert.deepEqual(spec.allow, { any: false, rules: [{ family: 4, address: '127.0.0.1', prefix: 32 }] });
  });

  test('errors name the field and the reason', () => {
    rejects(() => parsePolicy({ ...base, to: 'udp://127.0.0.1:70000' }), 'to', /out of range/);
    rejects(() => parsePolicy({ ...base, allow: undefined }), 'allow', /required/);
    rejects(() => parsePolicy({ ...base, allow: [] }), 'allow', /at least one/);
    rejects(() => parsePolicy({ ...base, allow: ['10.0.0.0/8', 'any'] }), 'allow[1]', /must stand alone/);
    rejects(() => parsePolicy({ ...base, allow: '10.0.0.0/40' }), 'allow', /out of range/);
    rejects(() => parsePolicy({ ...base, type: 'teleport' }), 'type', /one of redirect, replicate/);
    rejects(() => parsePolicy({ ...base, colour: 'red' }), '', /unknown field 'colour'/);
    rejects(() => parsePolicy({ ...base, maxDatagramSize: 70000 }), 'maxDatagramSize', /65507/);
    rejects(() => parsePolicy({ ...base, type: 'replicate', to: ['udp://127.0.0.1:1', 'udp://127.0.0.1:bad'] }), 'to[1]', /not a number/);
    rejects(() => parsePolicy({ ...base, listen: undefined }), 'listen', /required|Invalid/);
    rejects(() => parsePolicy({ ...base, name: 'has space' }), 'name', /letters/);
  });

  test('compile rejects duplicate subscribers and loops', () => {
    const dup = parseFlowPolicy({ ...base, type: 'replicate', to: ['udp://127.0.0.1:7000', 'udp://127.0.0.1:7000'] });
    rejects(() => compileFlow(dup, 'x'), 'to[1]', /listed twice/);
    const loop = parseFlowPolicy({ ...base, to: base.listen });
    rejects(() => compileFlow(loop, 'x'), 'to', /loop/);
  });

  test('property: random JSON never crashes validation; it parses or names an issue', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parsePolicy(v);
        } catch (e) {
          assert.ok(e instanceof PolicyValidationError);
          assert.ok(e.issues.length > 0);
        }
      }),
    );
  });

  test('property: mutated valid policies are rejected with a field path, never crash', () => {
    const field = fc.constantFrom('listen', 'to', 'allow', 'maxDatagramSize', 'payload', 'name', 'maxQueuedPackets');
    fc.assert(
      fc.property(field, fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 })), (f, value) => {
        try {
          parsePolicy({ ...base, [f]: value });
        } catch (e) {
          assert.ok(e instanceof PolicyValidationError, String(e));
          assert.ok(
            e.issues.some((i) => i.path.startsWith(f)),
            JSON.stringify(e.issues),
          );
        }
      }),
    );
  });
});

describe('config files', () => {
  test('a YAML config with several flows', () => {
    const cfg = parseConfigText(
      [
        'tier: portable',
        'flows:',
        '  - name: feed',
        '    type: replicate',
        '    listen: udp://0.0.0.0:5000',
        '    allow: [10.0.0.0/8]',
        '    to: [udp://10.1.1.1:6000, "udp://[fd00::2]:6000"]',
        '  - type: redirect',
        '    listen: "udp://[::]:5001"',
        '    allow: any',
        '    to: udp://127.0.0.1:7000',
      ].join('\n'),
    );
    assert.equal(cfg.tier, 'portable');
    assert.equal(cfg.flows.length, 2);
  });

  test('syntax errors give the line; schema errors the path; aggregates are refused', () => {
    rejects(() => parseConfigText('flows:\n  - type: redirect\n   bad: [', 'x.yaml'), '', /x\.yaml:\d+/);
    rejects(() => parseConfigText('flows: []'), 'flows', /at least one flow/);
    rejects(() => parseConfigText('flows:\n  - type: aggregate'), 'flows[0].type', /one-shot/);
    rejects(
      () => parseConfigText('flows:\n  - {type: redirect, listen: "udp://1.2.3.4:5", to: "udp://1.2.3.4:99999", allow: any}'),
      'flows[0].to',
      /out of range/,
    );
    rejects(() => parseConfigText('flow: []'), '', /unknown field 'flow'/);
    rejects(() => parseConfigText('a: 1\na: 2\n'), '', /Map keys must be unique/);
    rejects(
      () =>
        parseConfigText(
          'flows:\n  - {name: a, type: redirect, listen: "udp://1.2.3.4:5", to: "udp://1.2.3.4:6", allow: any}\n  - {name: a, type: redirect, listen: "udp://1.2.3.4:7", to: "udp://1.2.3.4:6", allow: any}',
        ),
      'flows[1].name',
      /already used/,
    );
    rejects(() => parseConfigText('- 1\n- 2'), '', /mapping/);
  });

  const flowLine = (extra: string) => `flows:\n  - {type: redirect, listen: "udp://127.0.0.1:5000", to: "udp://127.0.0.1:6000", allow: any${extra}}\n`;

  test('hostile YAML: an alias bomb, deep nesting and many aliases are refused with the file and line, never thrown raw', () => {
    const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (const [i, c] of [...'bcdefghi'].entries()) bomb.push(`${c}: &${c} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`);
    bomb.push('flows: *i');
    rejects(() => parseConfigText(bomb.join('\n'), 'bomb.yaml'), '', /^bomb\.yaml: aliases expand too far/);
    // Deep enough to overflow the stack of a recursive parser, and deep enough only for one that nests.
    rejects(() => parseConfigText(`flows: ${'['.repeat(20_000)}${']'.repeat(20_000)}`, 'deep.yaml'), '', /^deep\.yaml(:1)?: nested deeper than 32 levels/);
    rejects(() => parseConfigText(`flows: ${'['.repeat(100)}${']'.repeat(100)}`, 'deep.yaml'), '', /^deep\.yaml:1: nested deeper than 32 levels/);
    const block = Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i)}- `).join('\n');
    rejects(() => parseConfigText(`flows:\n${block}1`, 'block.yaml'), '', /^block\.yaml:\d+: nested deeper than 32 levels/);
    // Anchored nesting stacked through aliases: each level is shallow, the result is not.
    const stacked = ['l0: &l0 [[[[[[[[[[1]]]]]]]]]]'];
    for (let i = 1; i < 6; i++) stacked.push(`l${i}: &l${i} [[[[[[[[[[*l${i - 1}]]]]]]]]]]`);
    rejects(() => parseConfigText(stacked.join('\n'), 'stack.yaml'), '', /^stack\.yaml: nested deeper than 32 levels/);
    const many = ['x: &x 1', ...Array.from({ length: 101 }, (_, i) => `k${i}: *x`)].join('\n');
    rejects(() => parseConfigText(many, 'many.yaml'), '', /^many\.yaml:\d+: more than 100 aliases/);
    rejects(() => parseConfigText('1: a\n"1": b\n', 'keys.yaml'), '', /^keys\.yaml:2: Map keys must be unique/);
    rejects(() => parseConfigText('? [a]\n: 1\n', 'keys.yaml'), '', /^keys\.yaml:1: a key must be a plain value/);
  });

  test('numbers that are not finite are named as such, not as missing', () => {
    for (const v of ['1e400', '.inf', '-.inf', '.nan']) {
      rejects(() => parseConfigText(flowLine(`, maxQueuedPackets: ${v}`), 'n.yaml'), 'flows[0].maxQueuedPackets', /must be a finite number/);
    }
    rejects(() => parseConfigText(flowLine(', maxDatagramSize: 1.5'), 'n.yaml'), 'flows[0].maxDatagramSize', /must be an integer \(got 1\.5\)/);
    rejects(() => parseConfigText(flowLine(', maxDatagramSize: "big"'), 'n.yaml'), 'flows[0].maxDatagramSize', /expected number, got a string/);
    rejects(() => parseConfigText('flows:\n  - {type: redirect, listen: "udp://127.0.0.1:5000", allow: any}\n', 'n.yaml'), 'flows[0].to', /required/);
    rejects(() => parsePolicy({ ...base, maxQueuedPackets: Infinity }), 'maxQueuedPackets', /must be a finite number \(got Infinity\)/);
    rejects(() => parsePolicy({ ...base, maxQueuedPackets: NaN }), 'maxQueuedPackets', /must be a finite number \(got NaN\)/);
  });

  test('property: arbitrary text never throws anything but a PolicyValidationError', () => {
    const yamlish = fc.stringMatching(/^[\[\]{}&*:,\- \nab01!'"#|>?]{0,200}$/);
    fc.assert(
      fc.property(fc.oneof(fc.string(), yamlish), (text) => {
        try {
          parseConfigText(text, 'f.yaml');
        } catch (e) {
          assert.ok(e instanceof PolicyValidationError, String(e));
          assert.match(e.message, /f\.yaml/);
        }
      }),
    );
  });
});

describe('aggregate and segment model', () => {
  const msg = (n: number) => ({ to: `udp://127.0.0.1:${7000 + n}`, data: new Uint8Array(10) });

  test('the design example: sequence numbers 3,1,5,4,2,6,7 leave in sequence order', () => {
    const agg = parseAggregate({
      messages: 'ABCDEFG'.split('').map((_, i) => msg(i % 2)),
      schedule: { kind: 'sequence', sequence: [3, 1, 5, 4, 2, 6, 7], tickMs: 2 },
    });
    const plan = planSchedule(agg.schedule, agg.messages.length);
    assert.deepEqual(
      [...plan.order].map((i) => 'ABCDEFG'[i]),
      ['B', 'E', 'A', 'D', 'C', 'F', 'G'],
    );
    assert.deepEqual([...plan.atMs], [0, 2, 4, 6, 8, 10, 12]);
  });

  test('delays and ranges', () => {
    const delays = planSchedule({ kind: 'delays', delaysMs: [7, 0, 3, 0] }, 4);
    assert.deepEqual([...delays.order], [1, 3, 2, 0], 'by delay, ties in the given order');
    assert.deepEqual([...delays.atMs], [0, 0, 3, 7]);
    assert.deepEqual([...planSchedule({ kind: 'range', durationMs: 10 }, 3).atMs], [0, 5, 10]);
    const offsets = planSchedule({ kind: 'range', durationMs: 10, offsetsMs: [0, 1, 2] }, 3);
    assert.deepEqual([...offsets.order], [0, 1, 2], 'already in order: kept');
  });

  test('schedule/message mismatches and oversize messages are named', () => {
    rejects(() => parseAggregate({ messages: [msg(1)], schedule: { kind: 'delays', delaysMs: [1, 2] } }), 'schedule.delaysMs', /2 entries for 1/);
    rejects(() => parseAggregate({ messages: [msg(1), msg(2)], schedule: { kind: 'sequence', sequence: [1, 1] } }), 'schedule.sequence', /distinct/);
    rejects(
      () => parseAggregate({ messages: [{ ...msg(1), data: new Uint8Array(70000) }], schedule: { kind: 'delays', delaysMs: [0] } }),
      'messages[0].data',
      /exceeds/,
    );
    rejects(() => parseAggregate({ messages: [{ ...msg(1), data: 'text' }], schedule: { kind: 'delays', delaysMs: [0] } }), 'messages[0].data', /Uint8Array/);
  });

  test('a range schedule may not start more than a day ahead; CLI rates and durations are finite', async () => {
    const range = (startAt: number) => ({ messages: [msg(1)], schedule: { kind: 'range', startAt, durationMs: 0 } });
    assert.doesNotThrow(() => parseAggregate(range(Date.now() + 60_000)));
    rejects(() => parseAggregate(range(1e300)), 'schedule.startAt', /more than a day ahead/);
    rejects(() => parseAggregate(range(Infinity)), 'schedule.startAt', /must be a finite number/);
    const { parseBitrate, parseDuration } = await import('../../src/cli/output.js');
    assert.equal(parseBitrate('4M'), 4_000_000);
    assert.equal(parseBitrate('9'.repeat(400)), undefined, 'reads as Infinity');
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('9'.repeat(400)), undefined);
    assert.equal(parseDuration('100000000s'), undefined, 'beyond what a timer can wait');
  });

  test('property: segment plans cover every byte once, interleaved, bursts bounded', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 1500 }),
        fc.integer({ min: 1, max: 4 }),
        (lengths, size, burst) => {
          const plan = planSegments(lengths, size, burst);
          lengths.forEach((len, e) => {
            const mine = plan.filter((p) => p.entry === e);
            assert.equal(
              mine.reduce((n, p) => n + p.length, 0),
              len,
            );
            mine.forEach((p, i) => assert.equal(p.offset, i * size));
            assert.ok(mine.every((p) => p.length <= size && p.length > 0));
          });
          // No run of one destination longer than `burst` while another still has data.
          for (let i = 0, run = 1; i < plan.length - 1; i++) {
            run = plan[i + 1]!.entry === plan[i]!.entry ? run + 1 : 1;
            if (run > burst) {
              const e = plan[i]!.entry;
              assert.ok(
                plan.slice(i + 1).every((p) => p.entry === e),
                'a long burst only once the others are done',
              );
            }
          }
        },
      ),
    );
  });
});
