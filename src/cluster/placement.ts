/**
 * Subscriber placement for the cluster (issue 21): which live node serves
 * each subscriber of each flow. Every node computes it from the same store
 * snapshot with no leader, so it is a pure function: no I/O, no randomness,
 * and the answer does not depend on the order of `nodes`, `flows` or a
 * flow's `subscribers` (everything is keyed by name and sorted here).
 *
 * Algorithm, and why:
 *  1. Groups. Each (flow, node) pair with a subscriber costs one ingest →
 *     edge hop stream, so a flow's subscribers are kept together: a flow of
 *     total load L is cut into G = ceil(L / groupSize) groups (at most one
 *     per subscriber) and a subscriber joins group jump(hash(subscriber), G)
 *     (jump consistent hash, Lamping & Veach 2014): when the flow grows from
 *     G to G + 1 groups only about 1/(G + 1) of its subscribers change group.
 *     A group shares one node ranking, so a 20-subscriber flow uses one or
 *     two nodes instead of twenty, and a 10,000-subscriber one still spreads
 *     over the cluster (no single node carries a whole big channel).
 *  2. Ranking. Weighted rendezvous hashing (Schindelhauer & Schomaker 2005):
 *     node n scores capacity(n) / -ln(u(group, n)), u uniform in (0, 1) from
 *     a hash; the highest score is the group's first choice. Node n is first
 *     with probability capacity(n) / total capacity, and removing a node only
 *     changes the first choice of the groups that ranked it first (no ring,
 *     no virtual nodes to tune, and no state).
 *  3. Bounded loads (Mirrokni, Thorup & Zadimoghaddam 2016): every node has
 *     the bound (1 + balance) × capacity × totalLoad / totalCapacity, where
 *     totalCapacity counts the nodes some flow may use (a node that every
 *     flow excludes carries nothing, and its join or leave moves no one).
 *     Subscribers are taken in a fixed order (groups by hash, then a group's
 *     subscribers by (hash, name); the order depends only on the flows, never on
 *     the nodes) and each goes to the first node of its group's ranking
 *     whose load stays within its bound. The order being independent of
 *     the node set is what keeps a join or a leave from reshuffling
 *     everything: only subscribers whose earlier path changed can move.
 *  4. Exclusion: a flow's `exclude` nodes (its ingest nodes) are skipped
 *     unless every live node is excluded, in which case none is.
 *  5. Overflow: if no allowed node has room (tiny inputs, or one subscriber
 *     weighing more than the slack), the subscriber goes to the allowed node
 *     with the lowest (load + weight) / capacity, earlier in the ranking on
 *     a tie; the bound is then exceeded by at most that one weight.
 *
 * Guarantees (placement.test.ts checks each):
 *  - Deterministic: same sets of nodes, flows and subscribers → same result.
 *  - Balance: max over nodes of (load / capacity) ≤ (1 + balance) × totalLoad /
 *    totalCapacity whenever (1 + balance) × (1 − x) × T ≥ T + (n − 1) × w,
 *    with T the total load, n the node count, w the largest weight and x the
 *    largest capacity share any flow excludes (with x = 0: balance × T ≥
 *    (n − 1) × w), n and totalCapacity over the nodes some flow may use.
 *    That holds at scale (100 nodes, 10 % slack: T ≥ ~1,300 w).
 *  - A node that every flow excludes joining or leaving moves no
 *    subscriber, whether bounds bind or not.
 *  - Movement: when no node reaches its bound (before and after the change),
 *    this is plain rendezvous hashing and a leave moves exactly the leaving
 *    node's subscribers, a join moves only subscribers onto the new node.
 *    When bounds bind, a subscriber on a surviving node can move too (its
 *    first choice gained or lost room); bench/cluster-sim.ts measures how
 *    many against that minimum.
 */
import { InvalidArgumentError } from '../errors.js';

export interface PlacementNode {
  readonly name: string;
  /** Load units this node takes at its fair share (> 0); only ratios between nodes matter. */
  readonly capacity: number;
}

