/**
 * The cluster plan (src/cluster/plan.ts) and the values it reads
 * (records.ts, store-view.ts): no store, no sockets. What every node
 * computes from the same revision: the active ingest, who feeds whom,
 * which source each edge accepts, port clashes, and refusals of values
 * written by someone else.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { edgeFlowName, ingestFlowName, localFlows, planCluster } from '../../src/cluster/plan.js';
import { StoreView } from '../../src/cluster/store-view.js';
import { parseClusterUrl } from '../../src/cluster/url.js';
import { portIssues } from '../../src/cluster/flow-store.js';
import { checkClusterFlow } from '../../src/cluster/flow-store.js';
import type { StoreEntry } from '../../src/cluster/store.js';

const P = '/sluice/';

function node(name: string, address: string, capacity = 100, joined = 1n): StoreEntry {
  const value = JSON.stringify({ name, address, tier: 'portable', capacity, version: '0', startedAt: 'x' });
  return { key: `${P}nodes/${name}`, value, modRevision: joined, createRevision: joined, lease: '7' };
}

function flow(name: string, body: Record<string, unknown>, rev = 2n): StoreEntry {
  return { key: `${P}flows/${name}`, value: JSON.stringify({ name, ...body }), modRevision: rev, createRevision: rev, lease: undefined };
}

const subs = ['10.9.0.1:7000', '10.9.0.2:7000', '10.9.0.3:7000', '10.9.0.4:7000', '10.9.0.5:7000', '10.9.0.6:7000'];
const ch1 = { ingest: { primary: 'a', backup: 'b', port: 5000, allow: '10.8.0.0/24' }, relayPort: 5001, subscribers: subs };

function view(entries: StoreEntry[]): StoreView {
  const v = new StoreView(P);
  v.load(entries, 10n);
  return v;
}

function nodesOf(v: StoreView) {
  return new Map(v.nodes().map((n) => [n.name, n]));
}

describe('cluster plan', () => {
  it('places subscribers on edges only, the active ingest feeds each edge once, an edge accepts only that ingest', () => {
    const v = view([node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('c', '10.0.0.3'), node('d', '10.0.0.4'), flow('ch1', ch1)]);
    const plan = planCluster(v.snapshot());
    const f = plan.flows[0]!;
    assert.equal(f.activeIngest, 'a');
    assert.equal(f.placement.size, 6);
    for (const n of f.placement.values()) assert.ok(n === 'c' || n === 'd', `placed on ${n}`);
    const a = localFlows(plan, 'a', nodesOf(v));
    assert.deepEqual(
      a.map((x) => x.name),
      [ingestFlowName('ch1')],
    );
    assert.deepEqual(
      a[0]!.to,
      f.edges.map((e) => `udp://10.0.0.${e === 'c' ? 3 : 4}:5001`),
    );
    assert.equal(a[0]!.listen, 'udp://10.0.0.1:5000');
    const b = localFlows(plan, 'b', nodesOf(v));
    assert.deepEqual(b[0]!.to, [], 'the standby backup feeds no one');
    for (const e of f.edges) {
      const [edge] = localFlows(plan, e, nodesOf(v));
      assert.equal(edge!.name, edgeFlowName('ch1'));
      assert.equal(edge!.allow, '10.0.0.1');
      const mine = [...f.placement].filter(([, n]) => n === e).map(([s]) => s);
      assert.deepEqual(edge!.to, mine);
    }
    // Every subscriber is in exactly one node's flows.
    const all = ['a', 'b', 'c', 'd'].flatMap((n) => localFlows(plan, n, nodesOf(v)).flatMap((x) => x.to as string[])).filter((t) => !t.includes('10.0.0.'));
    assert.deepEqual([...all].sort(), subs.map((s) => `udp://${s}`).sort());
  });

  it('the backup takes over when the primary is gone, and edges then accept only the backup', () => {
    const v = view([node('b', '10.0.0.2'), node('c', '10.0.0.3'), flow('ch1', ch1)]);
    const plan = planCluster(v.snapshot());
    assert.equal(plan.flows[0]!.activeIngest, 'b');
    assert.deepEqual(localFlows(plan, 'b', nodesOf(v))[0]!.to, ['udp://10.0.0.3:5001']);
    assert.equal(localFlows(plan, 'c', nodesOf(v))[0]!.allow, '10.0.0.2');
  });

  it('a primary that returns while the backup feeds does not take the flow back (no preemption)', () => {
    // b took over (its key is older than a's new one); a registered again at revision 9.
    const v = view([node('a', '10.0.0.1', 100, 9n), node('b', '10.0.0.2', 100, 3n), node('c', '10.0.0.3'), flow('ch1', ch1)]);
    const plan = planCluster(v.snapshot());
    assert.equal(plan.flows[0]!.activeIngest, 'b');
    assert.equal(localFlows(plan, 'c', nodesOf(v))[0]!.allow, '10.0.0.2');
    assert.deepEqual(localFlows(plan, 'a', nodesOf(v))[0]!.to, [], 'the returned primary stands by');
    // The backup's lease ends: the primary feeds again.
    v.apply({ type: 'delete', key: `${P}nodes/b`, modRevision: 11n });
    assert.equal(planCluster(v.snapshot()).flows[0]!.activeIngest, 'a');
    // Equal standing (both from the first read): the primary.
    assert.equal(planCluster(view([node('a', '10.0.0.1'), node('b', '10.0.0.2'), flow('ch1', ch1)]).snapshot()).flows[0]!.activeIngest, 'a');
  });

  it('an edge that leaves: only its subscribers move; with no edge left the ingest serves them itself', () => {
    const full = planCluster(view([node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('c', '10.0.0.3'), node('d', '10.0.0.4'), flow('ch1', ch1)]).snapshot());
    const noD = planCluster(view([node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('c', '10.0.0.3'), flow('ch1', ch1)]).snapshot());
    for (const [s, n] of full.flows[0]!.placement) if (n === 'c') assert.equal(noD.flows[0]!.placement.get(s), 'c', `${s} stays on c`);
    for (const n of noD.flows[0]!.placement.values()) assert.equal(n, 'c');
    const v = view([node('a', '10.0.0.1'), node('b', '10.0.0.2'), flow('ch1', ch1)]);
    const alone = planCluster(v.snapshot());
    const direct = ['a', 'b'].flatMap((n) => localFlows(alone, n, nodesOf(v)).flatMap((x) => x.to as string[]));
    assert.equal(direct.length, subs.length, 'the ingest nodes serve every subscriber directly');
  });

  it('no live ingest: nothing is placed and no edge runs', () => {
    const v = view([node('c', '10.0.0.3'), flow('ch1', ch1)]);
    const plan = planCluster(v.snapshot());
    assert.equal(plan.flows[0]!.activeIngest, undefined);
    assert.equal(plan.flows[0]!.placement.size, 0);
    assert.deepEqual(localFlows(plan, 'c', nodesOf(v)), []);
  });

  it('a flow asking for a port an older flow holds is refused whole', () => {
    const v = view([node('a', '10.0.0.1'), node('c', '10.0.0.3'), flow('ch1', ch1, 2n), flow('ch2', { ...ch1, relayPort: 5002 }, 3n)]);
    const plan = planCluster(v.snapshot());
    assert.deepEqual(
      plan.flows.map((f) => f.spec.name),
      ['ch1'],
    );
    assert.match(plan.refused[0]!.reason, /port 5000 is used by flow 'ch1'/);
    assert.equal(portIssues([checkClusterFlow({ name: 'ch2', ...ch1 })], [checkClusterFlow({ name: 'ch1', ...ch1 })]).length, 2);
  });

  it('values written by someone else: invalid ones are refused with a reason, the last valid version stays', () => {
    const v = view([node('a', '10.0.0.1'), node('c', '10.0.0.3'), flow('ch1', ch1), { ...flow('bad', {}), value: '{not json' }]);
    assert.match(v.refused()[0]!.reason, /not JSON/);
    const changed = v.apply({
      type: 'put',
      key: `${P}flows/ch1`,
      value: JSON.stringify({ name: 'ch1', ...ch1, bogus: 1 }),
      modRevision: 11n,
      createRevision: 2n,
    });
    assert.equal(changed, false);
    assert.match(v.refused().find((r) => r.key.endsWith('ch1'))!.reason, /unknown field 'bogus'/);
    assert.equal(planCluster(v.snapshot()).flows[0]!.spec.subscribers.length, 6, 'the valid version runs on');
    v.apply({ type: 'put', key: `${P}flows/x`, value: JSON.stringify({ name: 'y', ...ch1 }), modRevision: 12n, createRevision: 12n });
    assert.match(v.refused().find((r) => r.key.endsWith('/x'))!.reason, /differs from the key/);
    v.apply({
      type: 'put',
      key: `${P}nodes/z`,
      value: JSON.stringify({ name: 'z', address: 'nowhere', tier: 'portable', capacity: 1, version: '0', startedAt: 'x' }),
      modRevision: 13n,
      createRevision: 13n,
    });
    assert.equal(v.hasNode('z'), false);
    v.apply({ type: 'put', key: `${P}unrelated/thing`, value: 'anything', modRevision: 14n, createRevision: 14n });
    assert.equal(v.refused().length, 4, "bad, ch1, x and node z: the unrelated key is not the cluster's");
  });

  it('cluster URLs', () => {
    assert.deepEqual(parseClusterUrl('etcd://10.0.0.1:2379,10.0.0.2'), { ok: true, url: { endpoints: ['10.0.0.1:2379', '10.0.0.2:2379'] } });
    assert.deepEqual(parseClusterUrl('etcd://[::1]:2380'), { ok: true, url: { endpoints: ['[::1]:2380'] } });
    for (const bad of ['http://x:1', 'etcd://', 'etcd://h:0', 'etcd://h:99999', 'etcd://::1:2379', 'etcd://a b'])
      assert.equal(parseClusterUrl(bad).ok, false, bad);
  });
});
