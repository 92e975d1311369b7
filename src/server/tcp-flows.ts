/**
 * The daemon's tcp-redirect flows (issue 22): the `type: tcp-redirect`
 * entries of the serve config's `flows:` (validated with the rest,
 * src/policy/tcp-config.ts) and those created over the HTTP API, run as
 * the Sluice's TcpRelays. Like the UDP flows: started at start-up (from
 * the state file when there is one, which keeps the API's changes),
 * created, replaced, patched and deleted through the service's queue,
 * brought to the config file on SIGHUP (the file wins), closed with the
 * Sluice. A tcp-redirect has no in-place change: a changed one is closed
 * (its connections with it) and started again.
 */
import type { Sluice, TcpRelay, TcpRelayStats } from '../index.js';
import { mergeJson, namedBody } from './flow-ops.js';
import { formatTcpEndpoint, parseTcpRedirect, type TcpRedirectPolicy, type TcpRedirectSpec, type TcpRelayPath } from '../policy/tcp-redirect.js';
import { allowJson } from './flow-view.js';
import { ServiceError } from './service-error.js';

/** What `GET /v1/flows` and `GET /v1/flows/NAME` show of a tcp-redirect. */
export interface TcpFlowView {
  readonly name: string;
  readonly type: 'tcp-redirect';
  /** `tcp://HOST:PORT` it listens on (the port the OS chose for port 0). */
  readonly listen: string;
  readonly to: string;
  /** 'sockmap' or 'splice' (bytes moved in the kernel), or 'userspace'. */
  readonly mode: TcpRelayPath;
  /** 'config': as the config file has it; 'api': created or changed over the API (kept in the state file). */
  readonly source: 'config' | 'api';
  /** The policy as JSON a client sends (what PUT takes back unchanged and the state file keeps). */
  readonly policy: TcpRedirectPolicy;
  readonly stats: TcpFlowStats;
  /** The splice thread's error, if it stopped on its own. */
  readonly failure?: string;
}

/** TcpRelayStats with the listen address written as a URL. */
export type TcpFlowStats = Omit<TcpRelayStats, 'listen'> & { readonly listen: string };

export function tcpFlowStats(relay: TcpRelay): TcpFlowStats {
  return { ...relay.stats(), listen: relay.listen };
}

/** The spec as JSON a client could send (endpoints as `tcp://HOST:PORT`, defaults filled in). */
export function tcpPolicyJson(spec: TcpRedirectSpec): TcpRedirectPolicy {
  return {
    type: 'tcp-redirect',
    ...(spec.name !== undefined ? { name: spec.name } : {}),
    listen: formatTcpEndpoint(spec.listen),
    to: formatTcpEndpoint(spec.to),
    allow: allowJson(spec.allow),
    maxConnections: spec.maxConnections,
    connectTimeoutMs: spec.connectTimeoutMs,
    mode: spec.mode,
    ...(spec.idleTimeoutMs !== undefined ? { idleTimeoutMs: spec.idleTimeoutMs } : {}),
  };
}

const samePolicy = (a: TcpRedirectSpec, b: TcpRedirectSpec): boolean => JSON.stringify(tcpPolicyJson(a)) === JSON.stringify(tcpPolicyJson(b));

/** `configured`: the config file's tcp-redirects (as written), to tell its flows from the API's. */
export function tcpFlowView(relay: TcpRelay, configured: readonly TcpRedirectPolicy[] = []): TcpFlowView {
  const fromConfig = configured.some((p) => {
    try {
      return samePolicy(parseTcpRedirect(p), relay.spec);
    } catch {
      return false;
    }
  });
  return {
    name: relay.name,
    type: 'tcp-redirect',
    listen: relay.listen,
    to: relay.to,
    mode: relay.mode,
    source: fromConfig ? 'config' : 'api',
    policy: tcpPolicyJson(relay.spec),
    stats: tcpFlowStats(relay),
    ...(relay.failure ? { failure: relay.failure.message } : {}),
  };
}

