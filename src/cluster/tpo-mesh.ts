/**
 * TPO meshes (issue 21): gateways register in the cluster store, and each
 * pairs with every other one it finds there, so adding a site is starting
 * one gateway, with no edit on the others (docs/CLUSTER.md, "TPO meshes").
 *
 * A TpoMesh writes its gateway's registration (tpo-mesh-record.ts) at
 * `<prefix>gateways/<name>` under the node's lease, reads the others, and
 * watches them from the revision it read: each valid registration becomes
 * a peer of the local gateway (pair key derived from the cluster key,
 * tpo-mesh-keys.ts) and one table entry per service it publishes
 * (tpo-mesh-plan.ts); a registration that disappears (lease expired,
 * deleted) takes its peer and entries away. A registration that is
 * invalid, uses another cluster key or a taken key id, or that the gateway
 * refuses, is reported and applied not at all: a failure half way is
 * rolled back. Changes run one at a time, in the store's order.
 *
 * The gateway is reached through TpoMeshGateway, the few calls the mesh
 * needs: a TpoGateway ('sluice/tpo') is one, and so is anything of the
 * daemon's that forwards to one.
 */
import { InvalidArgumentError } from '../errors.js';
import type { SourceRule } from '../policy/source-filter.js';
import { defaultMeshKeyId, type ClusterKey } from './tpo-mesh-keys.js';
import { meshEntryInputs, meshPeerInput, type MeshSelf } from './tpo-mesh-plan.js';
import { checkMeshRecord, parseMeshRecord, ruleText, type MeshRecord, type MeshServiceInput } from './tpo-mesh-record.js';
import type { ClusterStore, StoreError, StoreEvent, StoreLease, StoreWatch } from './store.js';

/** The gateway calls a mesh makes: TpoGateway has them all. */
export interface TpoMeshGateway {
  readonly name: string;
  /** Its config now: `deliver.allow` is the default of the routes it registers. */
  readonly config: { readonly deliver: { readonly allow: readonly SourceRule[] } };
  /** The tunnel's UDP address (the default registered address unless unspecified). */
  address(): { address: string; port: number };
  addPeer(input: unknown): Promise<unknown>;
  removePeer(name: string): Promise<unknown>;
  addTableEntry(input: unknown): Promise<unknown>;
  removeTableEntry(name: string, options?: { resetFlows?: boolean }): Promise<unknown>;
}

/** Logger-like: the daemon maps it to its pino logger. */
export type TpoMeshLog = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface TpoMeshOptions {
  readonly store: ClusterStore;
  /** The cluster's key prefix, e.g. '/sluice/' (registrations go under `<prefix>gateways/`). */
  readonly prefix: string;
  /** The node's lease: the registration goes with it. */
  readonly lease: StoreLease;
  readonly gateway: TpoMeshGateway;
  /** The cluster key (readClusterKey): its name is registered, its bytes never leave the process. */
  readonly clusterKey: ClusterKey;
  /** HOST:PORT the other sites reach the tunnel at (default: the gateway's listen address; required when that is 0.0.0.0 or ::). */
  readonly address?: string;
  /** This gateway's mesh key id, 1..65535, unique in the mesh (default: from its name, defaultMeshKeyId). */
  readonly keyId?: number;
  /** Destinations behind this site (default: the gateway's deliver.allow). */
  readonly routes?: readonly string[];
  /** Services this site publishes: each other site opens a listener for each. */
  readonly services?: readonly MeshServiceInput[];
  /** Where this site opens listeners for the other sites' services (absent: none, peers only). */
  readonly listen?: { readonly host: string; readonly src?: string };
  /** Fields for every mesh peer: `maxRate`, `initialRate`, `mtu` (as in a config file's peers[]). */
  readonly peer?: Readonly<Record<string, unknown>>;
  readonly log?: TpoMeshLog;
}

interface Applied {
  readonly record: MeshRecord;
  readonly entries: readonly string[];
}

interface Refused {
  readonly reason: string;
  readonly value: string;
  /** It may apply once another registration goes (a key id or listener it needs is taken). */
  readonly retry: boolean;
}

