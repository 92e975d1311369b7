/**
 * Subscriber placement (src/cluster/placement.ts): the guarantees its file
 * comment states, as unit and property tests. Pure computation, no I/O.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { placeSubscribers, type PlacementFlow, type PlacementNode, type PlacementResult } from '../../src/cluster/placement.js';
import { InvalidArgumentError } from '../../src/errors.js';

/** The result as plain sorted data, so that two results compare regardless of Map insertion order. */
function plain(r: PlacementResult): { byFlow: [string, [string, string][]][]; load: [string, number][]; unplaced: number } {
  const byFlow = [...r.byFlow].map(([f, m]) => [f, [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1))] as [string, [string, string][]]);
  byFlow.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const load = [...r.load].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return { byFlow, load, unplaced: r.unplaced };
}

/** max over nodes of load/capacity, and the capacity-weighted mean T/C. */
function ratios(r: PlacementResult, nodes: readonly PlacementNode[]): { max: number; mean: number } {
  let total = 0;
  let cap = 0;
  let max = 0;
  for (const n of nodes) {
    const l = r.load.get(n.name)!;
    total += l;
    cap += n.capacity;
    max = Math.max(max, l / n.capacity);
  }
  return { max, mean: total / cap };
}

function movedBetween(a: PlacementResult, b: PlacementResult): { moved: Set<string>; from: Map<string, string>; to: Map<string, string> } {
  const moved = new Set<string>();
  const from = new Map<string, string>();
  const to = new Map<string, string>();
  for (const [flow, subs] of a.byFlow) {
    for (const [s, node] of subs) {
      const now = b.byFlow.get(flow)?.get(s);
      if (now !== node) {
        const key = `${flow}/${s}`;
        moved.add(key);
        from.set(key, node);
        if (now !== undefined) to.set(key, now);
      }
    }
  }
  return { moved, from, to };
}

const nodeArb = fc
  .uniqueArray(fc.record({ name: fc.string({ minLength: 1, maxLength: 4 }), capacity: fc.integer({ min: 1, max: 20 }) }), {
    selector: (n) => n.name,
    minLength: 1,
    maxLength: 12,
  })
  .map((ns) => ns as PlacementNode[]);

function flowsArb(nodeNames: fc.Arbitrary<string>): fc.Arbitrary<PlacementFlow[]> {
  return fc.uniqueArray(
    fc.record({
      name: fc.string({ minLength: 1, maxLength: 4 }),
      subscribers: fc.array(fc.string({ minLength: 1, maxLength: 6 }), { maxLength: 40 }),
      weight: fc.constantFrom(1, 1, 2, 3, 0.5),
      exclude: fc.array(nodeNames, { maxLength: 2 }),
    }),
    { selector: (f) => f.name, maxLength: 12 },
  );
}

const scenarioArb = nodeArb.chain((nodes) =>
  fc.record({ nodes: fc.constant(nodes), flows: flowsArb(fc.oneof(fc.constantFrom(...nodes.map((n) => n.name)), fc.constant('gone'))) }),
);

/** A seeded cluster of `nodeCount` equal nodes and `flowCount` flows of 10–50 subscribers, no exclusions. */
function cluster(nodeCount: number, flowCount: number): { nodes: PlacementNode[]; flows: PlacementFlow[] } {
  const nodes = Array.from({ length: nodeCount }, (_, i) => ({ name: `n${i}`, capacity: 100 + (i % 3) * 100 }));
  let seed = 7;
  const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  let sub = 0;
  const flows = Array.from({ length: flowCount }, (_, f) => ({
    name: `f${f}`,
    subscribers: Array.from({ length: 10 + Math.floor(next() * 41) }, () => `s${sub++}`),
  }));
  return { nodes, flows };
}