/** A request body of type tcp-redirect. */
export function isTcpBody(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { type?: unknown }).type === 'tcp-redirect';
}

/** A request body that must be a tcp-redirect named `name` (given, or taken from the URL); validated. */
export function namedTcpPolicy(body: unknown, name?: string): TcpRedirectPolicy {
  return namedBody<TcpRedirectPolicy>(body, name, parseTcpRedirect, 'a tcp-redirect policy');
}

/** The relay's policy with a JSON merge patch (one level: null puts a field back to its default), validated. */
export function mergeTcpPatch(relay: TcpRelay, patch: unknown): TcpRedirectPolicy {
  return namedTcpPolicy(mergeJson({ ...tcpPolicyJson(relay.spec), name: relay.name }, patch, 'a tcp-redirect policy'), relay.name);
}

/** POST: a new named tcp-redirect; flow_exists when any flow has its name. */
export async function createTcpFlow(sluice: Sluice, body: unknown): Promise<TcpRelay> {
  const policy = namedTcpPolicy(body);
  if (sluice.flow(policy.name!) || sluice.tcpFlow(policy.name!))
    throw new ServiceError('flow_exists', `a flow named '${policy.name}' exists (PUT /v1/flows/${policy.name} replaces it)`);
  return start(sluice, policy);
}

/**
 * PUT / PATCH: an unchanged policy leaves the relay (and its connections)
 * alone; a changed one closes it and starts the new one, or, if that
 * cannot start (the port taken), starts the old one again and throws.
 */
export async function replaceTcpFlow(sluice: Sluice, relay: TcpRelay, policy: TcpRedirectPolicy): Promise<{ relay: TcpRelay; restarted: boolean }> {
  if (samePolicy(parseTcpRedirect(policy), relay.spec)) return { relay, restarted: false };
  const old = tcpPolicyJson(relay.spec);
  await relay.remove();
  try {
    return { relay: await start(sluice, policy), restarted: true };
  } catch (err) {
    await start(sluice, old).catch(() => undefined);
    throw err;
  }
}

export interface TcpFlowChange {
  readonly added: string[];
  readonly replaced: string[];
  readonly removed: { readonly name: string; readonly stats: TcpRelayStats }[];
}

function start(sluice: Sluice, policy: TcpRedirectPolicy): Promise<TcpRelay> {
  return sluice.apply(policy);
}

const keyOf = (spec: TcpRedirectSpec): string => spec.name ?? formatTcpEndpoint(spec.listen);

/**
 * Brings the running tcp-redirects to `wanted` (each already validated
 * with its config file): matched by name (an unnamed one by its listen
 * URL); gone ones closed first (their ports may be reused), changed ones
 * closed and started again (the old one started again if the new cannot
 * start, and the error thrown), new ones started.
 */
export async function applyTcpFlowList(sluice: Sluice, wanted: readonly TcpRedirectPolicy[]): Promise<TcpFlowChange> {
  const specs = wanted.map((p) => ({ policy: p, spec: parseTcpRedirect(p) }));
  const wantedKeys = new Set(specs.map((s) => keyOf(s.spec)));
  const change: TcpFlowChange = { added: [], replaced: [], removed: [] };
  for (const relay of sluice.tcpFlows()) {
    if (!wantedKeys.has(keyOf(relay.spec))) change.removed.push({ name: relay.name, stats: await relay.remove() });
  }
  for (const { policy, spec } of specs) {
    const running = sluice.tcpFlows().find((r) => keyOf(r.spec) === keyOf(spec));
    if (running && samePolicy(running.spec, spec)) continue;
    if (!running) {
      change.added.push((await start(sluice, policy)).name);
      continue;
    }
    change.replaced.push((await replaceTcpFlow(sluice, running, policy)).relay.name);
  }
  return change;
}
