/**
 * The cluster's keys as this node last read them: a prefix read, then
 * every watch event applied in revision order. Each value is checked when
 * it arrives; an invalid one is kept as a refusal (with its reason) and
 * the last valid version of that key, if any, stays in force — a bad
 * write changes nothing rather than half of something.
 */
import { parseKey } from './keys.js';
import { parseClusterFlow, parseClusterNode, type ClusterFlowSpec, type ClusterNodeRecord } from './records.js';
import type { ClusterSnapshot } from './plan.js';
import type { StoreEntry, StoreEvent } from './store.js';

export interface Refusal {
  readonly key: string;
  readonly reason: string;
  /** The store revision of the refused write. */
  readonly revision: string;
}

export interface GatewayEntry {
  readonly name: string;
  readonly value: string;
  readonly modRevision: bigint;
}

export class StoreView {
  readonly #prefix: string;
  readonly #nodes = new Map<string, ClusterNodeRecord & { lease?: string }>();
  readonly #flows = new Map<string, { spec: ClusterFlowSpec; createRevision: bigint }>();
  readonly #gateways = new Map<string, GatewayEntry>();
  /** Node -> create revision of its key (when its current registration began). */
  readonly #joined = new Map<string, bigint>();
  readonly #refused = new Map<string, Refusal>();
  #revision = 0n;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** Revision of the last read or event applied. */
  get revision(): bigint {
    return this.#revision;
  }

  /** Starts over from a prefix read (the first, or after a compacted watch). */
  load(entries: readonly StoreEntry[], revision: bigint): void {
    this.#nodes.clear();
    this.#joined.clear();
    this.#flows.clear();
    this.#gateways.clear();
    this.#refused.clear();
    for (const e of entries) this.#put(e.key, e.value, e.modRevision, e.createRevision, e.lease);
    this.#revision = revision;
  }

  /** Applies one watch event; returns whether anything the plan reads changed. */
  apply(ev: StoreEvent): boolean {
    if (ev.modRevision > this.#revision) this.#revision = ev.modRevision;
    if (ev.type === 'put') return this.#put(ev.key, ev.value, ev.modRevision, ev.createRevision, ev.lease);
    const k = parseKey(this.#prefix, ev.key);
    if (!k) return false;
    this.#refused.delete(ev.key);
    if (k.kind === 'nodes') {
      this.#joined.delete(k.name);
      return this.#nodes.delete(k.name);
    }
    if (k.kind === 'flows') return this.#flows.delete(k.name);
    return this.#gateways.delete(k.name);
  }

  #put(key: string, value: string, modRevision: bigint, createRevision: bigint, lease: string | undefined): boolean {
    const k = parseKey(this.#prefix, key);
    if (!k) return false;
    if (k.kind === 'gateways') {
      this.#gateways.set(k.name, { name: k.name, value, modRevision });
      return false;
    }
    const parsed = k.kind === 'nodes' ? parseClusterNode(value, k.name) : parseClusterFlow(value, k.name);
    if (!parsed.ok) {
      this.#refused.set(key, { key, reason: parsed.reason, revision: String(modRevision) });
      return false;
    }
    this.#refused.delete(key);
    if (k.kind === 'nodes') {
      this.#nodes.set(k.name, { ...(parsed.value as ClusterNodeRecord), ...(lease ? { lease } : {}) });
      this.#joined.set(k.name, createRevision);
    } else this.#flows.set(k.name, { spec: parsed.value as ClusterFlowSpec, createRevision });
    return true;
  }

  snapshot(): ClusterSnapshot {
    return { nodes: new Map(this.#nodes), flows: new Map(this.#flows), joined: new Map(this.#joined) };
  }

  nodes(): (ClusterNodeRecord & { lease?: string })[] {
    return [...this.#nodes.values()];
  }

  hasNode(name: string): boolean {
    return this.#nodes.has(name);
  }

  gateways(): GatewayEntry[] {
    return [...this.#gateways.values()];
  }

  /** The refusal standing for one key, if its last write was refused. */
  refusalOf(key: string): Refusal | undefined {
    return this.#refused.get(key);
  }

  refused(): Refusal[] {
    return [...this.#refused.values()];
  }
}
