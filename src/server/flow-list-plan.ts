/**
 * How a running Sluice gets to a wanted list of flow policies (a reload:
 * `sluice run`'s and `sluice serve`'s SIGHUP, the daemon's start-up): every
 * policy validated first (all or nothing, issues under `flows[i]`), each
 * matched with a running flow by name (an unnamed one by type and listen
 * address), the running flows no policy matched, and the order in which to
 * apply them so that no step closes a relay loop (each flow after the flows
 * it feeds). What to do with a matched flow is the caller's.
 */
import { parseFlowPolicy, PolicyValidationError, type Flow, type FlowPolicy, type FlowPolicySpec, type Sluice } from '../index.js';
import { endpointKey } from '../wire/endpoint.js';
import { sinksFirst, type HostAddresses } from '../policy/flow-set.js';

export interface FlowListStep {
  /** The policy as given, and its validated spec. */
  readonly policy: FlowPolicy;
  readonly spec: FlowPolicySpec;
  /** The running flow it matched, if any. */
  readonly flow: Flow | undefined;
}

export interface FlowListPlan {
  /** One step per wanted policy, in the list's order. */
  readonly steps: readonly FlowListStep[];
  /** Running flows that no policy matched: to stop first (their addresses may be reused). */
  readonly gone: readonly Flow[];
  /** Indexes into `steps`, sinks first. */
  readonly order: readonly number[];
}

/** Throws PolicyValidationError (paths under `flows[i]`) when any policy is invalid; changes nothing. */
export function planFlowList(sluice: Sluice, wanted: readonly FlowPolicy[], host: HostAddresses): FlowListPlan {
  const specs = wanted.map((p, i) => {
    try {
      return parseFlowPolicy(p);
    } catch (err) {
      if (err instanceof PolicyValidationError)
        throw new PolicyValidationError(err.issues.map((x) => ({ ...x, path: `flows[${i}]${x.path ? `.${x.path}` : ''}` })));
      throw err;
    }
  });
  const running = sluice.flows();
  const matched = new Set<Flow>();
  const steps = specs.map((spec, i) => {
    const flow = running.find(
      (f) =>
        !matched.has(f) &&
        (spec.name !== undefined
          ? f.name === spec.name
          : f.spec.name === undefined && f.type === spec.type && endpointKey(f.spec.listen) === endpointKey(spec.listen)),
    );
    if (flow) matched.add(flow);
    return { policy: wanted[i]!, spec, flow };
  });
  const order = sinksFirst(
    steps.map((s, i) => ({ name: s.flow?.name ?? s.spec.name ?? `flows[${i}]`, where: '', spec: s.spec })),
    host,
  );
  return { steps, gone: running.filter((f) => !matched.has(f)), order };
}
