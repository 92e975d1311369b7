/**
 * From what the store holds to what every node does (docs/CLUSTER.md,
 * "Roles"). Pure and deterministic: every node computes the same plan
 * from the same revision, so there is no leader to elect and no placement
 * to store — one key change (a flow written, a node's lease gone) is the
 * whole of the control traffic.
 */
import type { FlowPolicy } from '../policy/schema.js';
import { formatEndpoint } from '../wire/endpoint.js';
import { placeSubscribers } from './placement.js';
import { relayPortOf, type ClusterFlowSpec, type ClusterNodeRecord } from './records.js';

/** The live nodes and the valid flows, as read at one revision. */
export interface ClusterSnapshot {
  readonly nodes: ReadonlyMap<string, ClusterNodeRecord>;
  /** Valid flows with the revision each was created at (an older flow keeps a port another one also asks for). */
  readonly flows: ReadonlyMap<string, { spec: ClusterFlowSpec; createRevision: bigint }>;
  /**
   * Node -> the revision its key was created at (the node's current stay
   * in the cluster: a node whose lease expired and that registered again
   * has a newer one). Absent nodes count as having joined first.
   */
  readonly joined?: ReadonlyMap<string, bigint>;
}

export interface PlannedFlow {
  readonly spec: ClusterFlowSpec;
  /**
   * The ingest node that feeds the edges: of the live ingest nodes, the one
   * that joined first (the primary on a tie); undefined when neither is live.
   */
  readonly activeIngest: string | undefined;
  /** Subscriber (`udp://HOST:PORT`) -> the node that sends to it. Unplaced subscribers (no node, no active ingest) are absent. */
  readonly placement: ReadonlyMap<string, string>;
  /** Nodes other than the ingest nodes that serve at least one subscriber: what the active ingest feeds. */
  readonly edges: readonly string[];
}

export interface ClusterPlan {
  readonly flows: readonly PlannedFlow[];
  /** Valid flows the cluster cannot run as written (a port another, older flow uses). */
  readonly refused: readonly { flow: string; reason: string }[];
  /** Node -> load placed on it (subscribers times their flow's weight). */
  readonly load: ReadonlyMap<string, number>;
}

/** Prefix of the local flows the cluster owns on a node; the API cannot create or change flows with it. */
export const CLUSTER_FLOW_PREFIX = 'cluster.';

export function ingestFlowName(flow: string): string {
  return `${CLUSTER_FLOW_PREFIX}${flow}.ingest`;
}
export function edgeFlowName(flow: string): string {
  return `${CLUSTER_FLOW_PREFIX}${flow}.edge`;
}

/**
 * No preemption: a primary that returns while the backup feeds does not
 * take the flow back (that switch would cost every subscriber the packets
 * in flight while the edges change the source they accept — a returning
 * node must not disturb the others). The backup keeps feeding until its
 * own lease ends. Both receive the source all along, so either can feed.
 */
function activeIngestOf(spec: ClusterFlowSpec, snapshot: ClusterSnapshot): string | undefined {
  const { primary, backup } = spec.ingest;
  const primaryLive = snapshot.nodes.has(primary);
  const backupLive = backup !== undefined && snapshot.nodes.has(backup);
  if (primaryLive && backupLive) {
    const p = snapshot.joined?.get(primary) ?? 0n;
    const b = snapshot.joined?.get(backup) ?? 0n;
    return b < p ? backup : primary;
  }
  if (primaryLive) return primary;
  return backupLive ? backup : undefined;
}

/**
 * Flows in creation order take their ports; a flow asking for a port
 * that an older one holds (as ingest or relay port: a node may hold both
 * roles) is refused whole.
 */
