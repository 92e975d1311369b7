/**
 * `sluice relay`'s multicast flags become the policy's `multicast` and
 * `multicastOut` fields, validated like any field (exit code 2, the field
 * named). Nothing is bound: every run here fails validation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { multicastFields } from '../../src/cli/multicast-flags.js';
import { runCli } from '../../harness/process/cli.js';

test('the flags map to the policy fields, and no flag to none', () => {
  assert.deepEqual(multicastFields({ source: [] }), {});
  assert.deepEqual(multicastFields({ source: ['10.0.0.1', '10.0.0.2'], interface: 'eth0' }), {
    multicast: { sources: ['10.0.0.1', '10.0.0.2'], interface: 'eth0' },
  });
  assert.deepEqual(multicastFields({ source: [], ttl: 8, outInterface: 'eth1', loop: true }), { multicastOut: { ttl: 8, interface: 'eth1', loop: true } });
});

test('sluice relay refuses multicast flags that do not fit, naming the field', async () => {
  const notGroup = await runCli(['relay', '--listen', 'udp://10.0.0.1:5000', '--source', '10.0.0.9', '--allow', 'any', '--to', 'udp://10.0.0.2:6000']);
  assert.equal(notGroup.code, 2);
  assert.match(notGroup.stderr, /multicast: listen udp:\/\/10\.0\.0\.1:5000 is not a multicast group/);
  const ttl = await runCli(['relay', '--listen', 'udp://239.1.1.1:5000', '--ttl', '300', '--allow', 'any', '--to', 'udp://10.0.0.2:6000']);
  assert.equal(ttl.code, 2);
  assert.match(ttl.stderr, /multicastOut\.ttl/);
});
