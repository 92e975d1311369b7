/**
 * Checks across the flows of one instance (src/policy/flow-set.ts), the
 * ones `sluice validate`, `sluice run` and Sluice.apply share: relay loops
 * (through wildcards, IPv4-mapped addresses, this host's addresses, and
 * across flows), duplicate subscribers, overlapping listen addresses,
 * names. Every error names the file's field path and the flows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseConfigText, parseFlowPolicy, PolicyValidationError, Sluice, ConflictError } from '../../src/index.js';
import { addressKey, flowSetIssues, hostAddressesFrom, reaches, sinksFirst, type FlowInSet } from '../../src/policy/flow-set.js';
import { parseEndpoint, type Endpoint } from '../../src/wire/endpoint.js';
import { openReceiver } from '../../harness/traffic/udp.js';

const ep = (url: string): Endpoint => {
  const r = parseEndpoint(url, { allowPortZero: true });
  assert.ok(r.ok, url);
  return r.endpoint;
};
const host = hostAddressesFrom({ eth0: [{ address: '192.0.2.7' }, { address: 'fe80::1%eth0' }], lo: [{ address: '127.0.0.1' }, { address: '::1' }] });

interface F {
  name?: string;
  listen: string;
  to: string | string[];
}
const yaml = (flows: F[]) =>
  `flows:\n${flows
    .map(
      (f) =>
        `  - {${f.name ? `name: ${f.name}, ` : ''}type: ${Array.isArray(f.to) ? 'replicate' : 'redirect'}, listen: "${f.listen}", allow: any, to: ${JSON.stringify(f.to)}}`,
    )
    .join('\n')}\n`;

/** The issues a config of these flows gets (none: []). */
function configIssues(flows: F[]): { path: string; message: string }[] {
  try {
    parseConfigText(yaml(flows), 'loops.yaml', host);
    return [];
  } catch (e) {
    assert.ok(e instanceof PolicyValidationError, String(e));
    assert.match(e.message, /^invalid config loops\.yaml: /);
    return [...e.issues];
  }
}

