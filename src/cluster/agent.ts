/**
 * A node of the cluster (`sluice serve --cluster`): registers the node
 * under a lease (membership.ts), reads the cluster's keys and watches
 * them from the revision read (store-view.ts), and after every change
 * brings the node's own flows to what the plan says (plan.ts) through
 * `apply`, which the daemon implements on its flows.
 *
 * The data plane never waits for the store: a node cut off from it keeps
 * its last assignment (nothing is re-planned without the store), and the
 * partition rules of docs/CLUSTER.md hold through the data plane itself —
 * an edge accepts the hop only from the ingest its view names, and a live
 * ingest stops feeding a node whose lease it saw expire.
 */
import { TypedEmitter } from '../events.js';
import type { FlowPolicy } from '../policy/schema.js';
import { nodeKey } from './keys.js';
import { Membership } from './membership.js';
import { localFlows, planCluster, type ClusterPlan } from './plan.js';
import type { ClusterNodeRecord } from './records.js';
import { clusterStatus, type ClusterStatusView } from './status.js';
import { StoreView, type Refusal } from './store-view.js';
import type { ClusterStore, StoreError, StoreEvent, StoreLease, StoreWatch } from './store.js';

/** The log calls the agent makes (pino's Logger has them). */
export interface ClusterLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** What the daemon did with a wanted list of cluster flows. */
export interface LocalApplyReport {
  readonly added: readonly string[];
  readonly updated: readonly string[];
  readonly removed: readonly string[];
  /** Flows that could not be started or changed (an address in use): the others went ahead. */
  readonly failed: readonly { name: string; message: string }[];
}

export interface ClusterAgentOptions {
  readonly store: ClusterStore;
  /** Key prefix, ending in '/'. */
  readonly prefix: string;
  readonly self: ClusterNodeRecord;
  readonly leaseTtlS: number;
  /** Brings the node's cluster-owned flows to `wanted` (and stops the others it owns). */
  readonly apply: (wanted: FlowPolicy[]) => Promise<LocalApplyReport>;
  readonly log: ClusterLog;
}

export interface ClusterAgentEvents {
  /** The plan or the node's local flows changed. */
  changed: [];
  /** The store connection went down or came back. */
  store: [up: boolean];
  /** The node registered again under a new lease (after losing one): keys of this node go under it. */
  lease: [lease: StoreLease];
}

/** The node's own side of the status. */
export interface ClusterSelfView {
  readonly node: string;
  readonly address: string;
  readonly storeUp: boolean;
  /** ISO time the store was last seen down, while it is. */
  readonly storeDownSince: string | null;
  readonly registered: boolean;
  readonly lease: string | null;
  readonly leaseTtlS: number;
  /** Revision the local flows were last brought to. */
  readonly appliedRevision: string;
  readonly localFlows: readonly string[];
  readonly failed: readonly { name: string; message: string }[];
}

export type ClusterAgentStatus = ClusterStatusView & { self: ClusterSelfView };

export class ClusterAgent extends TypedEmitter<ClusterAgentEvents> {
  readonly #o: ClusterAgentOptions;
  readonly #view: StoreView;
  readonly #membership: Membership;
  #watch: StoreWatch | undefined;
  #plan: ClusterPlan;
  #storeDownSince: number | null = null;
  #applying: Promise<void> | undefined;
  #dirty = false;
  #closed = false;
  #appliedRevision = 0n;
  #localFlows: string[] = [];
  #failed: { name: string; message: string }[] = [];

