/**
 * ClusterStore on etcd through the npm `etcd3` client (pinned: its last
 * release is from 2023; everything it is used for sits behind store.ts so
 * that it can be replaced). Every unary call is bounded by `callTimeoutMs`
 * twice over: a gRPC deadline (so the request is cancelled) and a local
 * timer (so no retry policy inside the client can hold a caller past it).
 */
import { Etcd3, type IKeyValue, type Lease, type Watcher } from 'etcd3';
import { TypedEmitter } from '../events.js';
import { InvalidArgumentError } from '../errors.js';
import {
  StoreError,
  type ClusterStore,
  type LeaseOptions,
  type PrefixRead,
  type PutOptions,
  type StoreEntry,
  type StoreErrorReason,
  type StoreEvent,
  type StoreLease,
  type StoreLeaseEvents,
  type StoreWatch,
  type TxnRequest,
  type TxnResult,
  type WatchListener,
} from './store.js';

export interface EtcdStoreOptions {
  /** Client endpoints, e.g. ['127.0.0.1:2379'] or ['http://10.0.0.1:2379']. */
  endpoints: readonly string[];
  /** Bound on every call and on establishing a watch (default 3000 ms). */
  callTimeoutMs?: number;
}

const DEFAULT_CALL_TIMEOUT_MS = 3000;

/** Maps whatever the etcd3 client threw to a StoreError. */
export function toStoreError(op: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const name = err instanceof Error ? err.constructor.name : '';
  const message = err instanceof Error ? err.message : String(err);
  let reason: StoreErrorReason = 'refused';
  if (name === 'ClientClosedError') reason = 'closed';
  else if (name === 'GRPCDeadlineExceededError') reason = 'timeout';
  else if (name === 'EtcdLeaseInvalidError' || /requested lease not found/i.test(message)) reason = 'lease-lost';
  else if (/compacted/i.test(message)) reason = 'compacted';
  else if (name === 'GRPCUnavailableError' || name === 'BrokenCircuitError' || /unavailable|ECONNREFUSED|No connection established/i.test(message)) {
    reason = 'unavailable';
  }
  return new StoreError(op, reason, message, { cause: err });
}

function entryOf(kv: IKeyValue): StoreEntry {
  const lease = kv.lease && kv.lease !== '0' ? String(kv.lease) : undefined;
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    modRevision: BigInt(kv.mod_revision),
    createRevision: BigInt(kv.create_revision),
    lease,
  };
}

