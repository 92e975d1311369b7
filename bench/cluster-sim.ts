/**
 * Cluster placement at scale (issue 21), simulated: no network, no etcd.
 * Builds 100 nodes and 10,000 flows (most 10–50 subscribers, ten of
 * 10,000, a few heavier flows, each flow excluding its two ingest nodes),
 * runs src/cluster/placement.ts, then fails one node and joins one node and
 * counts what moved against the minimum that has to move. The etcd traffic
 * per change is counted from the design (/work/coord/i21-design.md: no
 * leader, every node watches the whole prefix), not measured.
 *
 *   node --import tsx bench/cluster-sim.ts [--quick] [--write]
 *
 * --quick: fewer failure/join trials and no group-size comparison;
 * --write: also writes the report to bench/results/<time>-cluster-sim.md.
 * Everything is seeded: two runs give the same counts (times differ).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { placeSubscribers, type PlacementFlow, type PlacementNode, type PlacementResult } from '../src/cluster/placement.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const write = args.has('--write');

/** mulberry32: a small seeded generator, so every run builds the same cluster. */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NODE_COUNT = 100;
const FLOW_COUNT = 10_000;
const BIG_FLOWS = 10;
const BIG_SIZE = 10_000;

/** Capacities: uniform, or mixed as a cluster of three machine sizes (ratio 1 : 2 : 4). */
function makeNodes(mixed: boolean): PlacementNode[] {
  const sizes = [2000, 4000, 8000];
  return Array.from({ length: NODE_COUNT }, (_, i) => ({
    name: `node-${String(i).padStart(3, '0')}`,
    capacity: mixed ? sizes[i % 3]! : 4000,
  }));
}

function makeFlows(nodes: readonly PlacementNode[]): PlacementFlow[] {
  const rnd = generator(21);
  const flows: PlacementFlow[] = [];
  let next = 0;
  for (let f = 0; f < FLOW_COUNT; f++) {
    const size = f < BIG_FLOWS ? BIG_SIZE : 10 + Math.floor(rnd() * 41);
    // One flow in 20 is a heavier channel (e.g. 20 Mbit/s against 5): weight 4.
    const weight = f >= BIG_FLOWS && rnd() < 0.05 ? 4 : 1;
    const primary = nodes[Math.floor(rnd() * nodes.length)]!.name;
    const backup = nodes[Math.floor(rnd() * nodes.length)]!.name;
    const subscribers: string[] = [];
    for (let s = 0; s < size; s++, next++) subscribers.push(`10.${(next >>> 16) & 255}.${(next >>> 8) & 255}.${next & 255}:6000`);
    flows.push({ name: `ch${f}`, subscribers, weight, exclude: [primary, backup] });
  }
  return flows;
}

function timed(nodes: readonly PlacementNode[], flows: readonly PlacementFlow[], groupSize: number): { result: PlacementResult; ms: number } {
  const t0 = performance.now();
  const result = placeSubscribers(nodes, flows, { groupSize });
  return { result, ms: performance.now() - t0 };
}

/** max over nodes of (load / capacity) ÷ (total load / total capacity). */
function balanceOf(result: PlacementResult, nodes: readonly PlacementNode[]): number {
  const cap = new Map(nodes.map((n) => [n.name, n.capacity]));
  let total = 0;
  let totalCap = 0;
  let max = 0;
  for (const [name, l] of result.load) {
    total += l;
    totalCap += cap.get(name)!;
    max = Math.max(max, l / cap.get(name)!);
  }
  return max / (total / totalCap);
}

/** Distinct (flow, node) pairs: one ingest → edge hop stream each. */
function hopStreams(result: PlacementResult): Set<string> {
  const pairs = new Set<string>();
  for (const [flow, subs] of result.byFlow) for (const node of new Set(subs.values())) pairs.add(`${flow}\u0000${node}`);
  return pairs;
}

interface Change {
  moved: number;
  minimum: number;
  hopChanges: number;
  nodesTouched: number;
  ms: number;
}

