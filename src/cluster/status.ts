/**
 * What `sluice cluster status`, GET /v1/cluster, the metrics and the
 * dashboard say about the cluster: nodes with their lease and load, flows
 * with their active ingest and where each subscriber is served from, and
 * every refusal. Built from a StoreView and its plan, so that a node and a
 * bare client reading the store print the same thing.
 */
import { planCluster, type ClusterPlan } from './plan.js';
import { relayPortOf } from './records.js';
import type { StoreView } from './store-view.js';
import { formatEndpoint } from '../wire/endpoint.js';

export interface ClusterNodeView {
  readonly name: string;
  readonly address: string;
  readonly tier: string;
  readonly capacity: number;
  /** Load placed on it (subscribers times their flow's weight). */
  readonly load: number;
  readonly lease?: string;
  readonly api?: string;
  readonly version: string;
  readonly startedAt: string;
}

export interface ClusterFlowView {
  readonly name: string;
  readonly ingest: { primary: string; backup?: string; port: number };
  readonly relayPort: number;
  readonly activeIngest: string | null;
  readonly edges: readonly string[];
  /** Each subscriber and the node that sends to it (null: none can, e.g. no live ingest). */
  readonly subscribers: readonly { to: string; node: string | null }[];
}

export interface ClusterStatusView {
  /** Store revision the view was read at. */
  readonly revision: string;
  readonly nodes: readonly ClusterNodeView[];
  readonly flows: readonly ClusterFlowView[];
  readonly refused: readonly { key: string; reason: string }[];
}

export function clusterStatus(view: StoreView, prefix: string, plan: ClusterPlan = planCluster(view.snapshot())): ClusterStatusView {
  const nodes = view
    .nodes()
    .map((n) => ({
      name: n.name,
      address: n.address,
      tier: n.tier,
      capacity: n.capacity,
      load: plan.load.get(n.name) ?? 0,
      ...(n.lease ? { lease: n.lease } : {}),
      ...(n.api ? { api: n.api } : {}),
      version: n.version,
      startedAt: n.startedAt,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const flows = plan.flows
    .map((f) => ({
      name: f.spec.name,
      ingest: { primary: f.spec.ingest.primary, ...(f.spec.ingest.backup ? { backup: f.spec.ingest.backup } : {}), port: f.spec.ingest.port },
      relayPort: relayPortOf(f.spec),
      activeIngest: f.activeIngest ?? null,
      edges: f.edges,
      subscribers: f.spec.subscribers.map((s) => {
        const to = formatEndpoint(s);
        return { to, node: f.placement.get(to) ?? null };
      }),
    }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const refused = [
    ...view.refused().map((r) => ({ key: r.key, reason: r.reason })),
    ...plan.refused.map((r) => ({ key: `${prefix}flows/${r.flow}`, reason: r.reason })),
  ];
  return { revision: String(view.revision), nodes, flows, refused };
}
