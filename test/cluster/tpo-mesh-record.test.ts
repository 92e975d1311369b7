/**
 * TPO mesh registrations, keys and plan (issue 21), without a store: what a
 * registration may hold, how both sides of a pair derive the same key and
 * key id (and different ones for another pair or another cluster key), who
 * initiates, and what a site applies for another's registration.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultMeshKeyId, pairKey, pairKeyId, readClusterKey } from '../../src/cluster/tpo-mesh-keys.js';
import { meshEntryInputs, meshPeerInput } from '../../src/cluster/tpo-mesh-plan.js';
import { checkMeshRecord, parseMeshRecord, type MeshRecord } from '../../src/cluster/tpo-mesh-record.js';

const base = {
  name: 'site-c',
  address: '192.0.2.3:7400',
  keyId: 3,
  keyRef: 'mesh',
  routes: ['10.3.0.0/16'],
  services: [{ name: 'web', protocol: 'tcp', port: 8080, target: '10.3.0.10:80' }],
};

function record(input: unknown): MeshRecord {
  const r = checkMeshRecord(input);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.record;
}

function reason(input: unknown): string {
  const r = typeof input === 'string' ? parseMeshRecord(input) : checkMeshRecord(input);
  assert.ok(!r.ok, 'refused');
  return r.reason;
}

test('a registration: canonical, strict, its services within its routes', () => {
  const r = record({ ...base, routes: ['10.3.0.0/16', '2001:db8::1'], address: '[2001:db8::3]:7400' });
  assert.equal(r.address.port, 7400);
  assert.equal(r.value, JSON.stringify({ ...base, address: '[2001:db8::3]:7400', routes: ['10.3.0.0/16', '2001:db8::1'] }));
  assert.deepEqual(parseMeshRecord(r.value), { ok: true, record: r }, 'the written value reads back as itself');
  assert.match(reason({ ...base, key: 'ab'.repeat(16) }), /unknown field 'key'/);
  assert.match(reason({ ...base, services: [{ ...base.services[0], keyFile: '/k' }] }), /services\[0\]: unknown field 'keyFile'/);
  assert.match(reason({ ...base, keyId: 0 }), /keyId/);
  assert.match(reason({ ...base, keyId: 65_536 }), /keyId/);
  assert.match(reason({ ...base, address: '[::]:7400' }), /:: is no address another site can reach/);
  assert.match(reason({ ...base, address: 'somewhere' }), /^address: /);
  assert.match(reason({ ...base, routes: ['10.3.0.0/40'] }), /^routes\[0\]: /);
  assert.match(
    reason({ ...base, services: [{ ...base.services[0], target: '10.4.0.1:80' }] }),
    /services\[0\]\.target: 10\.4\.0\.1 is not within the gateway's routes/,
  );
  assert.match(reason({ ...base, services: [base.services[0], { ...base.services[0], name: 'web2' }] }), /services\[1\]\.port: tcp port 8080 appears twice/);
  assert.match(reason({ ...base, services: [base.services[0], { ...base.services[0], port: 8081 }] }), /services\[1\]\.name: 'web' appears twice/);
  assert.match(reason({ ...base, name: 'n'.repeat(61) }), /table entry name\) is over 64 characters/);
  assert.match(reason('{"name":'), /not JSON/);
  assert.match(reason(' '.repeat(70_000)), /over 65536 bytes/);
});

test('pair keys and key ids: the same on both sides, different for another pair or another cluster key', () => {
  const k = { ref: 'mesh', key: Buffer.alloc(32, 7) };
  assert.deepEqual(pairKey(k, 'a', 'b'), pairKey(k, 'b', 'a'));
  assert.equal(pairKey(k, 'a', 'b').length, 32);
  assert.notDeepEqual(pairKey(k, 'a', 'b'), pairKey(k, 'a', 'c'));
  assert.notDeepEqual(pairKey(k, 'ab', 'c'), pairKey(k, 'a', 'bc'));
  assert.notDeepEqual(pairKey(k, 'a', 'b'), pairKey({ ...k, ref: 'mesh2' }, 'a', 'b'), 'the key name is bound in');
  assert.notDeepEqual(pairKey(k, 'a', 'b'), pairKey({ ...k, key: Buffer.alloc(32, 8) }, 'a', 'b'));
  assert.equal(pairKeyId(3, 7), pairKeyId(7, 3));
  assert.equal(pairKeyId(1, 2), 0x10002);
  assert.equal(pairKeyId(65_534, 65_535), 0xfffeffff, 'fits 32 bits');
  assert.notEqual(pairKeyId(1, 2), pairKeyId(1, 3));
  for (const n of ['a', 'site-a', 'x'.repeat(64)]) {
    const id = defaultMeshKeyId(n);
    assert.ok(Number.isInteger(id) && id >= 1 && id <= 65_535);
  }
});

test('the cluster key file: mode 600, hex or raw, named after the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-mesh-key-'));
  try {
    const path = join(dir, 'mesh-2025.key');
    writeFileSync(path, `${'ab'.repeat(32)}\n`);
    chmodSync(path, 0o644);
    assert.throws(() => readClusterKey(path), /permissions 0644 are too open/);
    chmodSync(path, 0o600);
    const k = readClusterKey(path);
    assert.equal(k.ref, 'mesh-2025');
    assert.deepEqual(Buffer.from(k.key), Buffer.alloc(32, 0xab));
    assert.equal(readClusterKey(path, 'other').ref, 'other');
    writeFileSync(path, 'short');
    assert.throws(() => readClusterKey(path), /5 bytes: a raw key has 16 to 64 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the plan: the lower name initiates; one explicit entry per service, at this site listen host', () => {
  const clusterKey = { ref: 'mesh', key: Buffer.alloc(32, 1) };
  const c = record(base);
  const selfA = { name: 'site-a', keyId: 1, clusterKey, peer: { maxRate: '50M' }, listen: { host: '10.1.0.1', src: '10.1.0.0/16' } };
  assert.deepEqual(meshPeerInput(selfA, c), {
    maxRate: '50M',
    name: 'site-c',
    address: '192.0.2.3:7400',
    key: pairKey(clusterKey, 'site-a', 'site-c').toString('hex'),
    keyId: pairKeyId(1, 3),
  });
  const selfZ = { name: 'site-z', keyId: 26, clusterKey };
  assert.equal(meshPeerInput(selfZ, c).address, undefined, 'the higher name answers');
  assert.deepEqual(meshEntryInputs(selfA, c), [
    { name: 'site-c.web', protocol: 'tcp', listen: '10.1.0.1:8080', target: '10.3.0.10:80', peers: ['site-c'], src: '10.1.0.0/16' },
  ]);
  assert.deepEqual(meshEntryInputs(selfZ, c), [], 'no listen host: peers only');
  assert.equal(meshEntryInputs({ ...selfZ, listen: { host: '::1' } }, c)[0]?.listen, '[::1]:8080');
});
