/**
 * Where the cluster keeps what in the store. Everything lives under one
 * prefix (default `/sluice/`), so that several clusters can share an etcd
 * and one watch on the prefix sees every change.
 *
 *   PREFIX nodes/NAME     a live node (under its lease): ClusterNodeRecord
 *   PREFIX flows/NAME     a flow declared for the whole cluster: ClusterFlowSpec
 *   PREFIX gateways/NAME  a TPO gateway of the mesh (under its node's lease)
 */
export const DEFAULT_CLUSTER_PREFIX = '/sluice/';

export type KeyKind = 'nodes' | 'flows' | 'gateways';

export interface ParsedKey {
  kind: KeyKind;
  name: string;
}

/** `PREFIX` made to end with one slash. */
export function normalizePrefix(prefix: string): string {
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

export function nodeKey(prefix: string, name: string): string {
  return `${prefix}nodes/${name}`;
}

export function flowKey(prefix: string, name: string): string {
  return `${prefix}flows/${name}`;
}

export function gatewayKey(prefix: string, name: string): string {
  return `${prefix}gateways/${name}`;
}

/** What a key under the prefix is, or undefined for a key Sluice does not use (ignored, never an error). */
export function parseKey(prefix: string, key: string): ParsedKey | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const kind = rest.slice(0, slash);
  const name = rest.slice(slash + 1);
  if (name.length === 0 || name.includes('/')) return undefined;
  if (kind !== 'nodes' && kind !== 'flows' && kind !== 'gateways') return undefined;
  return { kind, name };
}
