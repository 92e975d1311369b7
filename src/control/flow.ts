/**
 * Flow: the handle `Sluice.apply()` returns for a running redirect or
 * replicate policy.
 */
import type { PolicyTable } from './policy-table.js';
import { endpointKey, formatEndpoint, parseEndpointInput, type Endpoint, type EndpointInput } from '../wire/endpoint.js';
import type { FlowPolicy, FlowPolicySpec, TierName } from '../policy/schema.js';
import type { FlowStats } from '../stats/counters.js';
import { ClosedError, InvalidArgumentError, PolicyValidationError } from '../errors.js';

export type { EndpointInput };

export class Flow {
  readonly #table: PolicyTable;
  readonly #id: string;
  readonly #tier: TierName;
  readonly #onRemoved: (flow: Flow) => void;
  #removed = false;

  /** @internal Created by Sluice.apply(). */
  constructor(table: PolicyTable, id: string, tier: TierName, onRemoved: (flow: Flow) => void) {
    this.#table = table;
    this.#id = id;
    this.#tier = tier;
    this.#onRemoved = onRemoved;
  }

  get id(): string {
    return this.#id;
  }
  get name(): string {
    return this.#entry().plan.name;
  }
  get type(): 'redirect' | 'replicate' {
    return this.#entry().plan.type;
  }
  get tier(): TierName {
    return this.#tier;
  }
  /** The listen address as bound (a requested port 0 shows the chosen port). */
  get listen(): Endpoint {
    return this.#entry().listen;
  }
  /** `udp://HOST:PORT` form of `listen`. */
  get listenUrl(): string {
    return formatEndpoint(this.listen);
  }
  /** The validated policy now in force. */
  get spec(): FlowPolicySpec {
    return this.#entry().spec;
  }
  get removed(): boolean {
    return this.#removed;
  }

  /**
   * Changes the running policy: the patch is merged into the current policy
   * and validated whole. Destinations kept across the change lose nothing.
   * `type`, `name` and `listen` cannot change.
   */
  async update(patch: Partial<FlowPolicy>): Promise<void> {
    this.#assertLive();
    await this.#table.update(this.#id, patch);
  }

  /**
   * Replaces the whole policy: fields not given return to their defaults.
   * The same rules as update() apply (type, name, listen fixed; kept
   * destinations lose nothing).
   */
  async replace(policy: FlowPolicy): Promise<void> {
    this.#assertLive();
    await this.#table.update(this.#id, () => ({ ...(policy as object) }));
  }

  /** Adds a subscriber to a replicate flow (no-op if already subscribed). */
  async addSubscriber(to: EndpointInput): Promise<void> {
    const key = subscriberKey(to);
    await this.#editSubscribers('addSubscriber', (list) => (list.some((t) => safeKey(t) === key) ? list : [...list, to]));
  }

  /** Removes a subscriber from a replicate flow (no-op if not subscribed). */
  async removeSubscriber(to: EndpointInput): Promise<void> {
    const key = subscriberKey(to);
    await this.#editSubscribers('removeSubscriber', (list) => list.filter((t) => safeKey(t) !== key));
  }

  /** Applies `edit` to the subscriber list as the policy table holds it, inside its queue. */
  async #editSubscribers(op: string, edit: (list: EndpointInput[]) => EndpointInput[]): Promise<void> {
    this.#assertLive();
    await this.#table.update(this.#id, (cur) => {
      if (cur.type !== 'replicate') throw new InvalidArgumentError(`${op}: flow '${this.name}' is a ${String(cur.type)}, not a replicate`);
      return { ...cur, to: edit((cur.to as EndpointInput[] | undefined) ?? []) };
    });
  }

  /** Counter snapshot (synchronous, cheap). */
  stats(): FlowStats {
    this.#assertLive();
    const s = this.#table.plane.flowStats(this.#id);
    if (!s) throw new ClosedError(`flow '${this.name}'`);
    return s;
  }

  /**
   * Tier-specific detail (batched: batching and GSO figures; kernel: which
   * subscribers are copied in the kernel, punts and spills). For
   * diagnostics; the shape is not shared between tiers.
   */
  detail(): unknown {
    this.#assertLive();
    return this.#table.plane.flowDetail?.(this.#id);
  }

  /**
   * Stops the flow, lets copies already queued leave, releases its
   * resources and resolves with its final counters. Idempotent: later
   * calls resolve with undefined.
   */
  async remove(): Promise<FlowStats | undefined> {
    if (this.#removed) return undefined;
    this.#removed = true;
    this.#onRemoved(this);
    return this.#table.remove(this.#id);
  }

  /** @internal Marks the handle dead when its Sluice instance closes. */
  markRemoved(): void {
    this.#removed = true;
  }

  #entry() {
    const e = this.#table.get(this.#id);
    if (!e) throw new ClosedError(`flow ${this.#id}`);
    return e;
  }

  #assertLive(): void {
    if (this.#removed) throw new ClosedError(`flow ${this.#id}`);
  }
}

function subscriberKey(to: EndpointInput): string {
  const parsed = parseEndpointInput(to);
  if (!parsed.ok) throw new PolicyValidationError([{ path: 'to', message: parsed.reason }]);
  return endpointKey(parsed.endpoint);
}

function safeKey(to: EndpointInput): string | undefined {
  try {
    return subscriberKey(to);
  } catch {
    return undefined;
  }
}