export interface PlacementFlow {
  readonly name: string;
  readonly subscribers: readonly string[];
  /** Load per subscriber (> 0), default 1. */
  readonly weight?: number;
  /** Nodes not to use for this flow's subscribers unless no other node is live (its ingest nodes). */
  readonly exclude?: readonly string[];
}

export interface PlacementResult {
  /** flow → subscriber → node; every flow given is present (empty map when nothing is placed). */
  readonly byFlow: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /** node → placed load; every node present, 0 if none. */
  readonly load: ReadonlyMap<string, number>;
  /** Subscribers with no node (only when there are no nodes). */
  readonly unplaced: number;
}

export interface PlacementOptions {
  /** Slack over the capacity-weighted mean load (epsilon), ≥ 0; default 0.1. */
  readonly balance?: number;
  /** Target load per group of a flow's subscribers kept on one node, ≥ 1; default 16 (see the file comment). */
  readonly groupSize?: number;
}

export const DEFAULT_BALANCE = 0.1;
export const DEFAULT_GROUP_SIZE = 16;

/** murmur3's 32-bit finalizer: full avalanche, so nearby inputs give unrelated outputs. */
function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over the UTF-16 code units, then fmix32 (FNV alone mixes its last characters poorly). */
function hashString(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** Two hashes into one, asymmetric, so (a, b) and (b, a) differ. */
function combine(a: number, b: number): number {
  return fmix32((Math.imul(a ^ 0x9e3779b9, 0xcc9e2d51) + fmix32((b + 0x7f4a7c15) >>> 0)) >>> 0);
}

// Separate seeds so a subscriber string that equals a flow or node name does not hash alike.
const SEED_FLOW = 0x2545f491;
const SEED_NODE = 0x6c8e9cf5;
const SEED_SUBSCRIBER = 0x1b873593;

/**
 * Jump consistent hash (Lamping & Veach 2014) driven by a 32-bit generator
 * seeded from the key instead of their 64-bit LCG: the algorithm only needs
 * a reproducible uniform sequence per key. Returns a bucket in [0, buckets).
 */
function jumpBucket(key: number, buckets: number): number {
  let state = key >>> 0;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    state = (state + 0x6d2b79f5) >>> 0; // mulberry32 step
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967296; // (0, 1]
    j = Math.floor((b + 1) / r);
  }
  return b;
}

interface Group {
  readonly flow: number;
  readonly hash: number;
  readonly bucket: number;
  /** Indexes into the flow's sorted subscriber list. */
  readonly members: number[];
}

