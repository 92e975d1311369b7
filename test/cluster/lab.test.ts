/**
 * The cluster lab itself (harness/cluster/lab.ts), without Sluice nodes:
 * etcd answers in its namespace and the store watcher sees writes; the
 * source's numbered datagrams reach the subscribers with their sequence
 * numbers and source address; a partition from etcd cuts exactly the
 * node-etcd path (the node still reaches the subscribers) and healing
 * restores it. The failover tests rely on each of these.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { etcdSkipReason } from '../../harness/etcd/etcd-server.js';
import { rootSkipReason } from '../../harness/netns/netns.js';
import { withClusterLab } from '../../harness/cluster/lab.js';
import { seqStats, soleFeeder } from '../../harness/cluster/lab-records.js';
import { ETCD_CLIENT_PORT, leafAddress } from '../../harness/cluster/lab-topology.js';

const skip = rootSkipReason() ?? etcdSkipReason() ?? false;
if (skip) process.stdout.write(`# skipping the cluster lab test: ${skip}\n`);

test('cluster lab: etcd, watcher, numbered traffic, partition from etcd only', { skip, timeout: 180_000 }, async () => {
  await withClusterLab(async (lab) => {
    const put = await lab.ctl.put('/sluice/lab-check', '{"x":1}');
    const seen = await lab.ctl.keyPut('/sluice/lab-check', 0, 10_000);
    assert.equal(seen.value, '{"x":1}');
    assert.equal(seen.rev, put.rev);

    const rx = await lab.startReceivers([6000, 6001]);
    const subs = leafAddress('subs');
    const src = await lab.startSource({ targets: [`${subs}:6000`, `${subs}:6001`], rate: 200, count: 100, maxSeconds: 10 });
    await src.waitExit(20_000);
    assert.match(src.stdout(), /"ev":"done","sent":100/);
    await new Promise((r) => setTimeout(r, 300));
    const rec = await rx.recording();
    for (const port of [6000, 6001]) {
      const got = rec.get(port) ?? [];
      const s = seqStats(got);
      assert.deepEqual([s.unique, s.min, s.max, s.missing, s.duplicates], [100, 0, 99, 0, 0], `port ${port}`);
      assert.equal(soleFeeder(got), leafAddress('src'));
    }

    const health = `http://${leafAddress('etcd')}:${ETCD_CLIENT_PORT}/health`;
    const curl = ['-sS', '--max-time', '2', health];
    assert.match(await lab.topo.exec('n3', 'curl', curl), /"health":\s*"true"/);
    await lab.partitionFromEtcd('n3');
    await assert.rejects(lab.topo.exec('n3', 'curl', curl), 'etcd is unreachable from the partitioned node');
    assert.match(await lab.topo.exec('n4', 'curl', curl), /"health":\s*"true"/, 'other nodes still reach etcd');
    // The partitioned node still reaches the subscribers.
    const fromN3 = await lab.startSource({ ns: 'n3', targets: [`${subs}:6001`], rate: 200, count: 20, maxSeconds: 5 });
    await fromN3.waitExit(20_000);
    await rx.fedBy(6001, leafAddress('n3'), 0, 5_000);
    await lab.healFromEtcd('n3');
    assert.match(await lab.topo.exec('n3', 'curl', curl), /"health":\s*"true"/);
  });
});
