/**
 * `sluice serve --cluster …`: the command line's cluster options checked
 * (a bad one is a usage error naming the option) and turned into what
 * ClusterNode.join takes, with the config's `cluster.tpoMesh`.
 */
import { isIP } from 'node:net';
import { PolicyValidationError } from '../index.js';
import { normalizePrefix } from '../cluster/index.js';
import { parseClusterUrl } from '../cluster/index.js';
import { formatListenAddress } from '../policy/serve-config.js';
import type { ResolvedServeConfig } from '../server/config-file.js';
import type { ClusterJoinOptions } from '../server/cluster-node.js';

export interface ServeClusterOptions {
  readonly url: string;
  readonly endpoints: readonly string[];
  readonly node: string;
  readonly address: string;
  readonly capacity?: number;
  readonly leaseTtlS: number;
  readonly prefix: string;
}

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/;

function usage(path: string, message: string): never {
  throw new PolicyValidationError([{ path, message }], 'sluice serve');
}

/** The cluster options from commander's parsed options; none when --cluster is absent (the others then are errors). */
export function clusterCliOptions(o: Record<string, unknown>): { cluster?: ServeClusterOptions } {
  const url = o.cluster as string | undefined;
  if (url === undefined) {
    for (const k of ['node', 'address', 'capacity'] as const) if (o[k] !== undefined) usage(`--${k}`, 'needs --cluster etcd://HOST:PORT');
    return {};
  }
  const parsed = parseClusterUrl(url);
  if (!parsed.ok) usage('--cluster', parsed.reason);
  const node = o.node as string | undefined;
  if (node === undefined) usage('--node', "required with --cluster: this node's name");
  if (!NODE_NAME.test(node)) usage('--node', 'use 1-48 letters, digits, underscore or dash, starting with a letter or digit');
  const address = o.address as string | undefined;
  if (address === undefined) usage('--address', "required with --cluster: this node's IP address on the cluster network");
  if (isIP(address) === 0) usage('--address', `'${address}' is not an IP address`);
  let capacity: number | undefined;
  if (o.capacity !== undefined) {
    capacity = Number(o.capacity);
    if (!Number.isFinite(capacity) || capacity <= 0 || capacity > 1e9) usage('--capacity', 'must be a positive number');
  }
  const leaseTtlS = Number(o.leaseTtl ?? 5);
  if (!Number.isInteger(leaseTtlS) || leaseTtlS < 1 || leaseTtlS > 300) usage('--lease-ttl', 'must be a whole number of seconds from 1 to 300');
  const prefix = normalizePrefix(String(o.clusterPrefix ?? '/sluice/'));
  if (!prefix.startsWith('/') || prefix.length > 200) usage('--cluster-prefix', "must start with '/' (at most 200 characters)");
  return { cluster: { url, endpoints: parsed.url.endpoints, node, address, ...(capacity !== undefined ? { capacity } : {}), leaseTtlS, prefix } };
}

export function clusterJoinOptions(c: ServeClusterOptions, config: ResolvedServeConfig): ClusterJoinOptions {
  const scheme = config.api.tls ? 'https' : 'http';
  const tpoMesh = config.cluster?.tpoMesh;
  // The record is written before the API listens: a port chosen at start (0) is not known yet, so no URL rather than a wrong one.
  const api = config.api.listen.port !== 0 ? { api: `${scheme}://${formatListenAddress(config.api.listen)}` } : {};
  return { ...c, ...api, ...(tpoMesh ? { tpoMesh } : {}) };
}

/** A config with a TPO mesh needs --cluster: the mesh lives in the cluster store. */
export function checkMeshNeedsCluster(config: ResolvedServeConfig, cluster: ServeClusterOptions | undefined): void {
  if (config.cluster?.tpoMesh && !cluster)
    usage('cluster.tpoMesh', 'needs --cluster etcd://HOST:PORT --node NAME --address IP (the mesh lives in the cluster store)');
}