  private constructor(o: ClusterAgentOptions) {
    super();
    this.#o = o;
    this.#view = new StoreView(o.prefix);
    this.#plan = planCluster(this.#view.snapshot());
    this.#membership = new Membership({ store: o.store, key: nodeKey(o.prefix, o.self.name), value: JSON.stringify(o.self), ttlS: o.leaseTtlS });
    this.#membership.on('lost', (err) => {
      o.log.warn({ err: err.message }, 'cluster: lease lost; forwarding the last assignment while registering again');
      this.emit('changed');
    });
    this.#membership.on('registered', (lease) => {
      o.log.info({ lease: lease.id, node: o.self.name }, `cluster: joined as ${o.self.name}`);
      this.emit('lease', lease);
      this.#schedule();
    });
  }

  /**
   * Joins: registers (waiting out an earlier run's record), reads the
   * keys, starts the node's flows, watches. Throws StoreError when the
   * store cannot be reached; closes what it started.
   */
  static async start(o: ClusterAgentOptions): Promise<ClusterAgent> {
    const agent = new ClusterAgent(o);
    try {
      await agent.#membership.register();
      await agent.#readAndWatch();
      agent.#schedule();
      await agent.#applying;
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  async #readAndWatch(): Promise<void> {
    const read = await this.#o.store.getPrefix(this.#o.prefix);
    this.#view.load(read.entries, read.revision);
    for (const r of this.#view.refused()) this.#reportRefusal(r);
    this.#watch = await this.#o.store.watchPrefix(this.#o.prefix, read.revision + 1n, {
      event: (ev) => this.#onEvent(ev),
      error: (err) => this.#onWatchError(err),
      connection: (up, err) => this.#onConnection(up, err),
    });
  }

  #onEvent(ev: StoreEvent): void {
    const changed = this.#view.apply(ev);
    const refusal = ev.type === 'put' ? this.#view.refusalOf(ev.key) : undefined;
    if (refusal?.revision === String(ev.modRevision)) this.#reportRefusal(refusal);
    if (ev.type === 'delete' && ev.key === nodeKey(this.#o.prefix, this.#o.self.name)) this.#membership.keyDeleted();
    if (changed) this.#schedule();
    else this.emit('changed');
  }

  /** A value someone wrote into the store that no node applies: said once per write, where operators look. */
  #reportRefusal(r: Refusal): void {
    this.#o.log.warn({ key: r.key, revision: r.revision, reason: r.reason }, `cluster: refused ${r.key}: ${r.reason}`);
  }

  /** A watch that cannot go on (its start was compacted): read everything again and watch from there. */
  #onWatchError(err: StoreError): void {
    if (this.#closed) return;
    this.#o.log.warn({ err: err.message }, 'cluster: watch ended; reading the store again');
    this.#watch = undefined;
    const retry = async (): Promise<void> => {
      while (!this.#closed && !this.#watch) {
        try {
          await this.#readAndWatch();
          this.#schedule();
        } catch {
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    };
    void retry();
  }

  #onConnection(up: boolean, err?: StoreError): void {
    if (up && this.#storeDownSince !== null) {
      this.#o.log.info({ downS: (Date.now() - this.#storeDownSince) / 1000 }, 'cluster: store reachable again');
      this.#storeDownSince = null;
    } else if (!up && this.#storeDownSince === null) {
      this.#storeDownSince = Date.now();
      this.#o.log.warn({ err: err?.message }, 'cluster: store unreachable; forwarding the last assignment');
    }
    this.emit('store', up);
  }

  /** Coalesces changes: one reconcile at a time, one more after it if anything changed meanwhile. */
  #schedule(): void {
    if (this.#closed) return;
    if (this.#applying) {
      this.#dirty = true;
      return;
    }
    this.#applying = this.#reconcile()
      .catch((err: unknown) => this.#o.log.error({ err: (err as Error).message }, 'cluster: applying the plan failed'))
      .finally(() => {
        this.#applying = undefined;
        if (this.#dirty) {
          this.#dirty = false;
          this.#schedule();
        }
      });
  }

  async #reconcile(): Promise<void> {
    const before = new Set(this.#plan.refused.map((r) => `${r.flow}\n${r.reason}`));
    this.#plan = planCluster(this.#view.snapshot());
    for (const r of this.#plan.refused)
      if (!before.has(`${r.flow}\n${r.reason}`)) this.#o.log.warn({ flow: r.flow, reason: r.reason }, `cluster: refused flow ${r.flow}: ${r.reason}`);
    // Unregistered, the plan has no place for this node: keep what runs until the node is back.
    if (!this.#membership.registered || !this.#view.hasNode(this.#o.self.name)) {
      this.emit('changed');
      return;
    }
    const revision = this.#view.revision;
    const wanted = localFlows(this.#plan, this.#o.self.name, new Map(this.#view.nodes().map((n) => [n.name, n])));
    const report = await this.#o.apply(wanted);
    this.#appliedRevision = revision;
    this.#localFlows = wanted.map((f) => f.name!);
    this.#failed = [...report.failed];
    for (const f of report.failed) this.#o.log.error({ flow: f.name }, `cluster: cannot run ${f.name}: ${f.message}`);
    if (report.added.length || report.updated.length || report.removed.length)
      this.#o.log.info({ revision: String(revision), added: report.added, updated: report.updated, removed: report.removed }, 'cluster: local flows changed');
    this.emit('changed');
  }

  /** The node's live lease, undefined while it is registering again. */
  get lease(): StoreLease | undefined {
    return this.#membership.lease;
  }

  /** The store the agent reads (the TPO mesh of the node shares it). */
  get store(): ClusterStore {
    return this.#o.store;
  }

  status(): ClusterAgentStatus {
    const s = clusterStatus(this.#view, this.#o.prefix, this.#plan);
    return {
      ...s,
      self: {
        node: this.#o.self.name,
        address: this.#o.self.address,
        storeUp: this.#storeDownSince === null,
        storeDownSince: this.#storeDownSince === null ? null : new Date(this.#storeDownSince).toISOString(),
        registered: this.#membership.registered,
        lease: this.#membership.leaseId ?? null,
        leaseTtlS: this.#o.leaseTtlS,
        appliedRevision: String(this.#appliedRevision),
        localFlows: this.#localFlows,
        failed: this.#failed,
      },
    };
  }

  /** Leaves the cluster: the lease is revoked so the others take over now; the local flows are the daemon's to stop. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#watch?.close().catch(() => undefined);
    await this.#applying;
    await this.#membership.close();
  }
}
