/**
 * The flows a cluster node runs for the cluster (names `cluster.…`,
 * src/cluster/plan.ts): brought to the agent's wanted list one flow at a
 * time, so that one flow that cannot start (an address in use) is
 * reported and the others still follow the plan. They are the store's,
 * not the operator's: the flows API refuses to change them, the state
 * file does not keep them (a restarted node takes them from the store),
 * and a reload of the config file leaves them alone.
 */
import { parseFlowPolicy, PolicyValidationError, type FlowPolicy, type Sluice } from '../index.js';
import { CLUSTER_FLOW_PREFIX } from '../cluster/index.js';
import type { LocalApplyReport } from '../cluster/index.js';
import { policyJson } from './flow-view.js';
import { replaceFlow } from './flow-ops.js';
import { ServiceError } from './service-error.js';

export function isClusterFlow(name: string): boolean {
  return name.startsWith(CLUSTER_FLOW_PREFIX);
}

/** The flows API and config files may not use the cluster's names. */
export function refuseClusterName(name: string | undefined): void {
  if (name !== undefined && isClusterFlow(name))
    throw new ServiceError(
      'conflict',
      `flow names starting with '${CLUSTER_FLOW_PREFIX}' belong to the cluster: change cluster flows with PUT /v1/cluster/flows/NAME or \`sluice cluster apply\``,
    );
}

/** Config flows may not take the cluster's names either (the state file and reloads would mistake them). */
export function refuseClusterNames(flows: readonly Pick<FlowPolicy, 'name'>[]): void {
  const issues = flows.flatMap((f, i) =>
    f.name !== undefined && isClusterFlow(f.name)
      ? [{ path: `flows[${i}].name`, message: `names starting with '${CLUSTER_FLOW_PREFIX}' are the cluster's` }]
      : [],
  );
  if (issues.length) throw new PolicyValidationError(issues);
}

export interface ClusterFlowChange extends LocalApplyReport {
  /** Changed in place or restarted: the API's flowchanged events. */
  readonly updated: string[];
}

export async function applyClusterFlows(sluice: Sluice, wanted: readonly FlowPolicy[]): Promise<ClusterFlowChange> {
  const added: string[] = [];
  const updated: string[] = [];
  const removed: string[] = [];
  const failed: { name: string; message: string }[] = [];
  const names = new Set(wanted.map((w) => w.name!));
  // Gone first: a flow that moved roles may want the address the old one holds.
  for (const f of sluice.flows()) {
    if (!isClusterFlow(f.name) || names.has(f.name)) continue;
    try {
      await f.remove();
      removed.push(f.name);
    } catch (err) {
      failed.push({ name: f.name, message: (err as Error).message });
    }
  }
  for (const policy of wanted) {
    const name = policy.name!;
    try {
      const flow = sluice.flow(name);
      if (!flow) {
        await sluice.apply(policy);
        added.push(name);
        continue;
      }
      if (JSON.stringify(policyJson(parseFlowPolicy(policy), name)) === JSON.stringify(policyJson(flow.spec, name))) continue;
      await replaceFlow(sluice, flow, policy);
      updated.push(name);
    } catch (err) {
      failed.push({ name, message: (err as Error).message });
    }
  }
  return { added, updated, removed, failed };
}