const RESYNC_MIN_MS = 1000;
const RESYNC_MAX_MS = 10_000;
/** Refusals that may pass later (a listener port taken here, a key id another holds) are tried again, backing off to this. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

export class TpoMesh {
  readonly #o: TpoMeshOptions;
  readonly #self: MeshSelf;
  readonly #record: MeshRecord;
  readonly #dir: string;
  readonly #key: string;
  readonly #log: TpoMeshLog;
  #lease: StoreLease;
  readonly #applied = new Map<string, Applied>();
  readonly #refused = new Map<string, Refused>();
  #queue: Promise<void> = Promise.resolve();
  #watch: StoreWatch | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #resyncDelay = RESYNC_MIN_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay = RETRY_MIN_MS;
  #closing: Promise<void> | undefined;

  private constructor(o: TpoMeshOptions, record: MeshRecord) {
    this.#o = o;
    this.#record = record;
    this.#lease = o.lease;
    this.#log = o.log ?? (() => undefined);
    this.#dir = `${o.prefix}gateways/`;
    this.#key = `${this.#dir}${record.name}`;
    this.#self = {
      name: record.name,
      keyId: record.keyId,
      clusterKey: o.clusterKey,
      ...(o.peer ? { peer: o.peer } : {}),
      ...(o.listen ? { listen: o.listen } : {}),
    };
  }

  /** This gateway's registration as it would be written (InvalidArgumentError naming the field when it is not valid). */
  static record(o: TpoMeshOptions): MeshRecord {
    const gw = o.gateway;
    let address = o.address;
    if (address === undefined) {
      const a = gw.address();
      if (a.address === '0.0.0.0' || a.address === '::')
        throw new InvalidArgumentError(`TPO mesh: gateway ${gw.name} listens on ${a.address}: give the address other sites reach it at`);
      address = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    }
    const r = checkMeshRecord({
      name: gw.name,
      address,
      keyId: o.keyId ?? defaultMeshKeyId(gw.name),
      keyRef: o.clusterKey.ref,
      routes: o.routes ?? gw.config.deliver.allow.map(ruleText),
      services: o.services ?? [],
    });
    if (!r.ok) throw new InvalidArgumentError(`TPO mesh registration of ${gw.name}: ${r.reason}`);
    return r.record;
  }

  /**
   * Registers the gateway, applies the registrations there are, and
   * watches for more. Rejects (InvalidArgumentError, StoreError) with
   * nothing left behind when it cannot.
   */
  static async start(o: TpoMeshOptions): Promise<TpoMesh> {
    if (!o.prefix.endsWith('/')) throw new InvalidArgumentError(`TPO mesh: prefix '${o.prefix}' must end with /`);
    const mesh = new TpoMesh(o, TpoMesh.record(o));
    const before = await o.store.get(mesh.#key);
    // Two sites with one name would overwrite each other: say so (a restart within the lease's TTL also lands here).
    if (before && before.lease !== o.lease.id && before.value !== mesh.#record.value)
      mesh.#log('warn', `TPO mesh: replacing another registration of ${mesh.#record.name} (another site with this name, or this one before a restart)`, {
        key: mesh.#key,
      });
    await o.store.put(mesh.#key, mesh.#record.value, { lease: o.lease });
    try {
      await mesh.#enqueue(() => mesh.#sync());
      if (!mesh.#watch) throw new InvalidArgumentError('TPO mesh: the watch did not start');
    } catch (err) {
      await mesh.close();
      throw err;
    }
    mesh.#log('info', `TPO mesh: ${mesh.#record.name} registered`, { key: mesh.#key, keyId: mesh.#record.keyId, keyRef: mesh.#record.keyRef });
    return mesh;
  }

  /** The registration written (canonical JSON: no key material). */
  get record(): MeshRecord {
    return this.#record;
  }

  /** The gateways this one is paired with through the mesh, by name. */
  peers(): string[] {
    return [...this.#applied.keys()].sort();
  }

  /** Registrations refused, by gateway name, and why. */
  refused(): { name: string; reason: string }[] {
    return [...this.#refused].map(([name, r]) => ({ name, reason: r.reason })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Writes the registration again under a new lease (the node's old one was lost and a new one granted). */
  async setLease(lease: StoreLease): Promise<void> {
    this.#lease = lease;
    await this.#o.store.put(this.#key, this.#record.value, { lease });
  }

  /** Waits until every change seen so far is applied (tests, status). */
  settled(): Promise<void> {
    return this.#enqueue(() => undefined);
  }

  /**
   * Stops the watch, lets the change under way finish, and deletes the
   * registration (best effort: the lease removes it anyway). The peers
   * stay on the gateway: its owner closes it next.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * close(), then takes every peer and table entry the mesh added off the
   * gateway, which keeps running: a mesh started on it again (other
   * options, another cluster key) starts from none of them.
   */
  async leave(): Promise<void> {
    await this.close();
    for (const name of [...this.#applied.keys()]) await this.#remove(name);
  }

  async #close(): Promise<void> {
    clearTimeout(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    await this.#watch?.close().catch(() => undefined);
    this.#watch = undefined;
    await this.#queue;
    try {
      const cur = await this.#o.store.get(this.#key);
      // Another site of this name may have replaced ours: leave its registration alone.
      if (cur?.value === this.#record.value && cur.lease === this.#lease.id) await this.#o.store.delete(this.#key);
    } catch (err) {
      this.#log('warn', `TPO mesh: could not delete ${this.#key}: ${(err as Error).message} (its lease removes it)`);
    }
  }

  #enqueue(step: () => void | Promise<void>): Promise<void> {
    const run = this.#queue.then(step);
    this.#queue = run.catch((err: unknown) => this.#log('error', `TPO mesh: ${(err as Error).message}`, { err }));
    return run;
  }

  /** Reads every registration, makes the gateway match it, and watches from the revision read. */
  async #sync(): Promise<void> {
    if (this.#closing) return;
    const read = await this.#o.store.getPrefix(this.#dir);
    const seen = new Set<string>();
    // Oldest first: of two registrations with one key id, the one there first keeps it.
    for (const e of [...read.entries].sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1))) {
      const name = e.key.slice(this.#dir.length);
      seen.add(name);
      await this.#put(name, e.value);
    }
    for (const name of [...this.#applied.keys(), ...this.#refused.keys()]) if (!seen.has(name)) await this.#gone(name);
    if (this.#closing) return;
    this.#watch = await this.#o.store.watchPrefix(this.#dir, read.revision + 1n, {
      event: (ev) => void this.#enqueue(() => this.#event(ev)),
      error: (err) => this.#watchFailed(err),
      connection: (up, err) => this.#log(up ? 'info' : 'warn', `TPO mesh: store watch ${up ? 'back' : `down: ${err?.message ?? ''}`}`),
    });
    this.#resyncDelay = RESYNC_MIN_MS;
  }

  /** A watch that cannot go on (compacted, refused): read everything again after a pause, and watch anew. */
  #watchFailed(err: StoreError): void {
    this.#watch = undefined;
    if (this.#closing) return;
    this.#log('warn', `TPO mesh: store watch ended (${err.message}); reading the registrations again in ${this.#resyncDelay} ms`);
    this.#resyncTimer = setTimeout(() => {
      void this.#enqueue(async () => {
        try {
          await this.#sync();
        } catch (e) {
          this.#watchFailed(e as StoreError);
        }
      });
    }, this.#resyncDelay);
    this.#resyncTimer.unref();
    this.#resyncDelay = Math.min(this.#resyncDelay * 2, RESYNC_MAX_MS);
  }

  async #event(ev: StoreEvent): Promise<void> {
    if (this.#closing) return;
    const name = ev.key.slice(this.#dir.length);
    if (ev.type === 'put') await this.#put(name, ev.value);
    else await this.#gone(name);
  }

  async #put(name: string, value: string): Promise<void> {
    if (name === this.#record.name) {
      if (value !== this.#record.value) this.#log('warn', `TPO mesh: another writer replaced this gateway's registration ${this.#key}`);
      return;
    }
    const prior = this.#applied.get(name);
    if (prior?.record.value === value) return;
    const checked = this.#check(name, value);
    // The store no longer holds what was applied: take it away before applying (or refusing) the new one.
    if (prior) await this.#remove(name);
    if ('reason' in checked) return this.#refuse(name, value, checked.reason, checked.retry);
    await this.#apply(checked.record, value);
  }

  #check(name: string, value: string): { record: MeshRecord } | { reason: string; retry: boolean } {
    const p = parseMeshRecord(value);
    if (!p.ok) return { reason: p.reason, retry: false };
    const r = p.record;
    if (r.name !== name) return { reason: `its name '${r.name}' is not its key's ('${name}')`, retry: false };
    if (r.keyRef !== this.#record.keyRef)
      return { reason: `it uses cluster key '${r.keyRef}', this gateway has '${this.#record.keyRef}' (deploy the same key file on both sites)`, retry: false };
    if (r.keyId === this.#record.keyId) return { reason: `its keyId ${r.keyId} is this gateway's own (give each gateway its own keyId)`, retry: false };
    for (const [other, a] of this.#applied)
      if (other !== name && a.record.keyId === r.keyId)
        return { reason: `its keyId ${r.keyId} is gateway ${other}'s (give each gateway its own keyId)`, retry: true };
    return { record: r };
  }

  #refuse(name: string, value: string, reason: string, retry: boolean): void {
    const before = this.#refused.get(name);
    this.#refused.set(name, { reason, value, retry });
    // Once per value: a retry that fails again is not news.
    if (before?.value !== value || before.reason !== reason)
      this.#log('warn', `TPO mesh: registration ${this.#dir}${name} refused: ${reason}`, { gateway: name, reason });
    if (retry) this.#scheduleRetry();
  }

  /**
   * A refusal that may pass later is tried again on a timer, not only when
   * another registration goes: what it needed may be freed by something
   * outside the mesh (another process's socket on a listener's port), and a
   * site that never pairs until an operator restarts it is worse than a
   * retry. Backs off while refusals persist; one timer for all of them.
   */
  #scheduleRetry(): void {
    if (this.#retryTimer || this.#closing) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#enqueue(async () => {
        const waiting = [...this.#refused].filter(([, r]) => r.retry);
        if (!waiting.length || this.#closing) {
          this.#retryDelay = RETRY_MIN_MS;
          return;
        }
        this.#retryDelay = Math.min(this.#retryDelay * 2, RETRY_MAX_MS);
        for (const [name, r] of waiting) if (this.#refused.get(name) === r && !this.#closing) await this.#put(name, r.value);
        if (![...this.#refused.values()].some((r) => r.retry)) this.#retryDelay = RETRY_MIN_MS;
      });
    }, this.#retryDelay);
    this.#retryTimer.unref();
  }

  /** Adds the peer, then its entries; on a failure, removes what was added: all or nothing. */
  async #apply(r: MeshRecord, value: string): Promise<void> {
    const gw = this.#o.gateway;
    const added: string[] = [];
    let peerAdded = false;
    try {
      await gw.addPeer(meshPeerInput(this.#self, r));
      peerAdded = true;
      for (const entry of meshEntryInputs(this.#self, r)) {
        await gw.addTableEntry(entry);
        added.push(entry.name as string);
      }
    } catch (err) {
      for (const e of added.reverse()) await gw.removeTableEntry(e, { resetFlows: true }).catch(() => undefined);
      if (peerAdded) await gw.removePeer(r.name).catch(() => undefined);
      return this.#refuse(r.name, value, `the gateway refused it: ${(err as Error).message}`, true);
    }
    this.#refused.delete(r.name);
    this.#applied.set(r.name, { record: r, entries: added });
    this.#log('info', `TPO mesh: peer ${r.name} added (${r.address.address}:${r.address.port}, ${added.length} services)`, {
      gateway: r.name,
      entries: added,
    });
  }

  /** The registration is gone: its peer and entries go, and refused ones that waited for what it held get another try. */
  async #gone(name: string): Promise<void> {
    if (name === this.#record.name) {
      if (!this.#closing) this.#log('warn', `TPO mesh: this gateway's registration ${this.#key} was deleted (lease lost, or removed by hand)`);
      return;
    }
    this.#refused.delete(name);
    if (!(await this.#remove(name))) return;
    for (const [other, r] of [...this.#refused]) if (r.retry && !this.#closing) await this.#put(other, r.value);
  }

  async #remove(name: string): Promise<boolean> {
    const a = this.#applied.get(name);
    if (!a) return false;
    this.#applied.delete(name);
    const gw = this.#o.gateway;
    const problems: string[] = [];
    // Entries first: the gateway refuses to remove a peer an entry names.
    for (const e of a.entries) await gw.removeTableEntry(e, { resetFlows: true }).catch((err: Error) => problems.push(`entry ${e}: ${err.message}`));
    await gw.removePeer(name).catch((err: Error) => problems.push(`peer: ${err.message}`));
    if (problems.length) this.#log('error', `TPO mesh: removing peer ${name}: ${problems.join('; ')}`, { gateway: name });
    else this.#log('info', `TPO mesh: peer ${name} removed`, { gateway: name });
    return true;
  }
}
