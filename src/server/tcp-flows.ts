/**
 * The daemon's tcp-redirect flows (issue 22): the `type: tcp-redirect`
 * entries of the serve config's `flows:` (validated with the rest,
 * src/policy/tcp-config.ts), run as the Sluice's TcpRelays. They come
 * from the config file only: started at start-up, brought to the file on
 * SIGHUP (added, removed; a changed one closed and started again), closed
 * with the Sluice. The HTTP API lists them and reads their counters; it
 * does not change them (409 naming the config file), so the state file
 * has nothing of theirs to keep.
 */
import type { Sluice, TcpRelay, TcpRelayStats } from '../index.js';
import { formatTcpEndpoint, parseTcpRedirect, type TcpRedirectPolicy, type TcpRedirectSpec, type TcpRelayPath } from '../policy/tcp-redirect.js';

/** What `GET /v1/flows` and `GET /v1/flows/NAME` show of a tcp-redirect. */
export interface TcpFlowView {
  readonly name: string;
  readonly type: 'tcp-redirect';
  /** `tcp://HOST:PORT` it listens on (the port the OS chose for port 0). */
  readonly listen: string;
  readonly to: string;
  /** 'sockmap' or 'splice' (bytes moved in the kernel), or 'userspace'. */
  readonly mode: TcpRelayPath;
  /** Set by the config file; PUT, PATCH and DELETE refuse it. */
  readonly source: 'config';
  readonly stats: TcpFlowStats;
  /** The splice thread's error, if it stopped on its own. */
  readonly failure?: string;
}

/** TcpRelayStats with the listen address written as a URL. */
export type TcpFlowStats = Omit<TcpRelayStats, 'listen'> & { readonly listen: string };

export function tcpFlowStats(relay: TcpRelay): TcpFlowStats {
  return { ...relay.stats(), listen: relay.listen };
}

export function tcpFlowView(relay: TcpRelay): TcpFlowView {
  return {
    name: relay.name,
    type: 'tcp-redirect',
    listen: relay.listen,
    to: relay.to,
    mode: relay.mode,
    source: 'config',
    stats: tcpFlowStats(relay),
    ...(relay.failure ? { failure: relay.failure.message } : {}),
  };
}

export interface TcpFlowChange {
  readonly added: string[];
  readonly replaced: string[];
  readonly removed: { readonly name: string; readonly stats: TcpRelayStats }[];
}

/** The policy each relay was started from (to start it again when its replacement cannot start). */
const started = new WeakMap<TcpRelay, TcpRedirectPolicy>();

async function start(sluice: Sluice, policy: TcpRedirectPolicy): Promise<TcpRelay> {
  const relay = await sluice.apply(policy);
  started.set(relay, policy);
  return relay;
}

const keyOf = (spec: TcpRedirectSpec): string => spec.name ?? formatTcpEndpoint(spec.listen);
const same = (a: TcpRedirectSpec, b: TcpRedirectSpec): boolean => JSON.stringify(a) === JSON.stringify(b);

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
    if (running && same(running.spec, spec)) continue;
    if (!running) {
      change.added.push((await start(sluice, policy)).name);
      continue;
    }
    const old = started.get(running);
    await running.remove();
    try {
      change.replaced.push((await start(sluice, policy)).name);
    } catch (err) {
      if (old) await start(sluice, old).catch(() => undefined);
      throw err;
    }
  }
  return change;
}
