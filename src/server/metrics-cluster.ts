/**
 * The cluster's series (`sluice serve --cluster`), read at scrape time
 * from the agent's status: the store link, the node's registration, the
 * members it sees with their load and capacity, the flows it runs for
 * the cluster and what it refused. Every series also carries the node's
 * own `node` label (the registry's constant label), so that a Prometheus
 * scraping every node tells them apart; members are named by `member`.
 */
import type { ClusterAgentStatus } from '../cluster/index.js';
import { SnapshotGauge, type ScrapeCache, type SnapshotRegistry } from './metrics-snapshot.js';

export function registerClusterMetrics(registry: SnapshotRegistry, reading: ScrapeCache<{ cluster: ClusterAgentStatus | undefined }>): void {
  const one = (name: string, help: string, value: (s: ClusterAgentStatus) => number): void => {
    new SnapshotGauge<never>({
      name,
      help,
      labelNames: [],
      registry,
      read: () => {
        const s = reading.get().cluster;
        return s ? [{ labels: {}, value: value(s) }] : [];
      },
    });
  };
  one(
    'sluice_cluster_store_up',
    'The cluster store (etcd) answers this node: 1, or 0 while it is unreachable (forwarding goes on with the last assignment).',
    (s) => Number(s.self.storeUp),
  );
  one('sluice_cluster_registered', 'This node holds a live lease in the cluster: 1, or 0 while it registers again.', (s) => Number(s.self.registered));
  one('sluice_cluster_members', 'Live nodes this node sees in the cluster (itself included).', (s) => s.nodes.length);
  one('sluice_cluster_flows', 'Cluster flows declared and accepted.', (s) => s.flows.length);
  one('sluice_cluster_refused', 'Values in the store this node refused (invalid, or a port another flow holds): see GET /v1/cluster.', (s) => s.refused.length);
  one(
    'sluice_cluster_local_flow_failures',
    'Flows the plan gives this node that it could not start or change (an address in use).',
    (s) => s.self.failed.length,
  );
  one('sluice_cluster_subscribers_served', 'Subscribers the plan places on this node.', (s) =>
    s.flows.reduce((n, f) => n + f.subscribers.filter((x) => x.node === s.self.node).length, 0),
  );
  one('sluice_cluster_unplaced_subscribers', 'Subscribers no node serves (no live ingest node for their flow, or no node at all).', (s) =>
    s.flows.reduce((n, f) => n + f.subscribers.filter((x) => x.node === null).length, 0),
  );
  for (const [name, help, key] of [
    ['sluice_cluster_member_load', 'Load the plan places on each member (subscribers times their flow weight).', 'load'],
    ['sluice_cluster_member_capacity', 'Capacity each member registered (load units).', 'capacity'],
  ] as const) {
    new SnapshotGauge<'member'>({
      name,
      help,
      labelNames: ['member'],
      registry,
      read: () => reading.get().cluster?.nodes.map((n) => ({ labels: { member: n.name }, value: n[key] })) ?? [],
    });
  }
}