/** Subscribers present before and after whose node differs; `minimum` is filled by the caller. */
function compare(before: PlacementResult, after: PlacementResult): Omit<Change, 'minimum' | 'ms'> {
  let moved = 0;
  const touched = new Set<string>();
  for (const [flow, subs] of before.byFlow) {
    const now = after.byFlow.get(flow)!;
    for (const [s, node] of subs) {
      const n = now.get(s);
      if (n !== node) {
        moved++;
        touched.add(node);
        if (n !== undefined) touched.add(n);
      }
    }
  }
  const a = hopStreams(before);
  const b = hopStreams(after);
  let hopChanges = 0;
  for (const p of a) if (!b.has(p)) hopChanges++;
  for (const p of b) if (!a.has(p)) hopChanges++;
  return { moved, hopChanges, nodesTouched: touched.size };
}

function countOn(result: PlacementResult, node: string): number {
  let n = 0;
  for (const subs of result.byFlow.values()) for (const v of subs.values()) if (v === node) n++;
  return n;
}

interface Variant {
  label: string;
  mixed: boolean;
  groupSize: number;
  trials: number;
}

interface VariantReport {
  variant: Variant;
  subscribers: number;
  totalLoad: number;
  balance: number;
  hops: number;
  ms: number[];
  leaves: Change[];
  joins: Change[];
}

