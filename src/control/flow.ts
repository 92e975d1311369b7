/**
 * Flow: the handle `Sluice.apply()` returns for a running redirect or
 * replicate policy. It emits what happens to the flow (FlowEvents) and
 * ends exactly once, by remove() or by its Sluice's close(); every call
 * after that rejects with ClosedError, except remove(), which returns the
 * same promise (the same final counters) every time. Its name, type,
 * listen address and spec stay readable after it ended (as they last were).
 */
import type { RunningFlowRecord, PolicyTable } from './policy-table.js';
import { endpointKey, formatEndpoint, parseEndpointInput, type Endpoint, type EndpointInput } from '../wire/endpoint.js';
import type { FlowPolicy, FlowPolicySpec, TierName } from '../policy/schema.js';
import type { FlowStats } from '../dataplane/common/counters.js';
import type { FlowDetail } from '../dataplane/tiers.js';
import { ClosedError, InvalidArgumentError, PolicyValidationError, type EngineFailedError } from '../errors.js';
import { TypedEmitter } from '../events.js';
import type { MediaAlarm } from '../media/monitor-types.js';
import type { MonitoredFlowStats } from './flow-taps.js';
import { FastChannelChange, type TapSource } from './fast-channel-change.js';
import type { RapCachePayload } from '../media/rap-cache.js';

export type { EndpointInput };

/** Events of a Flow (`flow.on(name, listener)`); a throwing listener is reported as 'listenererror', never thrown. */
export interface FlowEvents {
  /** The policy in force changed (update, replace, addSubscriber, removeSubscriber): the new validated policy. */
  update: [spec: FlowPolicySpec];
  /**
   * Subscriber `to` (`udp://HOST:PORT`) was suspended until `until` (ms
   * since the epoch) after the errors policy `suspendAfterErrors` allows,
   * or resumed (`until` 0). Reported by the batched and kernel tiers; the
   * portable tier suspends too (see stats()) but does not report it.
   */
  suspension: [to: string, until: number];
  /**
   * The stream monitor (payload 'mpegts', 'rtp' or 'rtp-mpegts' with
   * monitor on) raised or cleared an alarm: a TR 101 290 indicator, RTP
   * loss, an SSRC change, the stream stopping. Once per episode each way.
   */
  alarm: [alarm: MediaAlarm];
  /**
   * Subscriber `to` sent no RTCP report for the policy's
   * subscriberTimeoutMs and is sent nothing (`silent` true), or reported
   * again and is fed again (false). Only with rtcp 'port+1'.
   */
  silence: [to: string, silent: boolean];
  /** The Sluice's engine stopped on its own (Sluice 'engineFailed'): this flow moves no packets any more. */
  engineFailed: [error: EngineFailedError];
  /** remove() took the flow down; 'close' follows. */
  remove: [];
  /** The flow's Sluice closed; 'close' follows. */
  sluiceclose: [];
  /**
   * The flow is gone, with its final counters (undefined when its Sluice
   * closed with keepForwarding: the flow forwards on, in the kernel).
   * Emitted once, whichever way the flow ended.
   */
  close: [stats: FlowStats | undefined];
}

/** Events of `flow.observer`: for code that watches flows it does not own (metrics, logs). */
export interface FlowObserverEvents {
  update: [spec: FlowPolicySpec];
  close: [];
}

/** @internal What a Flow needs from the Sluice that made it. */
export interface FlowParent {
  readonly table: PolicyTable;
  readonly id: string;
  readonly tier: TierName;
  /** Receives the calls only the Sluice makes on this flow. */
  bind(control: FlowControl): void;
  /** remove() started: the Sluice forgets the flow. */
  removing(flow: Flow): void;
  /** remove() finished, with the final counters. */
  removed(flow: Flow, stats: FlowStats | undefined): void;
}

/** @internal The calls only the flow's Sluice makes. */
export interface FlowControl {
  /** The Sluice is closing: the flow refuses calls from now on, and ends with `final` once it settles. */
  sluiceClosing(final: Promise<FlowStats | undefined>): Promise<FlowStats | undefined>;
  engineFailed(error: EngineFailedError): void;
  suspension(to: string, until: number): void;
  alarm(alarm: MediaAlarm): void;
  silence(to: string, silent: boolean): void;
}

export class Flow extends TypedEmitter<FlowEvents> {
  readonly #table: PolicyTable;
  readonly #id: string;
  readonly #tier: TierName;
  readonly #parent: FlowParent;
  readonly #observer = new TypedEmitter<FlowObserverEvents>();
  #closed = false;
  /** The flow's end: set once, by remove() or by the Sluice closing; every remove() returns it. */
  #ending: Promise<FlowStats | undefined> | undefined;
  /** The table's entry as last seen: name, listen and spec stay readable after the flow ended. */
  #last: RunningFlowRecord | undefined;
  /** The monitor tap #fcc reads (policy fastChannelChange on a monitored flow): the cache and the joins in progress. */
  #tap: TapSource | undefined;
  #fcc: FastChannelChange | undefined;

