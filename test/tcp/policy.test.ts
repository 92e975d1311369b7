import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTcpRedirect, PolicyValidationError } from '../../src/index.js';

const base = { type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: 'tcp://127.0.0.1:8080', allow: 'any' } as const;

test('tcp-redirect: endpoints parse, defaults fill in', () => {
  const s = parseTcpRedirect({ ...base, listen: 'tcp://[::1]:9000', to: { host: '::1', port: 80 } });
  assert.deepEqual(s.listen, { family: 6, address: '::1', port: 9000 });
  assert.deepEqual(s.to, { family: 6, address: '::1', port: 80 });
  assert.equal(s.maxConnections, 1024);
  assert.equal(s.mode, 'auto');
  assert.equal(s.connectTimeoutMs, 10_000);
  assert.equal(s.idleTimeoutMs, undefined);
});

test('tcp-redirect: bad input is a PolicyValidationError naming the field', () => {
  const issues = (input: unknown) => {
    try {
      parseTcpRedirect(input);
    } catch (err) {
      assert.ok(err instanceof PolicyValidationError);
      return err.issues.map((i) => `${i.path}: ${i.message}`);
    }
    assert.fail('accepted');
  };
  assert.match(issues({ ...base, to: 'udp://127.0.0.1:1' })[0]!, /^to: unsupported scheme 'udp:\/\/'/);
  assert.match(issues({ ...base, to: 'tcp://127.0.0.1:0' })[0]!, /^to: /);
  assert.match(issues({ ...base, allow: undefined })[0]!, /^allow: required/);
  assert.match(issues({ ...base, allow: ['10.0.0.0/33'] })[0]!, /^allow/);
  assert.match(issues({ ...base, maxConnections: 0 })[0]!, /^maxConnections/);
  assert.match(issues({ ...base, mode: 'kernel' })[0]!, /^mode/);
  assert.match(issues({ ...base, extra: 1 })[0]!, /extra/);
});
