/**
 * Compiles a validated flow policy into the plan every data plane executes.
 * A FlowPlan is plain data (structured-clone safe) so it can cross into a
 * worker thread or be written into BPF maps unchanged.
 */
import { endpointKey, formatEndpoint, type Endpoint } from './endpoint.js';
import type { SourceFilter } from './source-filter.js';
import type { FlowPolicySpec } from './schema.js';
import { PolicyValidationError } from '../errors.js';

export interface FlowPlan {
  readonly name: string;
  readonly type: 'redirect' | 'replicate';
  readonly listen: Endpoint;
  /** Every copy of an accepted datagram goes to each of these, in order. */
  readonly destinations: readonly Endpoint[];
  readonly sources: SourceFilter;
  readonly maxDatagramSize: number;
  readonly payload: 'any' | 'mpegts';
  readonly maxQueuedPackets: number;
}

/**
 * Builds the plan for `spec`. Rejects duplicate subscribers (a subscriber
 * listed twice would get every packet twice) and destinations that equal
 * the listen address (a loop).
 */
export function compileFlow(spec: FlowPolicySpec, name: string): FlowPlan {
  const destinations = spec.type === 'redirect' ? [spec.to] : spec.to;
  const seen = new Map<string, number>();
  const issues: { path: string; message: string }[] = [];
  const listenKey = endpointKey(spec.listen);
  destinations.forEach((d, i) => {
    const path = spec.type === 'redirect' ? 'to' : `to[${i}]`;
    const key = endpointKey(d);
    const prev = seen.get(key);
    if (prev !== undefined) issues.push({ path, message: `${formatEndpoint(d)} is listed twice (also to[${prev}])` });
    else seen.set(key, i);
    if (key === listenKey) issues.push({ path, message: `${formatEndpoint(d)} is the flow's own listen address (a loop)` });
  });
  if (issues.length) throw new PolicyValidationError(issues);
  return {
    name,
    type: spec.type,
    listen: spec.listen,
    destinations,
    sources: spec.allow,
    maxDatagramSize: spec.maxDatagramSize,
    payload: spec.payload,
    maxQueuedPackets: spec.maxQueuedPackets,
  };
}
