/**
 * `sluice run`'s SIGHUP: applies a new set of flow policies to a running
 * Sluice. Validation, matching and order are the daemon's
 * (server/flow-list-plan.ts); here a matched flow is updated in place, so
 * its kept destinations lose nothing, and one whose type or listen address
 * changed is removed and started again.
 */
import type { Sluice } from '../control/sluice.js';
import type { FlowPolicy } from '../policy/schema.js';
import { endpointKey } from '../wire/endpoint.js';
import { localHostAddresses } from '../control/host-addresses.js';
import { planFlowList } from '../server/flow-list-plan.js';

export interface ReloadSummary {
  added: string[];
  updated: string[];
  replaced: string[];
  removed: string[];
}

export async function applyReload(sluice: Sluice, wanted: readonly FlowPolicy[]): Promise<ReloadSummary> {
  // Validated whole first: a reload either applies whole or not at all.
  const { steps, gone, order } = planFlowList(sluice, wanted, localHostAddresses());
  const summary: ReloadSummary = { added: [], updated: [], replaced: [], removed: [] };
  // Stop what is gone first, so a new flow may take over its listen address.
  for (const f of gone) {
    summary.removed.push(f.name);
    await f.remove();
  }
  const done: { i: number; kind: 'updated' | 'replaced' | 'added'; name: string }[] = [];
  for (const i of order) {
    const { policy, spec, flow } = steps[i]!;
    // A group's join (multicast) is made once, at start: a changed one restarts the flow.
    const sameJoin = JSON.stringify(flow?.spec.multicast) === JSON.stringify(spec.multicast);
    if (flow && flow.type === spec.type && endpointKey(flow.spec.listen) === endpointKey(spec.listen) && sameJoin) {
      await flow.replace({ ...policy, name: flow.name } as FlowPolicy);
      done.push({ i, kind: 'updated', name: flow.name });
    } else if (flow) {
      await flow.remove();
      done.push({ i, kind: 'replaced', name: (await sluice.apply(policy)).name });
    } else {
      done.push({ i, kind: 'added', name: (await sluice.apply(policy)).name });
    }
  }
  // Reported in the file's order.
  for (const d of done.sort((a, b) => a.i - b.i)) summary[d.kind].push(d.name);
  return summary;
}