export class EtcdStore implements ClusterStore {
  readonly #client: Etcd3;
  readonly #timeoutMs: number;
  readonly #endpoints: number;
  #closed = false;

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) throw new InvalidArgumentError('etcd store: no endpoints');
    this.#endpoints = options.endpoints.length;
    this.#timeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const timeoutMs = this.#timeoutMs;
    this.#client = new Etcd3({
      hosts: [...options.endpoints],
      dialTimeout: timeoutMs,
      // Streams (watch, keepalive) live long; only unary calls get a deadline.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    });
  }

  /** Runs one call under the timeout; maps every failure to StoreError. */
  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError(op, 'closed', '');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreError(op, 'timeout', `no answer in ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    const work = fn();
    // The losing promise of the race must not become an unhandled rejection.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      throw toStoreError(op, err);
    } finally {
      clearTimeout(timer);
    }
  }

  async get(key: string): Promise<StoreEntry | undefined> {
    const res = await this.#call('get', () => this.#client.get(key).exec());
    const kv = res.kvs[0];
    return kv ? entryOf(kv) : undefined;
  }

  async getPrefix(prefix: string): Promise<PrefixRead> {
    const res = await this.#call('getPrefix', () => this.#client.getAll().prefix(prefix).sort('Key', 'Ascend').exec());
    return { entries: res.kvs.map(entryOf), revision: BigInt(res.header.revision) };
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<bigint> {
    const res = await this.#call('put', () => {
      const b = this.#client.put(key).value(value);
      if (options.lease) b.lease(options.lease.id);
      return b.exec();
    });
    return BigInt(res.header.revision);
  }

  async delete(key: string): Promise<boolean> {
    const res = await this.#call('delete', () => this.#client.delete().key(key).exec());
    return BigInt(res.deleted) > 0n;
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    const res = await this.#call('txn', () => {
      const put = this.#client.put(req.key).value(req.value);
      if (req.lease) put.lease(req.lease.id);
      const cmp =
        req.ifModRevision === 'absent' ? this.#client.if(req.key, 'Create', '==', 0) : this.#client.if(req.key, 'Mod', '==', req.ifModRevision.toString());
      return cmp.then(put).commit();
    });
    return { succeeded: res.succeeded, revision: BigInt(res.header.revision) };
  }

  async grantLease(ttlS: number, options: LeaseOptions = {}): Promise<StoreLease> {
    if (!Number.isInteger(ttlS) || ttlS < 1) throw new InvalidArgumentError(`lease TTL must be a whole number of seconds ≥ 1, got ${ttlS}`);
    const sent = performance.now();
    const inner = this.#client.lease(ttlS, { autoKeepAlive: false });
    // The client emits 'lost' on its own when its grant fails; EtcdLease reports loss itself.
    inner.on('lost', () => undefined);
    const id = await this.#call('grantLease', () => inner.grant());
    const lease = new EtcdLease(inner, id, ttlS, sent, performance.now(), (op, fn) => this.#call(op, fn), this.#endpoints);
    if (options.autoKeepAlive) lease.startAutoKeepAlive();
    return lease;
  }

  async watchPrefix(prefix: string, fromRevision: bigint, listener: WatchListener): Promise<StoreWatch> {
    const watcher = this.#client.watch().prefix(prefix).startRevision(fromRevision.toString()).watcher();
    // etcd 3.4 cancels a watch on a compacted revision with an empty reason:
    // a read at the revision the watch would resume at tells whether it is gone.
    const compacted = (at: bigint): Promise<boolean> => {
      return this.#call('probe', () => this.#client.get(prefix).revision(at.toString()).exec()).then(
        () => false,
        (e: unknown) => toStoreError('probe', e).reason === 'compacted',
      );
    };
    const watch = new EtcdWatch(watcher, listener, fromRevision, this.#timeoutMs, compacted);
    try {
      await this.#call(
        'watchPrefix',
        () =>
          new Promise<void>((resolve, reject) => {
            watcher.once('connected', () => resolve());
            watcher.once('error', reject);
          }),
      );
    } catch (err) {
      await watch.close();
      throw await watch.failure('watchPrefix', err);
    }
    watch.established();
    return watch;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }
}

type Caller = <T>(op: string, fn: () => Promise<T>) => Promise<T>;

/** A lease with a local expiry timer: 'lost' fires when TTL passes after the last renewal was sent with no newer success. */
class EtcdLease extends TypedEmitter<StoreLeaseEvents> implements StoreLease {
  readonly id: string;
  readonly ttlS: number;
  readonly #inner: Lease;
  readonly #call: Caller;
  #lost = false;
  #expiry: NodeJS.Timeout | undefined;
  #auto: NodeJS.Timeout | undefined;
  #surelyExpiredAt: number;

  /** Renewals sent per keepAlive() at most while endpoints refuse (see #renew). */
  readonly #tries: number;

  constructor(inner: Lease, id: string, ttlS: number, sentAt: number, answeredAt: number, call: Caller, endpoints: number) {
    super();
    this.#inner = inner;
    this.#tries = endpoints > 1 ? 2 * endpoints + 1 : 1;
    this.id = id;
    this.ttlS = ttlS;
    this.#call = call;
    this.#surelyExpiredAt = answeredAt + ttlS * 1000;
    this.#armExpiry(sentAt);
  }

  get lost(): boolean {
    return this.#lost;
  }

  surelyExpiredAt(): number {
    return this.#surelyExpiredAt;
  }

  /** The store may expire the lease TTL after it saw the renewal, which is no earlier than when it was sent. */
  #armExpiry(sentAt: number): void {
    clearTimeout(this.#expiry);
    const ms = Math.max(0, sentAt + this.ttlS * 1000 - performance.now());
    this.#expiry = setTimeout(() => this.#lose(new StoreError('lease', 'lease-lost', `lease ${this.id}: TTL ${this.ttlS} s passed with no renewal`)), ms);
  }

  #lose(err: StoreError): void {
    if (this.#lost) return;
    this.#lost = true;
    clearTimeout(this.#expiry);
    clearInterval(this.#auto);
    this.#inner.release();
    this.emit('lost', err);
  }

  async keepAlive(): Promise<void> {
    if (this.#lost) throw new StoreError('keepAlive', 'lease-lost', `lease ${this.id} is lost`);
    const sent = performance.now();
    try {
      await this.#call('keepAlive', () => this.#renew());
    } catch (err) {
      const e = toStoreError('keepAlive', err);
      if (e.reason === 'lease-lost') this.#lose(e);
      throw e;
    }
    if (this.#lost) return;
    this.#surelyExpiredAt = performance.now() + this.ttlS * 1000;
    this.#armExpiry(sent);
  }

  /**
   * One renewal, sent again at once while the endpoint it went to refuses.
   * The client opens the keepalive stream on an endpoint picked at random
   * for every call and never skips a dead one (its per-endpoint circuit
   * breaker counts the stream's opening as a success, so it never opens):
   * with one member of three dead, a third of single renewals would fail,
   * and a node could lose its lease to bad luck alone. A dead member
   * refuses at once, so another pick costs nothing; the store's call
   * timeout still bounds the whole.
   */
  async #renew(): Promise<void> {
    // Tries are counted and timed: in runs, 7 quick tries in a row sometimes all met the dead member
    // (about 1 renewal in 200, more than independent picks explain), so later tries wait 20 ms and
    // go on for up to a second.
    const until = performance.now() + 1000;
    for (let i = 1; ; i++) {
      try {
        await this.#inner.keepaliveOnce();
        return;
      } catch (err) {
        if (this.#tries === 1 || this.#lost || toStoreError('keepAlive', err).reason !== 'unavailable') throw err;
        if (i >= this.#tries && performance.now() > until) throw err;
        if (i >= this.#tries) await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  startAutoKeepAlive(): void {
    // A failed renewal is retried at the next tick; the expiry timer reports the loss.
    this.#auto = setInterval(() => this.keepAlive().catch(() => undefined), Math.max(200, (this.ttlS * 1000) / 3));
  }

  async revoke(): Promise<void> {
    if (this.#lost) return;
    await this.#call('revoke', () => this.#inner.revoke());
    this.#lose(new StoreError('lease', 'lease-lost', `lease ${this.id} was revoked`));
  }
}

/** Delivers watch responses as StoreEvents, in the order etcd sent them (revision order). */
class EtcdWatch implements StoreWatch {
  readonly #watcher: Watcher;
  readonly #timeoutMs: number;
  /** Until watchPrefix resolves, a failure is its rejection, not a listener call. */
  #established = false;
  #closed = false;

  readonly #compacted: (at: bigint) => Promise<boolean>;
  /** The revision the watch resumes at: one past the last delivered event. */
  #next: bigint;

  constructor(watcher: Watcher, listener: WatchListener, fromRevision: bigint, timeoutMs: number, compacted: (at: bigint) => Promise<boolean>) {
    this.#watcher = watcher;
    this.#next = fromRevision;
    this.#timeoutMs = timeoutMs;
    this.#compacted = compacted;
    watcher.on('data', (res) => {
      if (this.#closed) return;
      for (const raw of res.events) {
        const ev = eventOf(raw.type, raw.kv);
        this.#next = ev.modRevision + 1n;
        listener.event(ev);
      }
    });
    watcher.on('error', (err) => {
      if (this.#closed || !this.#established) return;
      void this.close();
      void this.failure('watch', err).then((e) => listener.error(e));
    });
    // The client reconnects on its own and resumes after the last revision it delivered.
    watcher.on('disconnected', (err) => {
      if (!this.#closed && this.#established) listener.connection?.(false, toStoreError('watch', err));
    });
    watcher.on('connected', () => {
      if (!this.#closed && this.#established) listener.connection?.(true);
    });
  }

  /** Maps a watch failure; a cancel with no reason is checked for compaction. */
  async failure(op: string, err: unknown): Promise<StoreError> {
    const e = toStoreError(op, err);
    if (e.reason !== 'refused' || !/Watcher canceled/.test(e.message)) return e;
    return (await this.#compacted(this.#next).catch(() => false)) ? new StoreError(op, 'compacted', e.message, { cause: err }) : e;
  }

  established(): void {
    this.#established = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The client waits for the store to confirm the cancel: bound it, a dead store never answers.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#timeoutMs)));
    await Promise.race([this.#watcher.cancel().catch(() => undefined), bound]);
    clearTimeout(timer);
  }
}

function eventOf(type: string, kv: IKeyValue): StoreEvent {
  const key = kv.key.toString('utf8');
  const modRevision = BigInt(kv.mod_revision);
  if (type === 'Delete') return { type: 'delete', key, modRevision };
  const lease = kv.lease && kv.lease !== '0' ? String(kv.lease) : undefined;
  return { type: 'put', key, value: kv.value.toString('utf8'), modRevision, createRevision: BigInt(kv.create_revision), ...(lease ? { lease } : {}) };
}
