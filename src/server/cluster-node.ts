/**
 * The daemon as a cluster node (`sluice serve --cluster`): connects to
 * the store, starts the agent (src/cluster/agent.ts) on this service's
 * flows, and answers the API's /v1/cluster calls. A store that cannot be
 * reached at start-up is an error naming it; one that goes away later is
 * logged and shown (status, metrics, health) while forwarding goes on.
 */
import { ClusterAgent, type ClusterAgentStatus } from '../cluster/index.js';
import { EtcdStore } from '../cluster/index.js';
import { checkClusterFlow, deleteClusterFlow, putClusterFlows } from '../cluster/index.js';
import { clusterFlowJson } from '../cluster/index.js';
import { StoreError, type ClusterStore } from '../cluster/index.js';
import type { TierName } from '../policy/schema.js';
import type { TpoMeshConfig } from '../policy/serve-tpo-mesh.js';
import { ClusterMesh, type TpoMeshStatus } from './cluster-mesh.js';
import type { ResolvedServeConfig } from './config-file.js';
import type { Logger } from './log.js';
import type { SluiceService } from './service.js';
import { ServiceError } from './service-error.js';
import { packageVersion } from './version.js';

export interface ClusterJoinOptions {
  /** The store's endpoints (`HOST:PORT`), and the URL as given (for messages). */
  readonly endpoints: readonly string[];
  readonly url: string;
  readonly node: string;
  readonly address: string;
  readonly capacity?: number;
  readonly leaseTtlS: number;
  readonly prefix: string;
  /** The API's URL, recorded for operators. */
  readonly api?: string;
  /** The serve config's `cluster.tpoMesh`: a gateway of the daemon joins the TPO mesh (cluster-mesh.ts). */
  readonly tpoMesh?: TpoMeshConfig;
}

/** GET /v1/cluster: the agent's view, and the node's TPO mesh when it has one. */
export type ClusterNodeStatus = ClusterAgentStatus & { tpoMesh?: TpoMeshStatus };

/**
 * Load units a node takes when none is configured: subscribers of a
 * 5 Mbit/s stream (weight 1) that one relay core of the tier carries
 * without loss, from the replicate 1→100 bench (docs/CLUSTER.md,
 * "Capacity model"). A figure from one machine: set `--capacity` from
 * your own bench on other hardware, or for another stream rate.
 */
export const DEFAULT_CAPACITY: Record<TierName, number> = { kernel: 1180, batched: 2500, portable: 420 };

export class ClusterNode {
  readonly #store: ClusterStore;
  readonly #agent: ClusterAgent;
  readonly #prefix: string;
  readonly #mesh: ClusterMesh;

  private constructor(store: ClusterStore, agent: ClusterAgent, prefix: string, mesh: ClusterMesh) {
    this.#store = store;
    this.#agent = agent;
    this.#prefix = prefix;
    this.#mesh = mesh;
  }

  static async join(service: SluiceService, o: ClusterJoinOptions, log: Logger): Promise<ClusterNode> {
    const store = new EtcdStore({ endpoints: o.endpoints, callTimeoutMs: 3000 });
    const self = {
      name: o.node,
      address: o.address,
      tier: service.tier,
      capacity: o.capacity ?? DEFAULT_CAPACITY[service.tier],
      ...(o.api ? { api: o.api } : {}),
      version: packageVersion(),
      startedAt: new Date().toISOString(),
    };
    let agent: ClusterAgent | undefined;
    try {
      agent = await ClusterAgent.start({
        store,
        prefix: o.prefix,
        self,
        leaseTtlS: o.leaseTtlS,
        apply: (wanted) => service.applyClusterFlows(wanted),
        log: log.child({ component: 'cluster' }),
      });
      const mesh = await ClusterMesh.start({ service, agent, prefix: o.prefix, nodeAddress: o.address, log: log.child({ component: 'tpo-mesh' }) }, o.tpoMesh);
      return new ClusterNode(store, agent, o.prefix, mesh);
    } catch (err) {
      await agent?.close().catch(() => undefined);
      store.close();
      if (err instanceof StoreError && (err.reason === 'unavailable' || err.reason === 'timeout'))
        throw new StoreError('connect', err.reason, `cannot reach the cluster store ${o.url}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  get agent(): ClusterAgent {
    return this.#agent;
  }

  status(): ClusterNodeStatus {
    const s = this.#agent.status();
    return this.#mesh.configured ? { ...s, tpoMesh: this.#mesh.status() } : s;
  }

  /** After a SIGHUP (whether or not the reload succeeded): the TPO mesh follows the config and the gateway that run now. */
  reloaded(config: ResolvedServeConfig): Promise<void> {
    return this.#mesh.reload(config.cluster?.tpoMesh);
  }

  /** PUT /v1/cluster/flows/NAME: the body is the flow (its name, if given, must be the URL's). */
  async putFlow(name: string, body: unknown): Promise<Record<string, unknown>> {
    const given = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
    if (!given) throw new ServiceError('invalid_request', 'expected a JSON object (a cluster flow)');
    if (given.name !== undefined && given.name !== name) throw new ServiceError('invalid_request', `name must be '${name}' as in the URL, or left out`);
    const spec = checkClusterFlow({ ...given, name });
    await putClusterFlows(this.#store, this.#prefix, [spec]);
    return clusterFlowJson(spec);
  }

  async deleteFlow(name: string): Promise<{ name: string }> {
    if (!(await deleteClusterFlow(this.#store, this.#prefix, name))) throw new ServiceError('flow_not_found', `no cluster flow '${name}'`);
    return { name };
  }

  /** Leaves (the mesh registration is deleted, the lease revoked: the others take over now) and closes the store client. */
  async close(): Promise<void> {
    await this.#mesh.close().catch(() => undefined);
    await this.#agent.close();
    this.#store.close();
  }
}
