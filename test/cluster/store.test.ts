/**
 * The cluster store (src/cluster/store.ts) on a real single-member etcd
 * (harness/etcd/etcd-server.ts). Waits are generous and bound only hangs;
 * nothing asserts speed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import { StoreError, type StoreEvent } from '../../src/cluster/store.js';
import { isSluiceError } from '../../src/errors.js';
import { etcdSkipReason, startEtcd, type EtcdServer } from '../../harness/etcd/etcd-server.js';

const skip = etcdSkipReason() ?? false;
if (skip) process.stdout.write(`# skipping the etcd store tests: ${skip}\n`);

/** Polls `check` until it is true or `ms` passed; returns its last answer. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(200);
  }
}

describe('cluster store on etcd', { skip, timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let store: EtcdStore;
  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 5000 });
  });
  after(async () => {
    store?.close();
    await etcd?.stop();
  });

  it('puts, gets and reads a prefix with its revision', async () => {
    const r1 = await store.put('/t1/a', 'one');
    const r2 = await store.put('/t1/b', 'two');
    await store.put('/t1x', 'outside');
    assert.ok(r2 > r1);
    const a = await store.get('/t1/a');
    assert.equal(a?.value, 'one');
    assert.equal(a?.modRevision, r1);
    assert.equal(await store.get('/t1/none'), undefined);
    const read = await store.getPrefix('/t1/');
    assert.deepEqual(
      read.entries.map((e) => [e.key, e.value]),
      [
        ['/t1/a', 'one'],
        ['/t1/b', 'two'],
      ],
    );
    assert.ok(read.revision >= r2);
    assert.equal(await store.delete('/t1/a'), true);
    assert.equal(await store.delete('/t1/a'), false);
  });

  it('create-if-absent wins once for two racing writers; a stale mod revision loses', async () => {
    const other = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 5000 });
    try {
      for (let round = 0; round < 5; round++) {
        const key = `/t2/leader-${round}`;
        const [x, y] = await Promise.all([store.txn({ key, value: 'x', ifModRevision: 'absent' }), other.txn({ key, value: 'y', ifModRevision: 'absent' })]);
        assert.equal(Number(x.succeeded) + Number(y.succeeded), 1, `round ${round}: exactly one writer wins`);
        assert.equal((await store.get(key))?.value, x.succeeded ? 'x' : 'y');
      }
      const cur = await store.get('/t2/leader-0');
      assert.ok(cur);
      const ok = await store.txn({ key: '/t2/leader-0', value: 'next', ifModRevision: cur.modRevision });
      assert.equal(ok.succeeded, true);
      const stale = await other.txn({ key: '/t2/leader-0', value: 'stale', ifModRevision: cur.modRevision });
      assert.equal(stale.succeeded, false);
      assert.equal((await store.get('/t2/leader-0'))?.value, 'next');
    } finally {
      other.close();
    }
  });

  it('a key under a lease disappears when the lease is revoked', async () => {
    const lease = await store.grantLease(30);
    await store.put('/t3/node', 'up', { lease });
    assert.equal((await store.get('/t3/node'))?.lease, lease.id);
    await lease.keepAlive();
    let lost: StoreError | undefined;
    lease.on('lost', (e) => (lost = e));
    await lease.revoke();
    assert.equal(await store.get('/t3/node'), undefined);
    assert.equal(lease.lost, true);
    assert.equal(lost?.reason, 'lease-lost');
  });

  it('a key under a lease disappears after the TTL passes with no keepAlive, and the lease reports the loss', async () => {
    const lease = await store.grantLease(2);
    const lostP = new Promise<StoreError>((resolve) => lease.once('lost', resolve));
    await store.put('/t4/node', 'up', { lease });
    const err = await lostP;
    assert.equal(err.code, 'SLUICE_ERR_STORE');
    assert.equal(err.reason, 'lease-lost');
    assert.ok(await eventually(async () => (await store.get('/t4/node')) === undefined, 20_000), 'the store expired the key');
    await assert.rejects(lease.keepAlive(), (e: unknown) => e instanceof StoreError && e.reason === 'lease-lost');
  });

  it('a lease with autoKeepAlive outlives several TTLs', async () => {
    const lease = await store.grantLease(2, { autoKeepAlive: true });
    let lost = false;
    lease.on('lost', () => (lost = true));
    await store.put('/t7/node', 'up', { lease });
    await sleep(6000);
    assert.equal(lost, false);
    assert.equal((await store.get('/t7/node'))?.value, 'up');
    await lease.revoke();
    assert.equal(await store.get('/t7/node'), undefined);
  });

  it('a watch from a compacted revision fails with reason compacted', async () => {
    const first = await store.put('/t8/a', '1');
    const last = await store.put('/t8/a', '2');
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      await raw.kv.compact({ revision: last.toString(), physical: true });
    } finally {
      raw.close();
    }
    const errors: StoreError[] = [];
    const failed = await store.watchPrefix('/t8/', first, { event: () => undefined, error: (e) => errors.push(e) }).then(
      async (w) => {
        // etcd may accept the watch, then cancel it: the listener hears it.
        assert.ok(await eventually(() => Promise.resolve(errors.length > 0), 20_000), 'the listener got an error');
        await w.close();
        return errors[0]!;
      },
      (e: unknown) => e,
    );
    assert.ok(failed instanceof StoreError, String(failed));
    assert.equal(failed.reason, 'compacted', failed.message);
  });

  it('watchPrefix from a read revision delivers every change in order, including those made before the watch started', async () => {
    await store.put('/t5/a', '1');
    await store.put('/t5/b', '1');
    const read = await store.getPrefix('/t5/');
    assert.equal(read.entries.length, 2);
    // Changes between the read and the watch: the watch must still see them.
    await store.put('/t5/c', '1');
    await store.delete('/t5/a');
    await store.put('/t5/b', '2');
    const seen: StoreEvent[] = [];
    const errors: StoreError[] = [];
    const watch = await store.watchPrefix('/t5/', read.revision + 1n, {
      event: (ev) => seen.push(ev),
      error: (e) => errors.push(e),
    });
    try {
      await store.put('/t5/d', '1');
      await store.put('/t5x', 'outside the prefix');
      for (let i = 0; i < 20; i++) await store.put('/t5/n', String(i));
      assert.ok(await eventually(() => Promise.resolve(seen.length >= 24), 20_000), `saw ${seen.length} events`);
      const head = seen.slice(0, 4).map((e) => `${e.type} ${e.key}${e.type === 'put' ? `=${e.value}` : ''}`);
      assert.deepEqual(head, ['put /t5/c=1', 'delete /t5/a', 'put /t5/b=2', 'put /t5/d=1']);
      assert.deepEqual(
        seen.slice(4).map((e) => (e.type === 'put' ? e.value : 'deleted')),
        Array.from({ length: 20 }, (_, i) => String(i)),
      );
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.modRevision > seen[i - 1]!.modRevision, 'revisions increase');
      assert.equal(seen[0]!.modRevision, read.revision + 1n);
      assert.equal(seen.length, 24);
      assert.deepEqual(errors, []);
    } finally {
      await watch.close();
    }
  });
});

describe('cluster store when etcd dies', { skip, timeout: 120_000 }, () => {
  it('calls reject with a typed StoreError within the call timeout instead of hanging or crashing', async () => {
    const etcd = await startEtcd();
    const store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 2000 });
    try {
      await store.put('/t6/a', '1');
      const connection: boolean[] = [];
      const watch = await store.watchPrefix('/t6/', 1n, {
        event: () => undefined,
        error: () => undefined,
        connection: (up) => connection.push(up),
      });
      const lease = await store.grantLease(5);
      const leaseLost = new Promise<StoreError>((resolve) => lease.once('lost', resolve));
      await etcd.kill();
      const isStoreErr = (e: unknown) => isSluiceError(e, 'SLUICE_ERR_STORE') && e instanceof StoreError && ['unavailable', 'timeout'].includes(e.reason);
      await assert.rejects(store.get('/t6/a'), isStoreErr);
      await assert.rejects(store.put('/t6/b', '1'), isStoreErr);
      await assert.rejects(store.getPrefix('/t6/'), isStoreErr);
      await assert.rejects(store.txn({ key: '/t6/c', value: '1', ifModRevision: 'absent' }), isStoreErr);
      await assert.rejects(store.grantLease(5), isStoreErr);
      await assert.rejects(lease.keepAlive(), isStoreErr);
      await assert.rejects(store.watchPrefix('/t6/', 1n, { event: () => undefined, error: () => undefined }), isStoreErr);
      // With no renewal possible, the lease reports itself lost once its TTL passed.
      assert.equal((await leaseLost).reason, 'lease-lost');
      assert.ok(await eventually(() => Promise.resolve(connection.includes(false)), 20_000), 'the watch reported the lost connection');
      await watch.close();
    } finally {
      store.close();
      await etcd.stop();
    }
  });
});
