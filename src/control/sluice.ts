/**
 * Sluice: the library's entry point. Opens a data plane for one tier,
 * turns policies into running flows, and sends one-shot sends through a
 * Sender on the same tier. It emits what happens to the instance
 * (SluiceEvents; `observer` for watchers that do not own it) and closes
 * once, in order: the sender (its stream schedulers, then its engine),
 * the flows, the data plane.
 */
import { createDataPlane } from '../dataplane/tiers.js';
import type { DataPlane, HostDrops } from '../dataplane/common/types.js';
import { PolicyTable } from './policy-table.js';
import { FlowTaps } from './flow-taps.js';
import { createMonitor } from './stream-monitors.js';
import { Flow, type FlowControl } from './flow.js';
import type { FlowPolicy, SendEngineName, TierChoice, TierName } from '../policy/schema.js';
import { parsePolicy } from '../policy/validate.js';
import type { AggregateResult, WriteResult } from '../sender/results.js';
import type { StreamScheduler, StreamSchedulerOptions } from '../sender/stream-scheduler.js';
import { Sender, type AggregateInput, type WriteEntryInput, type WriteOptions } from './sender.js';
import type { FlowStats } from '../dataplane/common/counters.js';
import type { MonitoredFlowStats } from './flow-taps.js';
import { ClosedError, ConflictError, NotSupportedError, type EngineFailedError } from '../errors.js';
import { TypedEmitter } from '../events.js';
import { TcpRelay, type TcpRelayStats } from './tcp-relay.js';
import type { TcpRedirectPolicy } from '../policy/tcp-redirect.js';

/** Events of a Sluice instance (`sluice.on(name, listener)`); a throwing listener is reported as 'listenererror', never thrown. */
export interface SluiceEvents {
  /**
   * The tier's engine stopped on its own (e.g. the batched tier's worker
   * thread died): the flows no longer move packets (each flow emits
   * 'engineFailed' too). Emitted once; later apply/update calls reject
   * with the same error, stats() keeps the last counters, close()
   * releases what is left. Nothing is thrown when no one listens: check
   * `sluice.failure`.
   */
  engineFailed: [error: EngineFailedError];
  /** apply() started `flow`. */
  flowadded: [flow: Flow];
  /** apply() started a tcp-redirect (its TcpRelay). */
  tcpflowadded: [flow: TcpRelay];
  /** A tcp-redirect was closed (remove()), with its last counters (those closed by close() are in 'close' of the TcpRelay). */
  tcpflowremoved: [flow: TcpRelay, stats: TcpRelayStats];
  /** flow.remove() stopped `flow`, with its final counters (flows stopped by close() are in 'close'). */
  flowremoved: [flow: Flow, stats: FlowStats | undefined];
  /** close() has finished, with what it resolves with (the flows' final counters). Emitted once. */
  close: [stats: MonitoredFlowStats[]];
  /**
   * Something outside Sluice on this host limits its flows, with what to
   * change: the kernel tier's first backlog queue drops (HostDrops), once.
   */
  hostwarning: [message: string];
}

/** Events of `sluice.observer`: for code that watches a Sluice it does not own (metrics, logs). */
export interface SluiceObserverEvents {
  newflow: [flow: Flow];
  newscheduler: [scheduler: StreamScheduler];
  close: [];
}

export interface SluiceOptions {
  /** Which tier runs the flows; `auto` (default) takes the fastest the host supports. */
  tier?: TierChoice;
  /** Socket buffer size to request, bytes (default 4 MiB; Linux caps it at rmem_max/wmem_max). */
  socketBufferBytes?: number;
  /** Batched tier: most time (ms) a datagram waits to be batched with others (default 1; 0 = none). */
  batchHoldMs?: number;
  /** Batched tier: worker threads per flow, each source steered to one (SO_REUSEPORT + BPF); 'auto' = one per core (default 1). */
  workers?: number | 'auto';
  /**
   * Kernel tier: pin maps and links in bpffs (true: /sys/fs/bpf/sluice, or a
   * bpffs directory) so forwarding can outlive this process; pinned flows
   * of an earlier process are adopted by `apply` on the same listen address.
   */
  kernelPin?: boolean | string;
  /** Kernel tier: attach ingress only on these interfaces (lo egress always). */
  kernelInterfaces?: string[];
  /** Kernel tier: run redirect flows at XDP, in the driver ('xdp': native or generic mode; 'auto': native only), or at tcx only ('tcx', the default). */
  kernelHook?: 'xdp' | 'tcx' | 'auto';
}

