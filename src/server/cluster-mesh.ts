/**
 * A cluster node's TPO mesh (`cluster.tpoMesh` in the serve config,
 * docs/CLUSTER.md, "TPO meshes"): one of the daemon's `tpo:` gateways registers in
 * the cluster store under the node's lease and pairs with every other
 * registered gateway (TpoMesh, src/cluster/tpo-mesh.ts). Adding a site is
 * starting its daemon; nothing is edited on the others.
 *
 * The gateway stays one of the daemon's: /v1/tpo, the event stream and
 * the metrics show the mesh's peers and table entries as any others. The
 * mesh drives the gateway directly, not through the API's change log, so
 * its peers (and the pair keys derived for them) never reach the state
 * file: they come from the store again at every start.
 *
 * The registration follows the node's lease (written again under a new
 * one after a lost one), is deleted at once on a clean stop, and after a
 * SIGHUP that restarted the gateway, changed `cluster.tpoMesh` or the key
 * file, is made again on the gateway that runs now.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError, PolicyValidationError } from '../errors.js';
import { readClusterKey, TpoMesh, type ClusterAgent, type ClusterKey, type StoreLease, type TpoMeshLog, type TpoMeshOptions } from '../cluster/index.js';
import type { TpoMeshConfig } from '../policy/serve-tpo-mesh.js';
import type { TpoGateway } from '../tpo/index.js';
import type { Logger } from './log.js';
import type { SluiceService } from './service.js';

export interface ClusterMeshContext {
  readonly service: SluiceService;
  readonly agent: ClusterAgent;
  /** The cluster's key prefix (registrations under `<prefix>gateways/`). */
  readonly prefix: string;
  /** The node's --address: the registered address of a gateway that listens on 0.0.0.0 or ::. */
  readonly nodeAddress: string;
  readonly log: Logger;
}

/** The mesh in GET /v1/cluster (`tpoMesh`). */
export interface TpoMeshStatus {
  /** The gateway in the mesh, or meant to be. */
  readonly gateway: string | null;
  /** Its registration is in the store and the mesh runs. */
  readonly registered: boolean;
  readonly key: string | null;
  /** The registration as written (no key material: the key's name only). */
  readonly registration: Record<string, unknown> | null;
  /** The gateways this one is paired with through the mesh. */
  readonly peers: readonly string[];
  /** Registrations of others refused, and why. */
  readonly refused: readonly { name: string; reason: string }[];
  /** Why this site is not in the mesh, when it should be. */
  readonly error: string | null;
}

interface Prepared {
  readonly gateway: TpoGateway;
  readonly options: TpoMeshOptions;
  /** The config and the key's digest: a reload that changes neither (nor the gateway) changes nothing. */
  readonly fingerprint: string;
}

interface Running {
  readonly mesh: TpoMesh;
  readonly gateway: TpoGateway;
  readonly fingerprint: string;
}

const invalid = (field: string, message: string) =>
  new PolicyValidationError([{ path: field ? `cluster.tpoMesh.${field}` : 'cluster.tpoMesh', message }], 'sluice serve');

const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

export class ClusterMesh {
  readonly #c: ClusterMeshContext;
  readonly #log: TpoMeshLog;
  #wanted: TpoMeshConfig | undefined;
  #running: Running | undefined;
  #error: string | null = null;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #onLease = (lease: StoreLease) => void this.#enqueue(() => this.#leased(lease));

  private constructor(c: ClusterMeshContext, wanted: TpoMeshConfig | undefined) {
    this.#c = c;
    this.#wanted = wanted;
    this.#log = (level, message, fields) => c.log[level](fields ?? {}, message);
  }

