/**
 * The flow changes the daemon makes on its Sluice, each validated whole
 * before anything changes: create, replace (in place when the type and
 * listen address stay, so kept subscribers lose nothing; otherwise the
 * flow is stopped and started again, and put back as it was if the new
 * one cannot start), merge a patch, add and remove one subscriber, and
 * bring the running flows to a wanted list (start-up, SIGHUP). The
 * service calls them one at a time from its queue.
 */
import { networkInterfaces } from 'node:os';
import { parseEndpoint, formatEndpoint, parseFlowPolicy, PolicyValidationError, type Flow, type FlowPolicy, type FlowStats, type Sluice } from '../index.js';
import { endpointKey } from '../wire/endpoint.js';
import { hostAddressesFrom } from '../policy/flow-set.js';
import { planFlowList } from './flow-list-plan.js';
import { policyJson } from './flow-view.js';
import { ServiceError } from './service-error.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The running flow `name`, or flow_not_found. */
export function requireFlow(sluice: Sluice, name: string): Flow {
  const flow = sluice.flow(name);
  if (!flow) throw new ServiceError('flow_not_found', `no flow '${name}'`);
  return flow;
}

/**
 * A request body that must be a policy named `name` (given, or taken from
 * the URL), checked by `parse` (which throws PolicyValidationError);
 * `what` names the kind of policy in messages. UDP flows and tcp-redirects share it.
 */
export function namedBody<P>(body: unknown, name: string | undefined, parse: (p: unknown) => unknown, what: string): P {
  if (!isObject(body)) throw new PolicyValidationError([{ path: '', message: `expected a JSON object (${what})` }]);
  if (name === undefined) {
    if (body.name === undefined) throw new PolicyValidationError([{ path: 'name', message: "required: the flow's name (its URL is /v1/flows/NAME)" }]);
  } else if (body.name !== undefined && body.name !== name) {
    throw new PolicyValidationError([{ path: 'name', message: `must be '${name}' as in the URL, or left out (a flow is renamed by creating another)` }]);
  }
  const policy = name === undefined ? body : { ...body, name };
  parse(policy);
  return policy as P;
}

/**
 * A JSON merge patch (RFC 7386, one level: a field set to null goes back
 * to its default) of `current`, a policy as JSON; not yet validated.
 */
export function mergeJson(current: object, patch: unknown, what: string): Record<string, unknown> {
  if (!isObject(patch)) throw new PolicyValidationError([{ path: '', message: `expected a JSON object (fields of ${what})` }]);
  const merged: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete merged[k];
    else merged[k] = v;
  }
  return merged;
}

/** A request body that must be a UDP flow policy named `name` (given, or taken from the URL). */
export function namedPolicy(body: unknown, name?: string): FlowPolicy {
  return namedBody<FlowPolicy>(body, name, parseFlowPolicy, 'a flow policy');
}

/** The flow's current policy with a JSON merge patch, validated. */
export function mergePatch(flow: Flow, patch: unknown): FlowPolicy {
  return namedPolicy(mergeJson(policyJson(flow.spec, flow.name), patch, 'a flow policy'), flow.name);
}

export async function createFlow(sluice: Sluice, body: unknown): Promise<Flow> {
  const policy = namedPolicy(body);
  if (sluice.flow(policy.name!)) throw new ServiceError('flow_exists', `a flow named '${policy.name}' exists (PUT /v1/flows/${policy.name} replaces it)`);
  return sluice.apply(policy);
}

/**
 * Replaces the flow's policy. Same type, listen address and group join: in place.
 * Otherwise stopped and started anew; if the new policy cannot start
 * (address in use), the old one is started again and the error thrown.
 * Returns the running flow (a new object after a restart).
 */
export async function replaceFlow(sluice: Sluice, flow: Flow, policy: FlowPolicy): Promise<{ flow: Flow; restarted: boolean }> {
  const spec = parseFlowPolicy(policy);
  const sameJoin = JSON.stringify(spec.multicast) === JSON.stringify(flow.spec.multicast);
  if (spec.type === flow.type && endpointKey(spec.listen) === endpointKey(flow.spec.listen) && sameJoin) {
    await flow.replace(policy);
    return { flow, restarted: false };
  }
  const old = policyJson(flow.spec, flow.name);
  await flow.remove();
  try {
    return { flow: await sluice.apply(policy), restarted: true };
  } catch (err) {
    await sluice.apply(old).catch(() => undefined);
    throw err;
  }
}

/** `udp://HOST:PORT` as given in a request, canonical; or a policy error at `to`. */
export function subscriberAddress(to: unknown): string {
  if (typeof to !== 'string') throw new PolicyValidationError([{ path: 'to', message: "required: the subscriber, 'udp://HOST:PORT'" }]);
  const r = parseEndpoint(to);
  if (!r.ok) throw new PolicyValidationError([{ path: 'to', message: r.reason }]);
  return formatEndpoint(r.endpoint);
}

function subscribed(flow: Flow, to: string): boolean {
  const r = parseEndpoint(to);
  if (!r.ok || flow.spec.type !== 'replicate') return false;
  const key = endpointKey(r.endpoint);
  return flow.spec.to.some((t) => endpointKey(t) === key);
}

function requireReplicate(flow: Flow): void {
  if (flow.type !== 'replicate')
    throw new ServiceError('invalid_request', `flow '${flow.name}' is a redirect: it has one destination (change it with PUT or PATCH {"to": ...})`);
}

export async function addSubscriber(flow: Flow, to: string): Promise<void> {
  requireReplicate(flow);
  if (subscribed(flow, to)) throw new ServiceError('subscriber_exists', `${to} is a subscriber of '${flow.name}' already`);
  await flow.addSubscriber(to);
}

export async function removeSubscriber(flow: Flow, to: string): Promise<void> {
  requireReplicate(flow);
  if (!subscribed(flow, to)) throw new ServiceError('subscriber_not_found', `${to} is not a subscriber of '${flow.name}'`);
  await flow.removeSubscriber(to);
}

export interface FlowListChange {
  readonly added: string[];
  readonly updated: string[];
  readonly replaced: string[];
  readonly removed: { readonly name: string; readonly stats: FlowStats | undefined }[];
}

/**
 * Brings the running flows to `wanted` (validated first: all or nothing
 * is tried). Flows match by name (an unnamed one by type and listen
 * address); a matched flow whose policy is unchanged is left alone, one
 * with the same type and listen address is replaced in place, any other
 * stopped and started again. Gone flows stop first (their addresses may
 * be reused); the rest follow the order that never closes a relay loop.
 * Running flows that `keep` names are not the list's (the cluster's) and stay.
 */
export async function applyFlowList(sluice: Sluice, wanted: readonly FlowPolicy[], keep: (name: string) => boolean = () => false): Promise<FlowListChange> {
  const { steps, gone, order } = planFlowList(sluice, wanted, hostAddressesFrom(networkInterfaces()));
  const change: FlowListChange = { added: [], updated: [], replaced: [], removed: [] };
  for (const f of gone) if (!keep(f.name)) change.removed.push({ name: f.name, stats: await f.remove() });
  for (const i of order) {
    const { policy, flow } = steps[i]!;
    if (!flow) {
      change.added.push((await sluice.apply(policy)).name);
      continue;
    }
    const next = { ...policy, name: flow.name } as FlowPolicy;
    if (JSON.stringify(policyJson(parseFlowPolicy(next), flow.name)) === JSON.stringify(policyJson(flow.spec, flow.name))) continue;
    const r = await replaceFlow(sluice, flow, next);
    (r.restarted ? change.replaced : change.updated).push(flow.name);
  }
  return change;
}