export class Sluice extends TypedEmitter<SluiceEvents> {
  readonly #plane: DataPlane;
  readonly #table: PolicyTable;
  /** Running flows by id, in the order they were applied, with the calls only this Sluice makes on them. */
  readonly #flows = new Map<string, { readonly flow: Flow; readonly control: FlowControl }>();
  readonly #observer = new TypedEmitter<SluiceObserverEvents>();
  /** Running tcp-redirects, in the order they were applied (TCP: not in the policy table, no tier). */
  readonly #tcp = new Set<TcpRelay>();
  #closed = false;
  #closing: Promise<MonitoredFlowStats[]> | undefined;

  readonly #options: SluiceOptions;
  /** One-shot sends on this tier's send engine (started on the first send). */
  readonly #sender: Sender;

  private constructor(plane: DataPlane, options: SluiceOptions) {
    super();
    this.#plane = plane;
    this.#options = options;
    this.#table = new PolicyTable(plane, new FlowTaps(createMonitor, (id, alarm) => this.#flows.get(id)?.control.alarm(alarm)), (id, to, silent) =>
      this.#flows.get(id)?.control.silence(to, silent),
    );
    this.#sender = new Sender(plane.tier);
  }

  /**
   * Opens an engine on `options.tier`. Rejects with NotSupportedError when
   * an explicitly requested tier is unavailable, saying why.
   */
  static async open(options: SluiceOptions = {}): Promise<Sluice> {
    // The plane exists before the instance: a failure in between is kept and re-emitted.
    let sluice: Sluice | undefined;
    let early: EngineFailedError | undefined;
    const plane = await createDataPlane(options.tier ?? 'auto', {
      socketBufferBytes: options.socketBufferBytes,
      batchHoldMs: options.batchHoldMs,
      workers: options.workers,
      kernelPin: options.kernelPin,
      kernelInterfaces: options.kernelInterfaces,
      kernelHook: options.kernelHook,
      onEngineFailed: (error) => {
        if (sluice) sluice.#engineFailed(error);
        else early = error;
      },
      onSuspension: (id, to, until) => {
        // No flow exists before the instance: nothing to keep.
        if (sluice) sluice.#suspension(id, to, until);
      },
      // Sampled while flows run, so after the instance exists.
      onHostWarning: (message) => sluice?.emit('hostwarning', message),
    });
    sluice = new Sluice(plane, options);
    if (early) {
      const e = early;
      queueMicrotask(() => sluice!.#engineFailed(e));
    }
    return sluice;
  }

  /** Why the engine stopped, once it did ('engineFailed'); undefined while it runs. */
  get failure(): EngineFailedError | undefined {
    return this.#plane.failure;
  }

  #engineFailed(error: EngineFailedError): void {
    if (this.#closed) return;
    this.emit('engineFailed', error);
    for (const { control } of [...this.#flows.values()]) control.engineFailed(error);
  }

  #suspension(id: string, to: string, until: number): void {
    this.#flows.get(id)?.control.suspension(to, until);
  }

  /** The tier this instance runs on. */
  get tier(): TierName {
    return this.#plane.tier;
  }

  /** The engine sendAggregate/write/streams use here (the tier registry's choice: the batched one on the batched and kernel tiers). */
  get sendEngine(): SendEngineName {
    return this.#sender.engine;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Events for watchers that do not own this instance: 'newflow', 'newscheduler', 'close'. */
  get observer(): TypedEmitter<SluiceObserverEvents> {
    return this.#observer;
  }

  /**
   * Validates `policy` and starts it ('flowadded'). Rejects with
   * PolicyValidationError (naming the field), ConflictError (listen address
   * taken by another flow) or SyscallError (e.g. bind: EADDRINUSE).
   * Only redirect and replicate policies are flows: an aggregate or segment
   * is a type error, and rejects with NotSupportedError when passed anyway
   * (from JavaScript): use sendAggregate() or write().
   */
  async apply(policy: TcpRedirectPolicy): Promise<TcpRelay>;
  async apply(policy: FlowPolicy): Promise<Flow>;
  async apply(policy: FlowPolicy | TcpRedirectPolicy): Promise<Flow | TcpRelay> {
    if (this.#closed) throw new ClosedError('Sluice');
    if ((policy as { type?: unknown }).type === 'tcp-redirect') return this.#applyTcp(policy as TcpRedirectPolicy);
    const spec = parsePolicy(policy);
    if (spec.name !== undefined && this.tcpFlow(spec.name)) throw new ConflictError(`a tcp-redirect named '${spec.name}' is already running`);
    if (spec.type === 'aggregate' || spec.type === 'segment') {
      throw new NotSupportedError(`${spec.type} policies cannot be applied as flows`, `they are one-shot sends: use sluice.sendAggregate() or sluice.write()`);
    }
    const entry = await this.#table.add(policy as FlowPolicy);
    // close() began meanwhile: it stops (or, keepForwarding, keeps) this flow with the others, without a handle.
    if (this.#closed) throw new ClosedError('Sluice');
    let control: FlowControl | undefined;
    const flow = new Flow({
      table: this.#table,
      id: entry.id,
      tier: this.tier,
      bind: (c) => (control = c),
      removing: (f) => this.#flows.delete(f.id),
      removed: (f, stats) => this.emit('flowremoved', f, stats),
    });
    this.#flows.set(entry.id, { flow, control: control! });
    this.emit('flowadded', flow);
    this.#observer.emit('newflow', flow);
    return flow;
  }

  /**
   * A tcp-redirect: its listening socket is this process's, on every tier
   * (the bytes move by splice(2) or in user space, not in the tier's
   * engine). Its name must not be another flow's (ConflictError).
   */
  async #applyTcp(policy: TcpRedirectPolicy): Promise<TcpRelay> {
    const name = policy.name;
    if (name !== undefined && (this.flow(name) || this.tcpFlow(name))) throw new ConflictError(`a flow named '${name}' is already running`);
    const relay = await TcpRelay.start(policy);
    if (this.#closed) {
      await relay.close();
      throw new ClosedError('Sluice');
    }
    this.#tcp.add(relay);
    relay.once('close', (stats) => {
      // Removed by its owner (not by this Sluice's close(), which clears the set first).
      if (this.#tcp.delete(relay)) this.emit('tcpflowremoved', relay, stats);
    });
    this.emit('tcpflowadded', relay);
    return relay;
  }

  /** Running tcp-redirects, in the order they were applied. */
  tcpFlows(): TcpRelay[] {
    return [...this.#tcp];
  }

  /** The running tcp-redirect called `name` (its policy's name, or its listen URL), if any. */
  tcpFlow(name: string): TcpRelay | undefined {
    return this.tcpFlows().find((f) => f.name === name);
  }

  /**
   * Sends many messages, each to its own destination, in one call, on the
   * given schedule: Sender.sendAggregate on this tier's send engine
   * (`result.engine`; on the kernel tier the batched one).
   */
  async sendAggregate(aggregate: AggregateInput): Promise<AggregateResult> {
    if (this.#closed) throw new ClosedError('Sluice');
    return this.#sender.sendAggregate(aggregate);
  }

  /**
   * Segmented multi-destination write: Sender.write on this tier's send
   * engine. The caller must not change the buffers before it resolves.
   */
  async write(entries: readonly WriteEntryInput[], options: WriteOptions = {}): Promise<WriteResult> {
    if (this.#closed) throw new ClosedError('Sluice');
    return this.#sender.write(entries, options);
  }

  /**
   * A stream scheduler whose writes go through this Sluice's write():
   * streams added to it, each with its own destination, data and bitrate,
   * are paced together, everything due from all of them going out as one
   * write per tick (docs/POLICY.md, "Stream scheduler"). close() of this
   * Sluice closes it first (its streams end as 'closed'), so closing it
   * yourself is optional.
   */
  streams(options: StreamSchedulerOptions): StreamScheduler {
    if (this.#closed) throw new ClosedError('Sluice');
    const scheduler = this.#sender.streams(options);
    this.#observer.emit('newscheduler', scheduler);
    return scheduler;
  }

  /** Running flows, in the order they were applied. */
  flows(): Flow[] {
    return [...this.#flows.values()].map((f) => f.flow);
  }

  /** The running flow called `name`, if any. */
  flow(name: string): Flow | undefined {
    return this.flows().find((f) => f.name === name);
  }

  /** Counter snapshots of every running flow. */
  stats(): MonitoredFlowStats[] {
    return this.flows().map((f) => f.stats());
  }

  /** Kernel tier: drops outside Sluice on this host while its flows ran (host-wide, see HostDrops); undefined on other tiers. */
  hostDrops(): HostDrops | undefined {
    return this.#plane.hostDrops?.();
  }

  /**
   * Closes everything this instance holds and resolves with the final
   * counters of the flows it stopped (tcp-redirects, closed alongside,
   * report theirs in their own 'close'). In order: the stream schedulers made
   * by streams() (a write in flight completes; streams end 'closed'); the
   * flows (each emits 'sluiceclose', then 'close' with its final counters;
   * its remove() resolves with them); the send engine; the data plane;
   * then 'close' here. Idempotent: every call returns the same promise.
   *
   * `keepForwarding` (kernel tier opened with `kernelPin`): the flows stay
   * in the pinned maps and go on forwarding in the kernel after this
   * process; a later Sluice with the same pin root adopts them (the daemon
   * restart case), `sluice detach` removes them. Resolves with the counters
   * as they stood (the flows' 'close' carries undefined: they did not
   * stop). Other tiers ignore it and stop everything.
   */
  close(options: { keepForwarding?: boolean } = {}): Promise<MonitoredFlowStats[]> {
    this.#closing ??= this.#close(options.keepForwarding === true && this.#keepsForwarding);
    return this.#closing;
  }

  async #close(keep: boolean): Promise<MonitoredFlowStats[]> {
    // Everything below starts before the first await: from here on nothing new starts and no flow takes calls.
    this.#closed = true;
    const sent = this.#sender.close();
    const tcp = [...this.#tcp];
    this.#tcp.clear();
    const tcpClosed = Promise.all(tcp.map((r) => r.close()));
    const flows = [...this.#flows.values()];
    this.#flows.clear();
    const kept = keep ? flows.map(({ flow }) => flow.stats()) : [];
    const cleared = sent.then(() => (keep ? new Map<string, MonitoredFlowStats>() : this.#table.clear()));
    const ended = flows.map(({ flow, control }) => control.sluiceClosing(cleared.then((m) => m.get(flow.id))));
    let final: MonitoredFlowStats[] = [];
    try {
      await Promise.all([...ended, tcpClosed]);
      final = keep ? kept : [...(await cleared).values()];
    } finally {
      await this.#plane.close({ keepForwarding: keep });
      this.#table.closeSideSockets();
      this.emit('close', final);
      this.#observer.emit('close');
    }
    return final;
  }

  /**
   * Kernel tier with pinned state: deletes flows a previous process left
   * pinned that no `apply` of this one has claimed. Call once the
   * configuration is applied. Returns how many were removed (0 elsewhere).
   */
  sweepUnclaimed(): number {
    const p = this.#plane as { sweepUnclaimed?: () => number };
    return p.sweepUnclaimed ? p.sweepUnclaimed() : 0;
  }

  /** What the data plane noted when it started (kernel tier: hooks attached, XDP modes, settings changed). */
  get planeNotes(): readonly string[] {
    return (this.#plane as { notes?: readonly string[] }).notes ?? [];
  }

  /** True when close({ keepForwarding: true }) would leave flows forwarding. */
  get #keepsForwarding(): boolean {
    return this.#options.kernelPin !== undefined && this.#options.kernelPin !== false && this.#plane.tier === 'kernel';
  }
}