  /**
   * Joins the mesh when `config` is given (else waits for a reload that
   * gives it). Throws PolicyValidationError naming the field when the
   * config cannot work here (no such gateway, a key file refused, a
   * service outside the routes), and StoreError when the store refuses.
   */
  static async start(c: ClusterMeshContext, config: TpoMeshConfig | undefined): Promise<ClusterMesh> {
    const m = new ClusterMesh(c, config);
    if (config) {
      const p = m.#prepare(config);
      m.#running = { mesh: await TpoMesh.start(p.options), gateway: p.gateway, fingerprint: p.fingerprint };
    }
    c.agent.on('lease', m.#onLease);
    return m;
  }

  /** Whether the config has (or had) a mesh: the status shows it then. */
  get configured(): boolean {
    return this.#wanted !== undefined || this.#running !== undefined || this.#error !== null;
  }

  status(): TpoMeshStatus {
    const r = this.#running;
    const name = r?.gateway.name ?? this.#wanted?.gateway ?? null;
    return {
      gateway: name,
      registered: r !== undefined,
      key: name !== null ? this.#key(name) : null,
      registration: r ? (JSON.parse(r.mesh.record.value) as Record<string, unknown>) : null,
      peers: r?.mesh.peers() ?? [],
      refused: r?.mesh.refused() ?? [],
      error: this.#error,
    };
  }

  /** After a SIGHUP: the config now (its `cluster.tpoMesh`), applied to the gateway that runs now. */
  reload(config: TpoMeshConfig | undefined): Promise<void> {
    return this.#enqueue(async () => {
      this.#wanted = config;
      await this.#apply();
    });
  }

  /** Deletes the registration and stops the mesh; the gateway (and the peers on it) are the service's to close. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#c.agent.off('lease', this.#onLease);
    await this.#queue;
    await this.#stop();
  }

  #key(gateway: string): string {
    return `${this.#c.prefix}gateways/${gateway}`;
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(() => (this.#closed ? undefined : step()));
    this.#queue = run.catch((err: unknown) => this.#log('error', `TPO mesh: ${(err as Error).message}`, { err }));
    return run;
  }

  /** The options for `config` on the gateway that runs now; throws PolicyValidationError naming the field. */
  #prepare(config: TpoMeshConfig): Prepared {
    const { service, agent } = this.#c;
    const names = service.gateways().map((g) => g.name);
    const name = config.gateway ?? (names.length === 1 ? names[0] : undefined);
    if (name === undefined)
      throw invalid(
        'gateway',
        names.length
          ? `required: this daemon runs ${names.length} TPO gateways (${names.join(', ')})`
          : "this daemon runs no TPO gateway: list the site's gateway under tpo:",
      );
    const gateway = service.tpoGateway(name);
    if (!gateway) throw invalid('gateway', `no TPO gateway '${name}' runs here (tpo: has ${names.join(', ') || 'none'})`);
    let clusterKey: ClusterKey;
    try {
      clusterKey = readClusterKey(config.keyFile, config.keyRef);
    } catch (err) {
      throw invalid('keyFile', (err as Error).message);
    }
    const lease = agent.lease;
    if (!lease) throw new InvalidArgumentError('the node is registering again in the cluster: the gateway joins the mesh when it is back');
    let address = config.address;
    const listen = gateway.address();
    if (address === undefined && (listen.address === '0.0.0.0' || listen.address === '::')) address = hostPort(this.#c.nodeAddress, listen.port);
    const options: TpoMeshOptions = {
      store: agent.store,
      prefix: this.#c.prefix,
      lease,
      gateway,
      clusterKey,
      services: config.services,
      log: this.#log,
      ...(address !== undefined ? { address } : {}),
      ...(config.keyId !== undefined ? { keyId: config.keyId } : {}),
      ...(config.routes !== undefined ? { routes: config.routes } : {}),
      ...(config.listen ? { listen: config.listen } : {}),
      ...(config.peer ? { peer: config.peer } : {}),
    };
    try {
      TpoMesh.record(options);
    } catch (err) {
      throw invalid('', (err as Error).message);
    }
    const digest = createHash('sha256').update(clusterKey.ref).update('\0').update(clusterKey.key).digest('hex');
    return { gateway, options, fingerprint: `${JSON.stringify(config)}\0${digest}` };
  }

  /** Makes the mesh match what is wanted now, on the gateway that runs now. */
  async #apply(): Promise<void> {
    const wanted = this.#wanted;
    if (!wanted) {
      this.#error = null;
      if (this.#running) {
        await this.#stop();
        this.#c.log.info('TPO mesh: cluster.tpoMesh is gone from the config: this site left the mesh');
      }
      return;
    }
    let p: Prepared;
    try {
      p = this.#prepare(wanted);
    } catch (err) {
      this.#error = (err as Error).message;
      const r = this.#running;
      // The gateway it registered still runs: keep it in the mesh as it was rather than leave.
      if (r && !r.gateway.closed && this.#c.service.tpoGateway(r.gateway.name) === r.gateway) {
        this.#c.log.error({ err }, `TPO mesh: ${this.#error}; ${r.gateway.name} stays in the mesh as registered`);
        return;
      }
      await this.#stop();
      this.#c.log.error({ err }, `TPO mesh: ${this.#error}; this site is out of the mesh`);
      return;
    }
    const r = this.#running;
    if (r && r.gateway === p.gateway && r.fingerprint === p.fingerprint) {
      this.#error = null;
      return;
    }
    await this.#stop();
    try {
      this.#running = { mesh: await TpoMesh.start(p.options), gateway: p.gateway, fingerprint: p.fingerprint };
      this.#error = null;
      this.#c.log.info({ gateway: p.gateway.name }, `TPO mesh: ${p.gateway.name} registered (again)`);
    } catch (err) {
      this.#error = (err as Error).message;
      this.#c.log.error({ err }, `TPO mesh: ${p.gateway.name} could not join: ${this.#error}`);
    }
  }

  /** The node registered again under a new lease: the registration goes under it (or the mesh starts, if it waited for one). */
  async #leased(lease: StoreLease): Promise<void> {
    if (this.#running) {
      try {
        await this.#running.mesh.setLease(lease);
      } catch (err) {
        this.#c.log.error({ err }, `TPO mesh: cannot register again under lease ${lease.id}: ${(err as Error).message}`);
      }
    } else if (this.#wanted) await this.#apply();
  }

  async #stop(): Promise<void> {
    const r = this.#running;
    this.#running = undefined;
    if (!r) return;
    // Stopping: the service closes the gateway next, peers and all. Otherwise a gateway that runs on loses the mesh's peers now.
    if (this.#closed || r.gateway.closed) await r.mesh.close();
    else await r.mesh.leave();
  }
}