describe('cluster placement', () => {
  it('places nothing and counts every distinct subscriber as unplaced when there are no nodes', () => {
    const r = placeSubscribers(
      [],
      [
        { name: 'a', subscribers: ['x', 'y', 'x'] },
        { name: 'b', subscribers: ['x'] },
      ],
    );
    assert.equal(r.unplaced, 3);
    assert.equal(r.load.size, 0);
    assert.deepEqual([...r.byFlow.keys()].sort(), ['a', 'b']);
    for (const m of r.byFlow.values()) assert.equal(m.size, 0);
  });

  it('refuses a capacity ≤ 0, a weight ≤ 0 and names given twice', () => {
    assert.throws(() => placeSubscribers([{ name: 'a', capacity: 0 }], []), InvalidArgumentError);
    assert.throws(() => placeSubscribers([{ name: 'a', capacity: 1 }], [{ name: 'f', subscribers: [], weight: 0 }]), InvalidArgumentError);
    assert.throws(
      () =>
        placeSubscribers(
          [
            { name: 'a', capacity: 1 },
            { name: 'a', capacity: 2 },
          ],
          [],
        ),
      InvalidArgumentError,
    );
    assert.throws(
      () =>
        placeSubscribers(
          [{ name: 'a', capacity: 1 }],
          [
            { name: 'f', subscribers: [] },
            { name: 'f', subscribers: [] },
          ],
        ),
      InvalidArgumentError,
    );
  });

  it('places every distinct subscriber once on a given node, and load is the sum of their weights', () => {
    fc.assert(
      fc.property(scenarioArb, ({ nodes, flows }) => {
        const r = placeSubscribers(nodes, flows);
        const names = new Set(nodes.map((n) => n.name));
        const expected = new Map(nodes.map((n) => [n.name, 0]));
        for (const f of flows) {
          const m = r.byFlow.get(f.name)!;
          assert.equal(m.size, new Set(f.subscribers).size);
          for (const [s, node] of m) {
            assert.ok(f.subscribers.includes(s));
            assert.ok(names.has(node));
            expected.set(node, expected.get(node)! + (f.weight ?? 1));
          }
        }
        assert.equal(r.unplaced, 0);
        for (const [n, l] of expected) assert.ok(Math.abs(r.load.get(n)! - l) < 1e-9, `load of ${n}`);
      }),
    );
  });

  it('gives the same result whatever the order of nodes, flows, subscribers and exclusions', () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer(), ({ nodes, flows }, seed) => {
        const shuffle = <T>(xs: readonly T[], salt: number): T[] =>
          xs
            .map((x, i) => ({ x, k: Math.imul((i + 1) * 2654435761, seed ^ salt) >>> 0 }))
            .sort((a, b) => a.k - b.k)
            .map((e) => e.x);
        const again = shuffle(flows, 1).map((f, i) => ({
          ...f,
          subscribers: shuffle(f.subscribers, i + 2),
          exclude: shuffle(f.exclude ?? [], i + 3),
        }));
        assert.deepEqual(plain(placeSubscribers(shuffle(nodes, 0), again)), plain(placeSubscribers(nodes, flows)));
      }),
    );
  });

  it('keeps every node within (1 + balance) × capacity × mean whenever the stated condition holds, and within one weight over it always', () => {
    fc.assert(
      fc.property(scenarioArb, fc.constantFrom(0, 0.05, 0.1, 0.5), ({ nodes, flows }, balance) => {
        const noExclusions = flows.map((f) => ({ ...f, exclude: [] }));
        const r = placeSubscribers(nodes, noExclusions, { balance });
        const { max, mean } = ratios(r, nodes);
        const total = mean * nodes.reduce((a, n) => a + n.capacity, 0);
        const wMax = Math.max(0, ...flows.filter((f) => f.subscribers.length > 0).map((f) => f.weight ?? 1));
        const bound = (1 + balance) * mean;
        if (balance * total >= (nodes.length - 1) * wMax) assert.ok(max <= bound * (1 + 1e-9), `max ${max} over bound ${bound}`);
        const minCap = Math.min(...nodes.map((n) => n.capacity));
        assert.ok(max <= (bound + wMax / minCap) * (1 + 1e-9), `max ${max} over bound ${bound} + one weight`);
      }),
    );
  });

  it('stays within 1.1 × the mean at scale, with exclusions, and keeps small flows on few nodes', () => {
    const { nodes, flows } = cluster(40, 2000);
    const withIngest = flows.map((f, i) => ({ ...f, exclude: [`n${i % 40}`, `n${(i * 7 + 3) % 40}`] }));
    const r = placeSubscribers(nodes, withIngest);
    const { max, mean } = ratios(r, nodes);
    assert.ok(max <= 1.1 * mean * (1 + 1e-9), `max/mean ${max / mean}`);
    let hops = 0;
    for (const [i, f] of withIngest.entries()) {
      const used = new Set(r.byFlow.get(f.name)!.values());
      hops += used.size;
      assert.ok(!used.has(`n${i % 40}`) && !used.has(`n${(i * 7 + 3) % 40}`), `flow ${f.name} on an excluded node`);
    }
    // Groups of 16: a 10–50 subscriber flow has 1–4 groups; bounded loads may split a group once in a while.
    assert.ok(hops / flows.length < 3.5, `hop streams per flow ${hops / flows.length}`);
    const spread = placeSubscribers(nodes, withIngest, { groupSize: 1 });
    let spreadHops = 0;
    for (const m of spread.byFlow.values()) spreadHops += new Set(m.values()).size;
    assert.ok(spreadHops > 2 * hops, `grouping saves hop streams: ${hops} vs ${spreadHops} without`);
  });

  it('avoids excluded nodes while another is live, and uses them when every live node is excluded', () => {
    fc.assert(
      fc.property(scenarioArb, ({ nodes, flows }) => {
        const r = placeSubscribers(nodes, flows);
        for (const f of flows) {
          const ex = new Set(f.exclude);
          if (nodes.every((n) => ex.has(n.name))) continue;
          for (const node of r.byFlow.get(f.name)!.values()) assert.ok(!ex.has(node), `${f.name} placed on excluded ${node}`);
        }
      }),
    );
    const all = placeSubscribers(
      [
        { name: 'a', capacity: 1 },
        { name: 'b', capacity: 1 },
      ],
      [{ name: 'f', subscribers: ['1', '2', '3'], exclude: ['a', 'b'] }],
    );
    assert.equal(all.byFlow.get('f')!.size, 3);
  });

  it('moves exactly the leaving node’s subscribers, and on a join only subscribers onto the new node, while no bound binds', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), ({ nodes, flows }, pick) => {
        const unbounded = { balance: 1e9 };
        const before = placeSubscribers(nodes, flows, unbounded);
        const gone = nodes[pick % nodes.length]!.name;
        const after = placeSubscribers(
          nodes.filter((n) => n.name !== gone),
          flows,
          unbounded,
        );
        const leave = movedBetween(before, after);
        for (const key of leave.moved) assert.equal(leave.from.get(key), gone);
        let had = 0;
        for (const m of before.byFlow.values()) for (const n of m.values()) if (n === gone) had++;
        // Unless the leaving node was the last one, all of its subscribers find a new node.
        assert.equal(leave.to.size, nodes.length > 1 ? had : 0);

        const joined = placeSubscribers([...nodes, { name: 'joiner!', capacity: 5 }], flows, unbounded);
        const join = movedBetween(before, joined);
        for (const key of join.moved) assert.equal(join.to.get(key), 'joiner!');
      }),
    );
  });

  it('a node every flow excludes (a dedicated ingest) moves no subscriber by joining or leaving, bounds binding or not', () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 1, max: 50 }), fc.constantFrom(0, 0.1, 1e9), ({ nodes, flows }, capacity, balance) => {
        // A flow excluding every other live node would fall back to using all of them, the newcomer included.
        fc.pre(flows.every((f) => !nodes.every((n) => f.exclude?.includes(n.name))));
        const ingest = { name: 'ingest!', capacity };
        const excluding = flows.map((f) => ({ ...f, exclude: [...(f.exclude ?? []), ingest.name] }));
        const without = placeSubscribers(nodes, excluding, { balance });
        const withIt = placeSubscribers([...nodes, ingest], excluding, { balance });
        assert.equal(movedBetween(without, withIt).moved.size, 0);
        assert.equal(withIt.load.get(ingest.name), 0);
      }),
    );
    // The cluster lab's case: six subscribers on two edges, primary and backup ingest excluded; the primary returning moved two.
    const subscribers = [6000, 6001, 6002, 6003, 6004, 6005].map((p) => `udp://10.210.30.2:${p}`);
    const flow = [{ name: 'ch1', subscribers, exclude: ['n1', 'n2'] }];
    const node = (name: string): PlacementNode => ({ name, capacity: 1 });
    const before = placeSubscribers([node('n2'), node('n3'), node('n4')], flow);
    const after = placeSubscribers([node('n1'), node('n2'), node('n3'), node('n4')], flow);
    assert.deepEqual(plain(after).byFlow, plain(before).byFlow);
    assert.deepEqual(new Set(before.byFlow.get('ch1')!.values()), new Set(['n3', 'n4']));
  });

  it('moves few more than the minimum on a leave and a join when bounds bind (40 nodes, 2,000 flows)', () => {
    const { nodes, flows } = cluster(40, 2000);
    const before = placeSubscribers(nodes, flows);
    const after = placeSubscribers(nodes.slice(1), flows);
    const leave = movedBetween(before, after);
    const minimum = [...leave.from.values()].filter((n) => n === nodes[0]!.name).length;
    assert.ok(minimum > 0);
    assert.ok(leave.moved.size <= 1.5 * minimum, `leave moved ${leave.moved.size} for a minimum of ${minimum}`);
    const joined = placeSubscribers([...nodes, { name: 'new', capacity: 200 }], flows);
    const join = movedBetween(before, joined);
    const onNew = [...join.to.values()].filter((n) => n === 'new').length;
    assert.ok(onNew > 0);
    assert.ok(join.moved.size <= 1.5 * onNew, `join moved ${join.moved.size} for a minimum of ${onNew}`);
  });

  it('adding a subscriber to a flow moves no other subscriber while the flow keeps its group count and no bound binds', () => {
    const nodes = Array.from({ length: 8 }, (_, i) => ({ name: `n${i}`, capacity: 10 }));
    const subs = Array.from({ length: 30 }, (_, i) => `10.0.0.${i}:5000`);
    const before = placeSubscribers(nodes, [{ name: 'ch', subscribers: subs }], { balance: 1e9 });
    const after = placeSubscribers(nodes, [{ name: 'ch', subscribers: [...subs, '10.0.0.99:5000'] }], { balance: 1e9 });
    for (const [s, n] of before.byFlow.get('ch')!) assert.equal(after.byFlow.get('ch')!.get(s), n, s);
    assert.ok(new Set(after.byFlow.get('ch')!.values()).size <= 2, 'two groups of 16 use at most two nodes');
  });

  it('balances by load: a heavy flow counts its weight per subscriber', () => {
    const nodes = Array.from({ length: 4 }, (_, i) => ({ name: `n${i}`, capacity: 1 }));
    const heavy = { name: 'hd', subscribers: Array.from({ length: 100 }, (_, i) => `h${i}`), weight: 4 };
    const light = { name: 'sd', subscribers: Array.from({ length: 400 }, (_, i) => `l${i}`) };
    const r = placeSubscribers(nodes, [heavy, light]);
    const total = [...r.load.values()].reduce((a, b) => a + b, 0);
    assert.equal(total, 800);
    for (const l of r.load.values()) assert.ok(l <= 1.1 * 200 + 1e-9, `load ${l}`);
  });
});
