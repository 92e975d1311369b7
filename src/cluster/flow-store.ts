/**
 * Writing cluster flows: what `sluice cluster apply|delete` and the API's
 * /v1/cluster/flows do. A flow is checked whole, and against the flows
 * already stored (a port another flow holds), before it is written, so
 * that the writer hears the refusal; the nodes check every value again
 * when they read it (someone may write to etcd directly).
 */
import { PolicyValidationError } from '../errors.js';
import { flowKey } from './keys.js';
import { clusterFlowJson, clusterFlowSchema, parseClusterFlow, relayPortOf, type ClusterFlowSpec } from './records.js';
import { parseKey } from './keys.js';
import type { ClusterStore } from './store.js';
import { describeIssue } from '../policy/validate.js';

/** Checks one flow as given; throws PolicyValidationError with paths under `base`. */
export function checkClusterFlow(input: unknown, base = ''): ClusterFlowSpec {
  const r = clusterFlowSchema.safeParse(input);
  if (!r.success) throw new PolicyValidationError(r.error.issues.map((i) => describeIssue(i, input, base)));
  return r.data;
}

/** The valid flows stored now (invalid values are the nodes' to report). */
export async function storedFlows(store: ClusterStore, prefix: string): Promise<ClusterFlowSpec[]> {
  const read = await store.getPrefix(`${prefix}flows/`);
  const out: ClusterFlowSpec[] = [];
  for (const e of read.entries) {
    const k = parseKey(prefix, e.key);
    if (!k) continue;
    const p = parseClusterFlow(e.value, k.name);
    if (p.ok) out.push(p.value);
  }
  return out;
}

function ports(f: ClusterFlowSpec): number[] {
  return [...new Set([f.ingest.port, relayPortOf(f)])];
}

/** Port clashes between `flows` (in order) and the stored flows not replaced by them. */
export function portIssues(flows: readonly ClusterFlowSpec[], stored: readonly ClusterFlowSpec[], base = 'flows'): { path: string; message: string }[] {
  const names = new Set(flows.map((f) => f.name));
  const held = new Map<number, string>();
  for (const s of stored) if (!names.has(s.name)) for (const p of ports(s)) held.set(p, s.name);
  const issues: { path: string; message: string }[] = [];
  flows.forEach((f, i) => {
    for (const p of ports(f)) {
      const other = held.get(p);
      if (other !== undefined && other !== f.name) issues.push({ path: `${base}[${i}]`, message: `port ${p} is used by flow '${other}'` });
      else held.set(p, f.name);
    }
  });
  return issues;
}

/** Writes flows (each checked, all checked against the stored ones first: nothing is written if any is refused). */
export async function putClusterFlows(store: ClusterStore, prefix: string, flows: readonly ClusterFlowSpec[]): Promise<void> {
  const issues = portIssues(flows, await storedFlows(store, prefix));
  if (issues.length) throw new PolicyValidationError(issues);
  for (const f of flows) await store.put(flowKey(prefix, f.name), JSON.stringify(clusterFlowJson(f)));
}

export async function deleteClusterFlow(store: ClusterStore, prefix: string, name: string): Promise<boolean> {
  return store.delete(flowKey(prefix, name));
}
