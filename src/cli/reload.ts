/**
 * Applies a new set of flow policies to a running Sluice, touching only what
 * changed. Flows are matched by name (flows without a name by type and
 * listen address); a matched flow is updated in place, so its kept
 * destinations lose nothing. A flow whose type or listen address changed is
 * removed and started again.
 */
import type { Sluice } from '../control/sluice.js';
import type { Flow } from '../control/flow.js';
import type { FlowPolicy } from '../policy/schema.js';
import { parseFlowPolicy } from '../policy/validate.js';
import { endpointKey } from '../wire/endpoint.js';
import { sinksFirst } from '../policy/flow-set.js';
import { localHostAddresses } from '../control/host-addresses.js';
import { PolicyValidationError } from '../errors.js';

export interface ReloadSummary {
  added: string[];
  updated: string[];
  replaced: string[];
  removed: string[];
}

export async function applyReload(sluice: Sluice, wanted: readonly FlowPolicy[]): Promise<ReloadSummary> {
  // Validate everything first: a reload either applies whole or not at all.
  const specs = wanted.map((p, i) => {
    try {
      return parseFlowPolicy(p);
    } catch (err) {
      if (err instanceof PolicyValidationError)
        throw new PolicyValidationError(err.issues.map((x) => ({ ...x, path: `flows[${i}]${x.path ? `.${x.path}` : ''}` })));
      throw err;
    }
  });
  const summary: ReloadSummary = { added: [], updated: [], replaced: [], removed: [] };
  const running = sluice.flows();
  const matched = new Set<Flow>();
  const plan: { policy: FlowPolicy; flow: Flow | undefined }[] = specs.map((spec, i) => {
    const flow = running.find(
      (f) =>
        !matched.has(f) &&
        (spec.name !== undefined
          ? f.name === spec.name
          : f.spec.name === undefined && f.type === spec.type && endpointKey(f.spec.listen) === endpointKey(spec.listen)),
    );
    if (flow) matched.add(flow);
    return { policy: wanted[i]!, flow };
  });
  // Stop what is gone first, so a new flow may take over its listen address.
  for (const f of running.filter((x) => !matched.has(x))) {
    summary.removed.push(f.name);
    await f.remove();
  }
  // Each flow after the flows it will feed: with a loop-free file, no step
  // on the way closes a relay loop that the running flows would refuse.
  const order = sinksFirst(
    specs.map((spec, i) => ({ name: plan[i]!.flow?.name ?? spec.name ?? `flows[${i}]`, where: '', spec })),
    localHostAddresses(),
  );
  const done: { i: number; kind: 'updated' | 'replaced' | 'added'; name: string }[] = [];
  for (const i of order) {
    const { policy, flow } = plan[i]!;
    const spec = specs[i]!;
    if (flow && flow.type === spec.type && endpointKey(flow.spec.listen) === endpointKey(spec.listen)) {
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
