/**
 * The multicast fields of a flow policy (docs/POLICY.md, "Multicast"):
 * validation names the field, and the plan says how to join and send.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlowPolicy, PolicyValidationError } from '../../src/index.js';
import { compileFlow } from '../../src/policy/compile.js';
import { isMulticastAddress } from '../../src/wire/ip-address.js';
import { createSourceMatcher } from '../../src/policy/source-filter.js';
import { policyJson } from '../../src/server/flow-view.js';

function rejects(input: object, path: string, message: RegExp): void {
  assert.throws(
    () => parseFlowPolicy(input),
    (e: unknown) => {
      assert.ok(e instanceof PolicyValidationError, `expected PolicyValidationError, got ${String(e)}`);
      const hit = e.issues.find((i) => i.path === path);
      assert.ok(hit, `no issue at '${path}': ${JSON.stringify(e.issues)}`);
      assert.match(hit.message, message);
      assert.ok(e.message.includes(path), 'the message names the field');
      return true;
    },
  );
}

const plan = (input: object) => compileFlow(parseFlowPolicy(input), 'f');
const group = { type: 'replicate', listen: 'udp://239.1.1.1:5000', allow: 'any', to: ['udp://10.0.0.2:6000'] } as const;

describe('multicast addresses', () => {
  test('224.0.0.0/4 and ff00::/8 are groups, the rest is not', () => {
    for (const a of ['224.0.0.1', '239.255.255.255', '232.1.2.3', 'ff02::1', 'FF3E::1234', 'ff05::1%eth0', '::ffff:239.1.1.1'])
      assert.ok(isMulticastAddress(a), a);
    for (const a of ['223.255.255.255', '240.0.0.1', '10.0.0.1', '0.0.0.0', '::', 'fe80::1', 'fd00::1', 'not an address', '::ffff:10.0.0.1']) {
      assert.ok(!isMulticastAddress(a), a);
    }
  });
});

describe('policy: multicast listen', () => {
  test('a group listen joins it, any source, on the route’s interface', () => {
    const p = plan(group);
    assert.deepEqual(p.multicast, { group: '239.1.1.1', sources: [] });
    assert.deepEqual(p.sources, { any: true });
    assert.equal(p.multicastOut, undefined);
  });

  test('a unicast listen joins nothing', () => {
    assert.equal(plan({ ...group, listen: 'udp://10.0.0.1:5000' }).multicast, undefined);
  });

  test('SSM sources and the interface reach the plan; with allow any they are the allow list', () => {
    const p = plan({ ...group, multicast: { sources: ['10.0.0.1', '10.0.0.9', '10.0.0.1'], interface: 'eth0' } });
    assert.deepEqual(p.multicast, { group: '239.1.1.1', sources: ['10.0.0.1', '10.0.0.9'], interface: 'eth0' });
    const accept = createSourceMatcher(p.sources);
    assert.ok(accept('10.0.0.1') && accept('10.0.0.9'));
    assert.ok(!accept('10.0.0.2'));
  });

  test('with an allow list, the listed sources it lets in (the host delivers no others)', () => {
    const p = plan({ ...group, allow: ['10.0.0.0/8', '192.0.2.7'], multicast: { sources: ['10.0.0.1', '192.0.2.8', '10.9.9.9'] } });
    assert.deepEqual(p.sources, {
      any: false,
      rules: [
        { family: 4, address: '10.0.0.1', prefix: 32 },
        { family: 4, address: '10.9.9.9', prefix: 32 },
      ],
    });
    assert.deepEqual(plan({ ...group, allow: '192.0.2.7', multicast: { sources: ['10.0.0.1'] } }).sources, { any: false, rules: [] });
    assert.deepEqual(plan({ ...group, allow: '192.0.2.7' }).sources, { any: false, rules: [{ family: 4, address: '192.0.2.7', prefix: 32 }] });
  });

  test('IPv6 groups with SSM and an interface address', () => {
    const p = plan({ ...group, listen: 'udp://[ff3e::8000:1]:5000', to: ['udp://[fd00::2]:6000'], multicast: { sources: ['fd00::1'], interface: 'fd00::10' } });
    assert.deepEqual(p.multicast, { group: 'ff3e::8000:1', sources: ['fd00::1'], interface: 'fd00::10' });
  });

  test('errors name the field', () => {
    rejects({ ...group, listen: 'udp://10.0.0.1:5000', multicast: {} }, 'multicast', /not a multicast group/);
    rejects({ ...group, multicast: { sources: [] } }, 'multicast.sources', /at least one source/);
    rejects({ ...group, multicast: { sources: ['239.1.1.2'] } }, 'multicast.sources[0]', /unicast/);
    rejects({ ...group, multicast: { sources: ['10.0.0.1', 'nope'] } }, 'multicast.sources[1]', /unicast/);
    rejects({ ...group, multicast: { sources: ['fd00::1'] } }, 'multicast.sources[0]', /not an IPv4 address/);
    rejects({ ...group, multicast: { interface: 'fd00::1' } }, 'multicast.interface', /not an IPv4 address/);
    rejects({ ...group, multicast: { interface: 'a/b' } }, 'multicast.interface', /interface name/);
    rejects({ ...group, multicast: { interface: 'much-too-long-name' } }, 'multicast.interface', /interface name/);
    rejects({ ...group, multicast: { sources: Array.from({ length: 65 }, (_, i) => `10.0.1.${i}`) } }, 'multicast.sources', /64/);
    rejects({ ...group, multicast: { ttl: 3 } }, 'multicast', /ttl/);
  });
});

describe('policy: multicast output', () => {
  const uni = { type: 'replicate', listen: 'udp://10.0.0.1:5000', allow: 'any' } as const;

  test('a group subscriber gets the defaults: TTL 1, no loopback, the route’s interface', () => {
    assert.deepEqual(plan({ ...uni, to: ['udp://239.2.2.2:7000', 'udp://10.0.0.3:7000'] }).multicastOut, { ttl: 1, loop: false });
  });

  test('no group subscriber and no multicastOut: no settings', () => {
    assert.equal(plan({ ...uni, to: ['udp://10.0.0.3:7000'] }).multicastOut, undefined);
  });

  test('multicastOut is kept, also before any group subscriber is added', () => {
    assert.deepEqual(plan({ ...uni, to: [], multicastOut: { ttl: 16, interface: 'eth1', loop: true } }).multicastOut, {
      ttl: 16,
      loop: true,
      interface: 'eth1',
    });
    assert.deepEqual(plan({ ...uni, to: ['udp://[ff05::1]:7000'], multicastOut: { ttl: 0 } }).multicastOut, { ttl: 0, loop: false });
  });

  test('errors name the field', () => {
    rejects({ ...uni, to: [], multicastOut: { ttl: 256 } }, 'multicastOut.ttl', /255/);
    rejects({ ...uni, to: [], multicastOut: { ttl: 1.5 } }, 'multicastOut.ttl', /int/i);
    rejects({ ...uni, to: [], multicastOut: { loop: 'yes' } }, 'multicastOut.loop', /boolean/);
    rejects({ ...uni, to: [], multicastOut: { interface: '' } }, 'multicastOut.interface', /interface name/);
    rejects({ ...uni, to: [], multicastOut: { hops: 2 } }, 'multicastOut', /hops/);
  });
});

describe('policy: multicast written back', () => {
  test('the daemon’s policy JSON (GET, the state file) keeps the fields and parses to the same spec', () => {
    const input = {
      name: 'ch1',
      type: 'replicate',
      listen: 'udp://239.1.1.1:5000',
      allow: 'any',
      multicast: { sources: ['10.0.0.1'], interface: 'eth0' },
      multicastOut: { ttl: 4, loop: true },
      to: ['udp://239.2.2.2:7000'],
    };
    const spec = parseFlowPolicy(input);
    const json = policyJson(spec, 'ch1');
    assert.deepEqual(json.multicast, { sources: ['10.0.0.1'], interface: 'eth0' });
    assert.deepEqual(json.multicastOut, { ttl: 4, loop: true });
    assert.deepEqual(parseFlowPolicy(JSON.parse(JSON.stringify(json))), spec);
  });
});