  /** @internal Created by Sluice.apply(). */
  constructor(parent: FlowParent) {
    super();
    this.#table = parent.table;
    this.#id = parent.id;
    this.#tier = parent.tier;
    this.#parent = parent;
    this.#last = parent.table.get(parent.id);
    parent.bind({
      sluiceClosing: (final) => this.#sluiceClosing(final),
      engineFailed: (error) => {
        if (!this.#closed) this.emit('engineFailed', error);
      },
      suspension: (to, until) => {
        if (!this.#closed) this.emit('suspension', to, until);
      },
      alarm: (alarm) => {
        if (!this.#closed) this.emit('alarm', alarm);
      },
      silence: (to, silent) => {
        if (!this.#closed) this.emit('silence', to, silent);
      },
    });
    this.#syncFastChannelChange();
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
  /** True once the flow is removed or its Sluice closed. */
  get closed(): boolean {
    return this.#closed;
  }
  /** The same as `closed` (the name of earlier versions). */
  get removed(): boolean {
    return this.#closed;
  }
  /** Events for watchers that do not own the flow: 'update', 'close'. */
  get observer(): TypedEmitter<FlowObserverEvents> {
    return this.#observer;
  }

  /**
   * Changes the running policy: the patch is merged into the current policy
   * and validated whole. Destinations kept across the change lose nothing.
   * `type`, `name` and `listen` cannot change.
   */
  async update(patch: Partial<FlowPolicy>): Promise<void> {
    this.#assertLive();
    this.#updated(await this.#table.update(this.#id, patch));
  }

  /**
   * Replaces the whole policy: fields not given return to their defaults.
   * The same rules as update() apply (type, name, listen fixed; kept
   * destinations lose nothing).
   */
  async replace(policy: FlowPolicy): Promise<void> {
    this.#assertLive();
    this.#updated(await this.#table.update(this.#id, () => ({ ...(policy as object) })));
  }

  /**
   * Adds a subscriber to a replicate flow (no-op if already subscribed).
   * With policy `fastChannelChange` it first gets a burst from the flow's
   * cache, then live datagrams, and resolves once the data plane serves it.
   */
  async addSubscriber(to: EndpointInput): Promise<void> {
    const endpoint = subscriberEndpoint(to);
    const key = endpointKey(endpoint);
    const edit = (list: EndpointInput[]): EndpointInput[] => (list.some((t) => safeKey(t) === key) ? list : [...list, to]);
    const fcc = this.#fcc;
    const spec = this.#closed ? undefined : this.spec;
    if (!fcc || spec?.type !== 'replicate' || spec.to.some((t) => endpointKey(t) === key)) {
      await this.#editSubscribers('addSubscriber', edit);
      return;
    }
    const withIt = (cur: Readonly<Record<string, unknown>>): Record<string, unknown> => ({ ...cur, to: edit((cur.to as EndpointInput[] | undefined) ?? []) });
    // Nothing is sent to an address the policy would refuse (a relay loop, a duplicate).
    this.#table.check(this.#id, withIt);
    await fcc.add(endpoint, async (after, force) => {
      const { entry, result } = await this.#table.join(this.#id, withIt, {
        counter: fcc.counter,
        after,
        force,
      });
      if (entry) this.#updated(entry);
      return result;
    });
  }

  /** Removes a subscriber from a replicate flow (no-op if not subscribed). */
  async removeSubscriber(to: EndpointInput): Promise<void> {
    const key = subscriberKey(to);
    this.#fcc?.cancel(subscriberEndpoint(to));
    await this.#editSubscribers('removeSubscriber', (list) => list.filter((t) => safeKey(t) !== key));
  }

  /** Applies `edit` to the subscriber list as the policy table holds it, inside its queue. */
  async #editSubscribers(op: string, edit: (list: EndpointInput[]) => EndpointInput[]): Promise<void> {
    this.#assertLive();
    const entry = await this.#table.update(this.#id, (cur) => {
      if (cur.type !== 'replicate') throw new InvalidArgumentError(`${op}: flow '${this.name}' is a ${String(cur.type)}, not a replicate`);
      return { ...cur, to: edit((cur.to as EndpointInput[] | undefined) ?? []) };
    });
    this.#updated(entry);
  }

