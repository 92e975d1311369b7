/**
 * A node's registration: its record under a lease that it renews, so
 * that the store deletes it TTL after the node stops renewing (a crash, a
 * partition). Registration is create-if-absent: a live node's name is not
 * taken over. A record left by an earlier run of the same node (killed
 * before its lease expired) is waited out, so that the others see the
 * node leave and come back rather than two processes under one name.
 * When the lease is lost the node registers again with a new one, taking
 * back its own key if it is still there.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TypedEmitter } from '../events.js';
import { StoreError, type ClusterStore, type StoreLease } from './store.js';

export interface MembershipEvents {
  /** Registered (again) under a new lease. */
  registered: [leaseId: string];
  /** The lease is gone or may be: the store has (or will have) deleted the node's key. */
  lost: [StoreError];
}

export interface MembershipOptions {
  readonly store: ClusterStore;
  readonly key: string;
  readonly value: string;
  readonly ttlS: number;
}

/** Thrown when a live node holds the name past the wait. */
export class NodeNameTakenError extends StoreError {
  constructor(key: string, waitedS: number) {
    super('register', 'refused', `${key} is held by a live node (still there after ${waitedS.toFixed(1)} s): give this node another --node name`);
  }
}

export class Membership extends TypedEmitter<MembershipEvents> {
  readonly #o: MembershipOptions;
  #lease: StoreLease | undefined;
  #closed = false;
  #rejoining = false;
  /** A lost lease, revoked once the key is under a new one. */
  #stale: StoreLease | undefined;

  constructor(options: MembershipOptions) {
    super();
    this.#o = options;
  }

  get registered(): boolean {
    return this.#lease !== undefined && !this.#lease.lost;
  }

  get leaseId(): string | undefined {
    return this.#lease?.id;
  }

  /** Local time after which the store has surely expired the lease if it got no renewal (Infinity while none was granted). */
  surelyExpiredAt(): number {
    return this.#lease ? this.#lease.surelyExpiredAt() : Infinity;
  }

  /** First registration: waits out an earlier run's record (up to TTL + 2 s), then fails with NodeNameTakenError. */
  async register(): Promise<void> {
    const started = performance.now();
    const waitMs = (this.#o.ttlS + 2) * 1000;
    for (;;) {
      if (await this.#tryRegister(false)) return;
      if (performance.now() - started > waitMs) throw new NodeNameTakenError(this.#o.key, (performance.now() - started) / 1000);
      await sleep(250);
    }
  }

  /** Grants a lease and writes the record if the key is absent (or holds this very record, when `own`). */
  async #tryRegister(own: boolean): Promise<boolean> {
    const { store, key, value, ttlS } = this.#o;
    const lease = await store.grantLease(ttlS, { autoKeepAlive: true });
    try {
      let r = await store.txn({ key, value, ifModRevision: 'absent', lease });
      if (!r.succeeded && own) {
        const cur = await store.get(key);
        if (cur && cur.value === value) r = await store.txn({ key, value, ifModRevision: cur.modRevision, lease });
        else if (!cur) r = await store.txn({ key, value, ifModRevision: 'absent', lease });
      }
      if (!r.succeeded) {
        await lease.revoke().catch(() => undefined);
        return false;
      }
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
    this.#lease = lease;
    // The old lease goes only now: revoking it earlier would delete the key it may still hold.
    const stale = this.#stale;
    this.#stale = undefined;
    if (stale) void stale.revoke().catch(() => undefined);
    lease.once('lost', (err) => this.#onLost(lease, err));
    this.emit('registered', lease.id);
    return true;
  }

  /** The watch saw the node's own key deleted while the lease was thought alive: the store expired it. */
  keyDeleted(): void {
    const lease = this.#lease;
    if (lease && !lease.lost) this.#onLost(lease, new StoreError('keepAlive', 'lease-lost', 'the store deleted the node key'));
  }

  #onLost(lease: StoreLease, err: StoreError): void {
    if (this.#lease !== lease || this.#closed) return;
    this.#lease = undefined;
    this.#stale = lease;
    this.emit('lost', err);
    void this.#rejoin();
  }

  /** Registers again until it works or the membership is closed; backs off from 250 ms to 2 s. */
  async #rejoin(): Promise<void> {
    if (this.#rejoining) return;
    this.#rejoining = true;
    let wait = 250;
    try {
      while (!this.#closed && !this.registered) {
        try {
          if (await this.#tryRegister(true)) return;
        } catch {
          // Store unreachable: try again.
        }
        await sleep(wait);
        wait = Math.min(wait * 2, 2000);
      }
    } finally {
      this.#rejoining = false;
    }
  }

  /** Leaves: revokes the lease, so the store deletes the record now and the others take over at once. */
  async close(): Promise<void> {
    this.#closed = true;
    const leases = [this.#lease, this.#stale];
    this.#lease = this.#stale = undefined;
    for (const l of leases) if (l) await l.revoke().catch(() => undefined);
  }
}