test('addresses compare as the kernel delivers them: IPv4-mapped as IPv4, IPv6 canonical, zones ignored', () => {
  assert.equal(addressKey('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(addressKey('::FFFF:7f00:1'), '127.0.0.1');
  assert.equal(addressKey('0:0::1'), '::1');
  assert.equal(addressKey('fe80::1%eth0'), 'fe80::1');
  assert.equal(reaches(ep('udp://127.0.0.1:5000'), ep('udp://0.0.0.0:5000'), host), true);
  assert.equal(reaches(ep('udp://127.9.9.9:5000'), ep('udp://0.0.0.0:5000'), host), true, 'all of 127/8 is local');
  assert.equal(reaches(ep('udp://[::ffff:127.0.0.1]:5000'), ep('udp://0.0.0.0:5000'), host), true);
  assert.equal(reaches(ep('udp://192.0.2.7:5000'), ep('udp://0.0.0.0:5000'), host), true, 'an interface address');
  assert.equal(reaches(ep('udp://0.0.0.0:5000'), ep('udp://127.0.0.1:5000'), host), true, '0.0.0.0 as a destination is this host');
  assert.equal(reaches(ep('udp://127.0.0.1:5000'), ep('udp://[::]:5000'), host), true, ':: is dual-stack');
  assert.equal(reaches(ep('udp://[::1]:5000'), ep('udp://0.0.0.0:5000'), host), false, '0.0.0.0 takes IPv4 only');
  assert.equal(reaches(ep('udp://[fe80::1]:5000'), ep('udp://[::]:5000'), host), true);
  assert.equal(reaches(ep('udp://198.51.100.1:5000'), ep('udp://0.0.0.0:5000'), host), false, 'another host');
  assert.equal(reaches(ep('udp://127.0.0.1:5001'), ep('udp://0.0.0.0:5000'), host), false, 'another port');
  assert.equal(reaches(ep('udp://127.0.0.2:5000'), ep('udp://127.0.0.1:5000'), host), false, 'a specific listen takes only its address');
  assert.equal(reaches(ep('udp://[::ffff:127.0.0.1]:5000'), ep('udp://[::ffff:127.0.0.1]:5000'), host), true);
});

test('a flow whose subscriber is its own listen address through a wildcard, a mapped form or a host address is refused', () => {
  for (const to of ['udp://127.0.0.1:5000', 'udp://[::ffff:127.0.0.1]:5000', 'udp://192.0.2.7:5000', 'udp://127.0.0.53:5000']) {
    const issues = configIssues([{ name: 'self', listen: 'udp://0.0.0.0:5000', to: ['udp://198.51.100.1:6000', to] }]);
    assert.equal(issues.length, 1, `${to}: ${JSON.stringify(issues)}`);
    assert.equal(issues[0]!.path, 'flows[0].to[1]');
    assert.match(issues[0]!.message, /reaches the flow's own listen address udp:\/\/0\.0\.0\.0:5000, a relay loop/);
  }
  // The exact address: the subscriber check says so once.
  const exact = configIssues([{ listen: 'udp://127.0.0.1:5000', to: 'udp://127.0.0.1:5000' }]);
  assert.deepEqual(
    exact.map((i) => i.path),
    ['flows[0].to'],
  );
  assert.match(exact[0]!.message, /own listen address \(a loop\)/);
});

test('cycles across two and three flows are refused naming every flow; chains are allowed', () => {
  const two = configIssues([
    { name: 'a', listen: 'udp://0.0.0.0:5000', to: ['udp://127.0.0.1:5001'] },
    { name: 'b', listen: 'udp://127.0.0.1:5001', to: 'udp://[::ffff:127.0.0.1]:5000' },
  ]);
  assert.deepEqual(
    two.map((i) => i.path),
    ['flows[0].to[0]', 'flows[1].to'],
  );
  assert.match(two[0]!.message, /udp:\/\/127\.0\.0\.1:5001 reaches flow 'b' udp:\/\/127\.0\.0\.1:5001, a relay loop: flow 'a' → flow 'b' → flow 'a'/);
  const three = configIssues([
    { name: 'a', listen: 'udp://0.0.0.0:5000', to: 'udp://127.0.0.1:5001' },
    { listen: 'udp://[::]:5001', to: 'udp://192.0.2.7:5002' },
    { name: 'c', listen: 'udp://192.0.2.7:5002', to: ['udp://198.51.100.1:9', 'udp://127.0.0.1:5000'] },
  ]);
  assert.equal(three.length, 3);
  assert.match(three.find((i) => i.path === 'flows[2].to[1]')!.message, /flow 'c' → flow 'a' → flows\[1\] → flow 'c'/);
  // a → b → c, c to another host: a chain, not a loop.
  assert.deepEqual(
    configIssues([
      { name: 'a', listen: 'udp://0.0.0.0:5000', to: 'udp://127.0.0.1:5001' },
      { name: 'b', listen: 'udp://0.0.0.0:5001', to: 'udp://127.0.0.1:5002' },
      { name: 'c', listen: 'udp://127.0.0.1:5002', to: 'udp://198.51.100.1:5000' },
    ]),
    [],
  );
});

test('validate runs what run would refuse: duplicate subscribers, overlapping listens, duplicate names', () => {
  const dup = configIssues([{ name: 'a', listen: 'udp://0.0.0.0:5000', to: ['udp://198.51.100.1:6000', 'udp://198.51.100.1:6000'] }]);
  assert.deepEqual(
    dup.map((i) => i.path),
    ['flows[0].to[1]'],
  );
  assert.match(dup[0]!.message, /listed twice/);
  const overlap = configIssues([
    { name: 'a', listen: 'udp://127.0.0.1:5000', to: 'udp://198.51.100.1:6000' },
    { name: 'b', listen: 'udp://0.0.0.0:5000', to: 'udp://198.51.100.1:6001' },
    { listen: 'udp://[::]:5000', to: 'udp://198.51.100.1:6002' },
    { name: 'd', listen: 'udp://127.0.0.1:0', to: 'udp://198.51.100.1:6003' },
    { name: 'e', listen: 'udp://127.0.0.1:0', to: 'udp://198.51.100.1:6004' },
  ]);
  assert.deepEqual(
    overlap.map((i) => i.path),
    ['flows[1].listen', 'flows[2].listen', 'flows[2].listen'],
  );
  assert.match(overlap[0]!.message, /udp:\/\/0\.0\.0\.0:5000 overlaps flow 'a' on udp:\/\/127\.0\.0\.1:5000/);
  const names = configIssues([
    { name: 'a', listen: 'udp://127.0.0.1:5000', to: 'udp://198.51.100.1:6000' },
    { name: 'a', listen: 'udp://127.0.0.1:5001', to: 'udp://198.51.100.1:6000' },
  ]);
  assert.deepEqual(
    names.map((i) => [i.path, i.message]),
    [['flows[1].name', "'a' is already used by flows[0]"]],
  );
});

test('property: sinksFirst orders any loop-free set so that changing flows one by one never closes a loop', () => {
  const port = fc.integer({ min: 5000, max: 5005 });
  fc.assert(
    fc.property(
      fc.array(fc.record({ port, to: fc.array(port, { maxLength: 3 }) }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.array(port, { maxLength: 3 }), { minLength: 6, maxLength: 6 }),
      (flows, before) => {
        const set = (tos: number[][]): FlowInSet[] =>
          flows.map((f, i) => ({
            name: `f${i}`,
            where: '',
            spec: parseFlowPolicy({
              type: 'replicate',
              listen: `udp://127.0.0.1:${f.port}`,
              allow: 'any',
              to: [...new Set(tos[i]!)].filter((p) => p !== f.port).map((p) => `udp://127.0.0.1:${p}`),
            }),
          }));
        const oldSet = set(before);
        const newSet = set(flows.map((f) => f.to));
        if (flowSetIssues(newSet).some((i) => i.kind === 'listen')) return; // not a valid set to start from
        const loopFree = (s: FlowInSet[]) => !flowSetIssues(s).some((i) => i.kind === 'loop');
        if (!loopFree(oldSet) || !loopFree(newSet)) return;
        const current = [...oldSet];
        for (const i of sinksFirst(newSet)) {
          current[i] = newSet[i]!;
          assert.ok(loopFree(current), `a loop after changing f${i}`);
        }
      },
    ),
  );
});

test('Sluice.apply refuses a loop across running flows; update and addSubscriber too', async () => {
  const s = await Sluice.open({ tier: 'portable' });
  const sink = await openReceiver();
  try {
    const a = await s.apply({ name: 'a', type: 'replicate', listen: 'udp://127.0.0.1:0', to: [sink.url], allow: 'any' });
    const b = await s.apply({ name: 'b', type: 'redirect', listen: 'udp://0.0.0.0:0', to: `udp://[::ffff:127.0.0.1]:${a.listen.port}`, allow: 'any' });
    // a → b closes the loop b → a: refused, a unchanged.
    await assert.rejects(a.addSubscriber(`udp://127.0.0.1:${b.listen.port}`), (e: unknown) => {
      assert.ok(e instanceof PolicyValidationError, String(e));
      assert.match(e.message, /flow 'a'.*to\[1\]: udp:\/\/127\.0\.0\.1:\d+ reaches flow 'b' .*a relay loop: flow 'a' → flow 'b' → flow 'a'/);
      return true;
    });
    assert.deepEqual(
      a.stats().destinations.map((d) => d.to),
      [sink.url],
    );
    // A new flow that closes a loop with a and b: a already feeds its (free) port.
    const free = await openReceiver();
    const port = free.port;
    await free.close();
    await a.addSubscriber(`udp://127.0.0.1:${port}`);
    await assert.rejects(
      s.apply({ name: 'c', type: 'redirect', listen: `udp://0.0.0.0:${port}`, to: `udp://127.0.0.1:${b.listen.port}`, allow: 'any' }),
      (e: unknown) => {
        assert.ok(e instanceof PolicyValidationError, String(e));
        assert.match(e.message, /flow 'c' → flow 'b' → flow 'a' → flow 'c'/);
        return true;
      },
    );
    assert.deepEqual(
      s.flows().map((f) => f.name),
      ['a', 'b'],
    );
    await assert.rejects(
      s
        .apply({ name: 'self', type: 'redirect', listen: 'udp://0.0.0.0:0', to: 'udp://127.0.0.1:9', allow: 'any' })
        .then((f) => f.update({ to: `udp://127.0.0.1:${f.listen.port}` })),
      /a relay loop/,
    );
    await assert.rejects(s.apply({ name: 'a', type: 'redirect', listen: 'udp://127.0.0.1:0', to: sink.url, allow: 'any' }), ConflictError);
  } finally {
    await s.close();
    await sink.close();
  }
});