  #updated(entry: RunningFlowRecord): void {
    this.#last = entry;
    this.#syncFastChannelChange();
    this.emit('update', entry.spec);
    this.#observer.emit('update', entry.spec);
  }

  /**
   * Starts, changes or stops the fast channel change cache to follow the
   * policy and the flow's monitor tap (the table opens and closes taps).
   */
  #syncFastChannelChange(): void {
    const spec = this.#closed ? undefined : this.#entry().spec;
    const tap = this.#closed ? undefined : this.#table.taps.get(this.#id);
    const want = spec?.type === 'replicate' && spec.payload !== 'any' && tap ? spec.fastChannelChange : undefined;
    const have = this.#fcc?.options;
    if (want && have && this.#tap === tap && have.maxCacheBytes === want.maxCacheBytes && have.payload === spec!.payload) {
      this.#fcc!.burstRate = want.burstRate;
      return;
    }
    this.#fcc?.close();
    this.#tap = want ? tap : undefined;
    this.#fcc = want ? new FastChannelChange(tap!, { payload: spec!.payload as RapCachePayload, ...want }) : undefined;
  }

  /**
   * Counter snapshot (synchronous, cheap). A monitored flow's stream
   * findings are in `media` (RTP and TS counters, alarms now raised);
   * with policy fastChannelChange, its cache and joins in `fastChannelChange`.
   */
  stats(): MonitoredFlowStats {
    this.#assertLive();
    const s = this.#table.stats(this.#id);
    if (!s) throw new ClosedError(`flow '${this.name}'`);
    return this.#fcc ? { ...s, fastChannelChange: this.#fcc.stats() } : s;
  }

  /**
   * Tier-specific detail, tagged with the tier (`detail.tier`) so callers
   * can narrow: batched, batching and GSO figures; kernel, which
   * subscribers are copied in the kernel, punts and spills; portable,
   * nothing more. For diagnostics.
   */
  detail(): FlowDetail {
    this.#assertLive();
    const raw = this.#table.plane.flowDetail?.(this.#id);
    // A plane reports its own tier's shape (FlowDetail in dataplane/tiers.ts); the tag is what tells them apart.
    return { ...(raw as object | undefined), tier: this.#tier } as FlowDetail;
  }

  /**
   * Stops the flow, lets copies already queued leave, releases its
   * resources and resolves with its final counters ('remove', then
   * 'close'). Idempotent: every call returns the same promise, also after
   * the Sluice closed (then with the counters the close gave the flow).
   */
  remove(): Promise<FlowStats | undefined> {
    this.#ending ??= this.#remove();
    return this.#ending;
  }

  async #remove(): Promise<FlowStats | undefined> {
    this.#last = this.#table.get(this.#id) ?? this.#last;
    this.#closed = true;
    this.#parent.removing(this);
    let stats: FlowStats | undefined;
    try {
      stats = await this.#table.remove(this.#id);
    } finally {
      this.#end('remove', stats);
      this.#parent.removed(this, stats);
    }
    return stats;
  }

  #sluiceClosing(final: Promise<FlowStats | undefined>): Promise<FlowStats | undefined> {
    this.#last = this.#table.get(this.#id) ?? this.#last;
    this.#closed = true;
    this.#ending ??= final.then(
      (stats) => {
        this.#end('sluiceclose', stats);
        return stats;
      },
      (err: unknown) => {
        this.#end('sluiceclose', undefined);
        throw err;
      },
    );
    return this.#ending;
  }

  /** The flow is gone: why, then 'close' (listener errors never reach the caller: TypedEmitter). */
  #end(why: 'remove' | 'sluiceclose', stats: FlowStats | undefined): void {
    this.#fcc?.close();
    this.#fcc = undefined;
    this.emit(why);
    this.emit('close', stats);
    this.#observer.emit('close');
  }

  /** The table's entry while the flow runs; after it ended, the last one seen. */
  #entry(): RunningFlowRecord {
    const e = this.#table.get(this.#id) ?? this.#last;
    if (!e) throw new ClosedError(`flow ${this.#id}`);
    this.#last = e;
    return e;
  }

  #assertLive(): void {
    if (this.#closed) throw new ClosedError(`flow ${this.#id}`);
  }
}

function subscriberEndpoint(to: EndpointInput): Endpoint {
  const parsed = parseEndpointInput(to);
  if (!parsed.ok) throw new PolicyValidationError([{ path: 'to', message: parsed.reason }]);
  return parsed.endpoint;
}

function subscriberKey(to: EndpointInput): string {
  return endpointKey(subscriberEndpoint(to));
}

function safeKey(to: EndpointInput): string | undefined {
  try {
    return subscriberKey(to);
  } catch {
    return undefined;
  }
}
