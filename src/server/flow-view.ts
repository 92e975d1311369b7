/**
 * How the daemon shows a flow: its name, type, tier, listen address as
 * bound, its policy as JSON and its counters. The policy is the validated
 * spec written back in the form a client sends (endpoints as
 * `udp://HOST:PORT`, sources as `ADDRESS[/PREFIX]` or `any`, defaults
 * filled in): what `GET` returns, `PUT` takes back unchanged, and the
 * state file stores.
 */
import { formatEndpoint } from '../wire/endpoint.js';
import type { Flow, FlowPolicy, FlowPolicySpec, FlowStats } from '../index.js';
import type { SourceFilter } from '../policy/source-filter.js';

export interface FlowView {
  readonly name: string;
  readonly type: 'redirect' | 'replicate';
  readonly tier: string;
  /** As bound: a requested port 0 shows the port the OS chose. */
  readonly listen: string;
  readonly policy: FlowPolicy;
  readonly stats: FlowStats;
}

/** Sources as a client writes them: `any`, one `ADDRESS[/PREFIX]`, or a list. */
export function allowJson(filter: SourceFilter): string | string[] {
  if (filter.any) return 'any';
  const rules = filter.rules.map((r) => (r.prefix === (r.family === 4 ? 32 : 128) ? r.address : `${r.address}/${r.prefix}`));
  return rules.length === 1 ? rules[0]! : rules;
}

/** The policy `spec` as JSON a client could send, named `name`. */
export function policyJson(spec: FlowPolicySpec, name: string): FlowPolicy {
  const common = {
    name,
    listen: formatEndpoint(spec.listen),
    allow: allowJson(spec.allow),
    maxDatagramSize: spec.maxDatagramSize,
    payload: spec.payload,
    maxQueuedPackets: spec.maxQueuedPackets,
    ...(spec.suspendAfterErrors !== undefined ? { suspendAfterErrors: spec.suspendAfterErrors } : {}),
    suspendRetryMs: spec.suspendRetryMs,
    ...(spec.multicast !== undefined ? { multicast: spec.multicast } : {}),
    ...(spec.multicastOut !== undefined ? { multicastOut: spec.multicastOut } : {}),
  };
  return spec.type === 'redirect'
    ? { type: 'redirect', ...common, to: formatEndpoint(spec.to) }
    : { type: 'replicate', ...common, to: spec.to.map((t) => formatEndpoint(t)) };
}

/** A running flow as the API shows it; `stats` when the caller already has them. */
export function flowView(flow: Flow, stats?: FlowStats): FlowView {
  return {
    name: flow.name,
    type: flow.type,
    tier: flow.tier,
    listen: flow.listenUrl,
    policy: policyJson(flow.spec, flow.name),
    stats: stats ?? flow.stats(),
  };
}