interface PreparedFlow {
  readonly name: string;
  /** Distinct, sorted by (hash, name). */
  readonly subscribers: string[];
  /** hashString(subscriber) per subscriber. */
  readonly hashes: Uint32Array;
  readonly weight: number;
  /** Per node (sorted order): 1 if excluded for this flow. */
  readonly excluded: Uint8Array | undefined;
  /** Per subscriber: the node index it got, −1 before placement. */
  readonly placed: Int32Array;
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function checkNodes(nodes: readonly PlacementNode[]): PlacementNode[] {
  const sorted = [...nodes].sort((a, b) => byString(a.name, b.name));
  for (let i = 0; i < sorted.length; i++) {
    const n = sorted[i]!;
    if (!(Number.isFinite(n.capacity) && n.capacity > 0)) throw new InvalidArgumentError(`placement: node ${n.name} needs a capacity > 0, got ${n.capacity}`);
    if (i > 0 && sorted[i - 1]!.name === n.name) throw new InvalidArgumentError(`placement: node ${n.name} is given twice`);
  }
  return sorted;
}

function prepareFlows(flows: readonly PlacementFlow[], nodeIndex: ReadonlyMap<string, number>, nodeCount: number): PreparedFlow[] {
  const sorted = [...flows].sort((a, b) => byString(a.name, b.name));
  return sorted.map((f, i) => {
    if (i > 0 && sorted[i - 1]!.name === f.name) throw new InvalidArgumentError(`placement: flow ${f.name} is given twice`);
    const weight = f.weight ?? 1;
    if (!(Number.isFinite(weight) && weight > 0)) throw new InvalidArgumentError(`placement: flow ${f.name} needs a weight > 0, got ${weight}`);
    // Sorted by (hash, string): numeric compares are cheaper than string ones on 10^5 subscribers.
    const unique = [...new Set(f.subscribers)];
    const unsorted = Uint32Array.from(unique, (sub) => hashString(sub, SEED_SUBSCRIBER));
    const order = new Int32Array(unique.length).map((_, i) => i);
    order.sort((a, b) => unsorted[a]! - unsorted[b]! || byString(unique[a]!, unique[b]!));
    const subscribers = Array.from(order, (i) => unique[i]!);
    const hashes = Uint32Array.from(order, (i) => unsorted[i]!);
    let excluded: Uint8Array | undefined;
    let count = 0;
    for (const name of f.exclude ?? []) {
      const n = nodeIndex.get(name);
      if (n === undefined) continue; // an excluded node that is not live changes nothing
      excluded ??= new Uint8Array(nodeCount);
      if (excluded[n] === 0) count++;
      excluded[n] = 1;
    }
    // Every live node excluded: the rule yields ("unless no other node is live").
    if (count === nodeCount) excluded = undefined;
    return { name: f.name, subscribers, hashes, weight, excluded, placed: new Int32Array(subscribers.length).fill(-1) };
  });
}

/** A flow's groups: G = ceil(load / groupSize), capped at one per subscriber; members by jump hash. */
function groupsOf(flow: PreparedFlow, flowIndex: number, groupSize: number): Group[] {
  const n = flow.subscribers.length;
  if (n === 0) return [];
  const count = Math.min(n, Math.max(1, Math.ceil((n * flow.weight) / groupSize)));
  const flowHash = hashString(flow.name, SEED_FLOW);
  const groups: Group[] = [];
  for (let b = 0; b < count; b++) groups.push({ flow: flowIndex, hash: combine(flowHash, b), bucket: b, members: [] });
  for (let s = 0; s < n; s++) groups[jumpBucket(flow.hashes[s]!, count)]!.members.push(s);
  return groups.filter((g) => g.members.length > 0);
}

/**
 * A group's node ranking, built lazily: most subscribers go to their first
 * choice, so selecting the best remaining node on demand (O(n) each) beats
 * sorting all n nodes for every group.
 */
class Ranking {
  readonly #scores: Float64Array;
  readonly #taken: Uint8Array;
  readonly #order: Int32Array;
  #ranked = 0;
  constructor(
    readonly nodeHashes: Uint32Array,
    readonly capacities: Float64Array,
  ) {
    this.#scores = new Float64Array(nodeHashes.length);
    this.#taken = new Uint8Array(nodeHashes.length);
    this.#order = new Int32Array(nodeHashes.length);
  }

  /** Weighted rendezvous: capacity / -ln(u), u uniform in (0, 1) from hash(group, node). */
  reset(groupHash: number): void {
    for (let n = 0; n < this.nodeHashes.length; n++) {
      const u = (combine(groupHash, this.nodeHashes[n]!) + 0.5) / 4294967296;
      this.#scores[n] = this.capacities[n]! / -Math.log(u);
    }
    this.#taken.fill(0);
    this.#ranked = 0;
  }

