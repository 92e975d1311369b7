/**
 * Compiles a validated flow policy into the plan every data plane executes.
 * A FlowPlan is plain data (structured-clone safe) so it can cross into a
 * worker thread or be written into BPF maps unchanged.
 */
import type { Endpoint } from '../wire/endpoint.js';
import { isMediaFormat, type PayloadFormat } from '../wire/payload-format.js';
import { subscriberIssues } from './flow-set.js';
import { mediaIssues } from './media-rules.js';
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
  readonly payload: PayloadFormat;
  readonly maxQueuedPackets: number;
  /** Present when the flow's stream is monitored (a media payload with monitor on): what the monitor needs. */
  readonly monitor?: MonitorPlan;
  /** Present when the flow carries its RTCP on port+1 (src/control/rtcp-relay.ts). */
  readonly rtcp?: RtcpPlan;
  /** Suspension of subscribers the network reports unreachable; absent: never suspend. */
  readonly suspend?: SuspendPolicy;
}

/** How the control plane watches a flow's stream (src/control/monitor-tap.ts). */
export interface MonitorPlan {
  readonly payload: Exclude<PayloadFormat, 'any'>;
  readonly rtpClockRate: number;
}

/** RTCP on port+1, and how long a subscriber may stay without reporting (absent: for ever). */
export interface RtcpPlan {
  readonly subscriberTimeoutMs?: number;
}

/** policy suspendAfterErrors / suspendRetryMs (docs/POLICY.md, "Unreachable subscribers"). */
export interface SuspendPolicy {
  readonly afterErrors: number;
  readonly retryMs: number;
}

/**
 * Builds the plan for `spec`. Rejects duplicate subscribers (a subscriber
 * listed twice would get every packet twice) and destinations that equal
 * the listen address (a loop). Checks that need the other flows and the
 * host's addresses (overlapping listens, loops through another flow or a
 * wildcard listen) are flowSetIssues' (flow-set.ts).
 */
export function compileFlow(spec: FlowPolicySpec, name: string): FlowPlan {
  const destinations = spec.type === 'redirect' ? [spec.to] : spec.to;
  const issues = [...subscriberIssues(spec), ...mediaIssues(spec)];
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
    ...(spec.rtcp === 'port+1' ? { rtcp: spec.subscriberTimeoutMs === undefined ? {} : { subscriberTimeoutMs: spec.subscriberTimeoutMs } } : {}),
    ...(spec.monitor && isMediaFormat(spec.payload) ? { monitor: { payload: spec.payload, rtpClockRate: spec.rtpClockRate } } : {}),
    ...(spec.suspendAfterErrors === undefined ? {} : { suspend: { afterErrors: spec.suspendAfterErrors, retryMs: spec.suspendRetryMs } }),
  };
}
