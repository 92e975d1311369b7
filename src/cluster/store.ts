/**
 * The cluster store contract (issue 21). Sluice owns this small interface
 * so that the etcd client behind it (today the npm `etcd3` package, whose
 * last release is from 2023) can be replaced without touching the cluster
 * logic. Its shape follows etcd's model, which any replacement must offer:
 * one cluster-wide revision counter, per-key mod revisions for
 * compare-and-set, leases that delete their keys when they expire, and
 * watches that resume from a revision so nothing between a read and a
 * watch is missed.
 *
 * Keys and values are strings (UTF-8); revisions are bigint (etcd's are
 * int64, past Number.MAX_SAFE_INTEGER in principle).
 */
import { SluiceError } from '../errors.js';
import type { TypedEmitter } from '../events.js';

/** Why a store call failed; callers branch on it (a timeout may be retried, a compacted watch must re-read). */
export type StoreErrorReason =
  /** The store could not be reached or broke the connection. */
  | 'unavailable'
  /** No answer within the store's call timeout. */
  | 'timeout'
  /** The watch's start revision was compacted away: read again, then watch from the new revision. */
  | 'compacted'
  /** The lease is gone (expired, revoked, or the store says it does not know it). */
  | 'lease-lost'
  /** The store object was closed. */
  | 'closed'
  /** The store refused the request (bad argument, permission, anything else). */
  | 'refused';

/** A cluster store call failed. `op` names the call, `reason` why. Code SLUICE_ERR_STORE. */
export class StoreError extends SluiceError<'SLUICE_ERR_STORE'> {
  readonly op: string;
  readonly reason: StoreErrorReason;
  constructor(op: string, reason: StoreErrorReason, detail: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_STORE', `store ${op}: ${reason}${detail ? ` (${detail})` : ''}`, options);
    this.name = 'StoreError';
    this.op = op;
    this.reason = reason;
  }
}

/** One key as read. */
export interface StoreEntry {
  key: string;
  value: string;
  /** Revision of the last change to this key (compare-and-set uses it). */
  modRevision: bigint;
  /** Revision at which the key was created. */
  createRevision: bigint;
  /** The lease the key is attached to, or undefined. */
  lease: string | undefined;
}

/** A prefix read: the entries and the store revision they were read at (start a watch at revision + 1). */
export interface PrefixRead {
  entries: StoreEntry[];
  revision: bigint;
}

/** One change seen by a watch, in revision order. */
export type StoreEvent =
  /** `lease`: the lease the key is now attached to (as StoreEntry's), if any. */
  | { type: 'put'; key: string; value: string; modRevision: bigint; createRevision: bigint; lease?: string }
  | { type: 'delete'; key: string; modRevision: bigint };

/** A conditional write: compare-and-set on the key's mod revision, or create only if absent. */
export interface TxnRequest {
  key: string;
  value: string;
  /** 'absent': write only if the key does not exist; a bigint: only if its mod revision equals it. */
  ifModRevision: bigint | 'absent';
  lease?: StoreLease;
}

/** Result of a conditional write: whether it applied, and the store revision after it. */
export interface TxnResult {
  succeeded: boolean;
  revision: bigint;
}

export interface StoreLeaseEvents {
  /**
   * The lease may have expired: its TTL passed with no successful renewal,
   * the store said it no longer exists, or it was revoked. Emitted once;
   * the lease is dead afterwards (grant a new one).
   */
  lost: [StoreError];
}

/** A lease: keys put with it are deleted by the store when it expires or is revoked. */
export interface StoreLease extends TypedEmitter<StoreLeaseEvents> {
  /** The store's lease id (decimal string). */
  readonly id: string;
  /** TTL the store granted, in seconds. */
  readonly ttlS: number;
  /**
   * Local time (performance.now() ms) after which the store has surely
   * expired the lease if it got no renewal: TTL after the last renewal's
   * answer arrived. The partition rules wait for this before acting.
   */
  surelyExpiredAt(): number;
  /** True once 'lost' was emitted or revoke() was called. */
  readonly lost: boolean;
  /** Renews the lease once. Rejects with StoreError (reason 'lease-lost' if the store no longer has it). */
  keepAlive(): Promise<void>;
  /** Revokes the lease: its keys go now. Idempotent; rejects with StoreError on store failure. */
  revoke(): Promise<void>;
}

/** A running watch. */
export interface StoreWatch {
  /** Stops delivery; idempotent. */
  close(): Promise<void>;
}

/**
 * What a watch delivers: every change, in revision order; `error` once if
 * it cannot go on (then it is closed). A broken connection is not an
 * error: the watch resumes after the last revision it delivered, and
 * `connection` (optional) says when it went down and came back.
 */
export interface WatchListener {
  event(ev: StoreEvent): void;
  error(err: StoreError): void;
  connection?(up: boolean, err?: StoreError): void;
}

export interface PutOptions {
  lease?: StoreLease;
}

export interface LeaseOptions {
  /** Renew every TTL/3 on its own until revoked or lost (default false: the caller calls keepAlive()). */
  autoKeepAlive?: boolean;
}

/** The store Sluice's cluster layer talks to. Every call rejects with StoreError, never hangs past the store's call timeout. */
export interface ClusterStore {
  get(key: string): Promise<StoreEntry | undefined>;
  /** Every key starting with `prefix`, sorted by key, and the revision read at. */
  getPrefix(prefix: string): Promise<PrefixRead>;
  /** Writes a key; resolves with the store revision after the write. */
  put(key: string, value: string, options?: PutOptions): Promise<bigint>;
  /** Deletes a key; resolves true if it existed. */
  delete(key: string): Promise<boolean>;
  txn(req: TxnRequest): Promise<TxnResult>;
  grantLease(ttlS: number, options?: LeaseOptions): Promise<StoreLease>;
  /**
   * Delivers every put and delete under `prefix` with revision ≥
   * `fromRevision`, in order. Resolves once the watch is established.
   */
  watchPrefix(prefix: string, fromRevision: bigint, listener: WatchListener): Promise<StoreWatch>;
  /** Closes the client; later calls reject with StoreError reason 'closed'. */
  close(): void;
}