  /** The node at rank r (0 = best); ties go to the lower index, i.e. the earlier name. */
  at(r: number): number {
    while (this.#ranked <= r) {
      let best = -1;
      for (let n = 0; n < this.#scores.length; n++) if (this.#taken[n] === 0 && (best < 0 || this.#scores[n]! > this.#scores[best]!)) best = n;
      this.#taken[best] = 1;
      this.#order[this.#ranked++] = best;
    }
    return this.#order[r]!;
  }
}

/** Places subscribers on nodes; see the file comment for the algorithm and what it guarantees. */
export function placeSubscribers(nodes: readonly PlacementNode[], flows: readonly PlacementFlow[], options: PlacementOptions = {}): PlacementResult {
  const balance = options.balance ?? DEFAULT_BALANCE;
  const groupSize = options.groupSize ?? DEFAULT_GROUP_SIZE;
  if (!(Number.isFinite(balance) && balance >= 0)) throw new InvalidArgumentError(`placement: balance must be ≥ 0, got ${balance}`);
  if (!(Number.isFinite(groupSize) && groupSize >= 1)) throw new InvalidArgumentError(`placement: groupSize must be ≥ 1, got ${groupSize}`);
  const sortedNodes = checkNodes(nodes);
  const nodeCount = sortedNodes.length;
  const nodeIndex = new Map(sortedNodes.map((n, i) => [n.name, i]));
  const prepared = prepareFlows(flows, nodeIndex, nodeCount);

  const load = new Float64Array(nodeCount);
  let unplaced = 0;
  if (nodeCount === 0) {
    for (const f of prepared) unplaced += f.subscribers.length;
  } else {
    const groups = prepared.flatMap((f, i) => groupsOf(f, i, groupSize));
    // The processing order depends on the flows only (see the file comment, 3).
    groups.sort((a, b) => a.hash - b.hash || byString(prepared[a.flow]!.name, prepared[b.flow]!.name) || a.bucket - b.bucket);
    assign(groups, prepared, sortedNodes, load, balance);
  }

  const byFlow = new Map<string, ReadonlyMap<string, string>>();
  for (const f of prepared) {
    const m = new Map<string, string>();
    f.subscribers.forEach((s, i) => {
      const n = f.placed[i]!;
      if (n >= 0) m.set(s, sortedNodes[n]!.name);
    });
    byFlow.set(f.name, m);
  }
  return { byFlow, load: new Map(sortedNodes.map((n, i) => [n.name, load[i]!])), unplaced };
}

/**
 * The capacity the bounds share the load over: nodes that some flow with
 * subscribers may use. A node every flow excludes (an ingest node that is
 * an edge for nothing) takes no load, so counting it would only tighten
 * every other node's bound — and its arrival or departure would then move
 * subscribers between nodes it never serves (seen in the cluster lab: a
 * returning backup ingest moved two subscribers between the edges).
 */
function usableCapacity(flows: readonly PreparedFlow[], capacities: Float64Array): number {
  let total = 0;
  for (let n = 0; n < capacities.length; n++) if (flows.some((f) => f.subscribers.length > 0 && f.excluded?.[n] !== 1)) total += capacities[n]!;
  return total > 0 ? total : capacities.reduce((a, c) => a + c, 0);
}

/** The bounded-load pass over the ordered groups; fills `flow.placed` and `load`. */
function assign(groups: readonly Group[], flows: readonly PreparedFlow[], nodes: readonly PlacementNode[], load: Float64Array, balance: number): void {
  const nodeCount = nodes.length;
  const capacities = Float64Array.from(nodes, (n) => n.capacity);
  const nodeHashes = Uint32Array.from(nodes, (n) => hashString(n.name, SEED_NODE));
  let totalLoad = 0;
  for (const f of flows) totalLoad += f.subscribers.length * f.weight;
  const totalCapacity = usableCapacity(flows, capacities);
  // A relative tolerance so that float sums of fractional weights do not refuse an exact fit.
  const bounds = capacities.map((c) => (1 + balance) * c * (totalLoad / totalCapacity) * (1 + 1e-9));
  const ranking = new Ranking(nodeHashes, capacities);

  for (const g of groups) {
    const flow = flows[g.flow]!;
    const w = flow.weight;
    const ex = flow.excluded;
    ranking.reset(g.hash);
    // Loads only grow and w is the flow's, so a node once too full (or excluded) stays so for the whole group.
    let first = 0;
    for (const s of g.members) {
      let chosen = -1;
      for (; first < nodeCount; first++) {
        const n = ranking.at(first);
        if (ex?.[n] !== 1 && load[n]! + w <= bounds[n]!) {
          chosen = n;
          break;
        }
      }
      if (chosen < 0) {
        // No allowed node has room: the least relatively loaded one, earlier in the ranking on a tie.
        let best = Infinity;
        for (let r = 0; r < nodeCount; r++) {
          const n = ranking.at(r);
          if (ex?.[n] === 1) continue;
          const after = (load[n]! + w) / capacities[n]!;
          if (after < best) {
            best = after;
            chosen = n;
          }
        }
      }
      flow.placed[s] = chosen;
      load[chosen] = load[chosen]! + w;
    }
  }
}