function runVariant(variant: Variant): VariantReport {
  const nodes = makeNodes(variant.mixed);
  const flows = makeFlows(nodes);
  const base = timed(nodes, flows, variant.groupSize);
  const ms = [base.ms];
  const leaves: Change[] = [];
  const joins: Change[] = [];
  for (let t = 0; t < variant.trials; t++) {
    // Leave: a node spread over the name order; its subscribers must move, anything else is extra.
    const gone = nodes[Math.floor((t * NODE_COUNT) / variant.trials)]!.name;
    const left = timed(
      nodes.filter((n) => n.name !== gone),
      flows,
      variant.groupSize,
    );
    ms.push(left.ms);
    leaves.push({ ...compare(base.result, left.result), minimum: countOn(base.result, gone), ms: left.ms });
    // Join: a new node of the middle size; what it ends up holding had to move, anything else is extra.
    const added = `node-new-${t}`;
    const joined = timed([...nodes, { name: added, capacity: 4000 }], flows, variant.groupSize);
    ms.push(joined.ms);
    joins.push({ ...compare(base.result, joined.result), minimum: countOn(joined.result, added), ms: joined.ms });
  }
  let subscribers = 0;
  let totalLoad = 0;
  for (const f of flows) {
    subscribers += f.subscribers.length;
    totalLoad += f.subscribers.length * (f.weight ?? 1);
  }
  return { variant, subscribers, totalLoad, balance: balanceOf(base.result, nodes), hops: hopStreams(base.result).size, ms, leaves, joins };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (x: number, d = 0): string => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

function changeRow(kind: string, cs: readonly Change[]): string {
  const ratios = cs.map((c) => c.moved / Math.max(1, c.minimum));
  return (
    `| ${kind} | ${cs.length} | ${fmt(median(cs.map((c) => c.moved)))} | ${fmt(median(cs.map((c) => c.minimum)))} | ` +
    `${fmt(median(ratios), 2)} (${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}) | ` +
    `${fmt(median(cs.map((c) => c.hopChanges)))} | ${fmt(median(cs.map((c) => c.nodesTouched)))} |`
  );
}

function report(runs: readonly VariantReport[]): string {
  const lines: string[] = [];
  const first = runs[0]!;
  lines.push(`# Cluster placement simulation (issue 21), ${new Date().toISOString()}`, '');
  lines.push(
    `Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length} cores, Node ${process.version}, load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(
        ' / ',
      )} at the end (other work on the host slows the compute times). Command: \`node --import tsx bench/cluster-sim.ts${quick ? ' --quick' : ''}\`.`,
  );
  lines.push(
    '',
    `Cluster: ${NODE_COUNT} nodes, ${fmt(FLOW_COUNT)} flows (${BIG_FLOWS} of ${fmt(BIG_SIZE)} subscribers, the rest 10–50; 1 in 20 of weight 4; each excludes 2 ingest nodes), ` +
      `${fmt(first.subscribers)} subscribers, total load ${fmt(first.totalLoad)}. Mixed capacities: 2,000 / 4,000 / 8,000 in turn. Balance slack 0.1.`,
    '',
  );
  lines.push(
    '## Placement',
    '',
    '| variant | group size | balance max ÷ mean | hop streams | hop streams ÷ flows | compute ms (median, max) |',
    '|---|---|---|---|---|---|',
  );
  for (const r of runs) {
    lines.push(
      `| ${r.variant.label} | ${r.variant.groupSize} | ${fmt(r.balance, 3)} | ${fmt(r.hops)} | ${fmt(r.hops / FLOW_COUNT, 2)} | ${fmt(median(r.ms))}, ${fmt(Math.max(...r.ms))} |`,
    );
  }
  lines.push('', '## Movement', '');
  lines.push(
    'Moved = subscribers whose node differs after the change. Minimum: leave = the subscribers the leaving node had; join = what the new node ends up holding.',
  );
  lines.push('Hop changes = (flow, node) hop streams added plus removed; nodes touched = nodes that lose or gain a subscriber.', '');
  for (const r of runs) {
    lines.push(`### ${r.variant.label}, group size ${r.variant.groupSize}`, '');
    lines.push(
      '| change | trials | moved (median) | minimum (median) | moved ÷ minimum, median (min–max) | hop changes | nodes touched |',
      '|---|---|---|---|---|---|---|',
    );
    lines.push(changeRow('one node leaves', r.leaves), changeRow('one node joins', r.joins), '');
  }
  lines.push(...etcdSection(median(first.ms)));
  return lines.join('\n') + '\n';
}

/** etcd traffic per change, counted from the design: every live node watches the whole prefix. */
function etcdSection(placeMs: number): string[] {
  const n = NODE_COUNT;
  const ttl = 5;
  return [
    '## etcd per change (counted from the design, N = ' + n + ' nodes, lease TTL ' + ttl + ' s)',
    '',
    '| change | etcd writes (raft proposals) | keys changed | watch events delivered | placements recomputed |',
    '|---|---|---|---|---|',
    `| node leaves (lease expires) | 1 (the expiry revokes the lease; both keys go in one revision) | 2 (node key + gateway key) | ${2 * (n - 1)} (2 × ${n - 1} live nodes, in ${n - 1} watch responses) | ${n - 1} × ${fmt(placeMs)} ms |`,
    `| node joins | 3 (lease grant, node key, gateway key) | 2 | ${2 * (n - 1)} to the others (the joiner reads one snapshot, then watches) | ${n} |`,
    `| one flow added, changed or deleted | 1 | 1 | ${n} (1 × ${n} live nodes) | ${n} |`,
    `| apply of all ${fmt(FLOW_COUNT)} flows, one put each | ${fmt(FLOW_COUNT)} | ${fmt(FLOW_COUNT)} | ${fmt(FLOW_COUNT * n)} | up to ${fmt(FLOW_COUNT * n)} unless each node coalesces a burst of events into one recomputation |`,
    '',
    `Steady state: ${n} lease keep-alives every ${fmt(ttl / 3, 2)} s (TTL / 3, src/cluster/etcd-store.ts) = ${fmt(n / (ttl / 3))} per second; ` +
      'etcd 3.x serves them on the leader without a raft write (unless lease checkpointing is on); no watch events.',
    '',
  ];
}

const variants: Variant[] = [
  { label: 'uniform capacity', mixed: false, groupSize: 16, trials: quick ? 2 : 5 },
  { label: 'mixed capacity', mixed: true, groupSize: 16, trials: quick ? 2 : 5 },
];
if (!quick) {
  variants.push({ label: 'mixed, no grouping', mixed: true, groupSize: 1, trials: 3 });
  variants.push({ label: 'mixed, larger groups', mixed: true, groupSize: 32, trials: 3 });
}
const runs = variants.map((v) => {
  process.stderr.write(`cluster-sim: ${v.label}, group size ${v.groupSize}\n`);
  return runVariant(v);
});
const text = report(runs);
process.stdout.write(text);
if (write) {
  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', 'T');
  const file = new URL(`results/${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6)}-cluster-sim.md`, import.meta.url);
  writeFileSync(file, text);
  process.stderr.write(`cluster-sim: wrote ${file.pathname}\n`);
}