function acceptFlows(snapshot: ClusterSnapshot): { accepted: ClusterFlowSpec[]; refused: { flow: string; reason: string }[] } {
  const ordered = [...snapshot.flows.values()].sort((a, b) =>
    a.createRevision !== b.createRevision ? (a.createRevision < b.createRevision ? -1 : 1) : a.spec.name < b.spec.name ? -1 : 1,
  );
  const ports = new Map<number, string>();
  const accepted: ClusterFlowSpec[] = [];
  const refused: { flow: string; reason: string }[] = [];
  for (const { spec } of ordered) {
    const mine = [...new Set([spec.ingest.port, relayPortOf(spec)])];
    const clash = mine.find((p) => ports.has(p));
    if (clash !== undefined) {
      refused.push({ flow: spec.name, reason: `port ${clash} is used by flow '${ports.get(clash)}'` });
      continue;
    }
    for (const p of mine) ports.set(p, spec.name);
    accepted.push(spec);
  }
  return { accepted, refused };
}

export function planCluster(snapshot: ClusterSnapshot): ClusterPlan {
  const { accepted, refused } = acceptFlows(snapshot);
  const nodes = [...snapshot.nodes.values()].map((n) => ({ name: n.name, capacity: n.capacity }));
  // A flow with no live ingest has nothing to send: its subscribers take no capacity.
  const live = accepted.map((spec) => ({ spec, activeIngest: activeIngestOf(spec, snapshot) }));
  const result = placeSubscribers(
    nodes,
    live
      .filter((f) => f.activeIngest !== undefined)
      .map(({ spec }) => ({
        name: spec.name,
        subscribers: spec.subscribers.map((s) => formatEndpoint(s)),
        weight: spec.weight,
        exclude: spec.ingest.backup !== undefined ? [spec.ingest.primary, spec.ingest.backup] : [spec.ingest.primary],
      })),
  );
  const flows = live.map(({ spec, activeIngest }): PlannedFlow => {
    const placement = result.byFlow.get(spec.name) ?? new Map<string, string>();
    const ingestNodes = new Set([spec.ingest.primary, spec.ingest.backup]);
    const edges = [...new Set(placement.values())].filter((n) => !ingestNodes.has(n)).sort();
    return { spec, activeIngest, placement, edges };
  });
  return { flows, refused, load: result.load };
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function allowJson(spec: ClusterFlowSpec): string | string[] {
  return spec.ingest.allow.any ? 'any' : spec.ingest.allow.rules.map((r) => `${r.address}/${r.prefix}`);
}

/**
 * The local flows `self` runs for the plan: on an ingest node one flow
 * from the source (feeding the edges while it is the active ingest, and
 * any subscribers placed on it directly), on an edge one flow from the
 * active ingest (that address only) to the subscribers placed on it.
 */
export function localFlows(plan: ClusterPlan, self: string, nodes: ReadonlyMap<string, ClusterNodeRecord>): FlowPolicy[] {
  const me = nodes.get(self);
  if (!me) return [];
  const out: FlowPolicy[] = [];
  for (const f of plan.flows) {
    const { spec } = f;
    const mine = [...f.placement].filter(([, n]) => n === self).map(([s]) => s);
    const isIngest = spec.ingest.primary === self || spec.ingest.backup === self;
    if (isIngest) {
      const feeds =
        f.activeIngest === self
          ? f.edges
              .map((e) => nodes.get(e))
              .filter((n): n is ClusterNodeRecord => n !== undefined)
              .map((n) => `udp://${hostPort(n.address, relayPortOf(spec))}`)
          : [];
      out.push({
        name: ingestFlowName(spec.name),
        type: 'replicate',
        listen: `udp://${hostPort(me.address, spec.ingest.port)}`,
        allow: allowJson(spec),
        payload: spec.payload,
        to: [...feeds, ...mine],
      });
      continue;
    }
    const from = f.activeIngest !== undefined ? nodes.get(f.activeIngest) : undefined;
    if (mine.length === 0 || !from) continue;
    out.push({
      name: edgeFlowName(spec.name),
      type: 'replicate',
      listen: `udp://${hostPort(me.address, relayPortOf(spec))}`,
      allow: from.address,
      payload: spec.payload,
      // The ingest watches the stream already; an edge's copy of it adds cost and no knowledge.
      monitor: false,
      to: mine,
    });
  }
  return out;
}
