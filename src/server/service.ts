/* eslint-disable max-lines -- the daemon's one change queue: every kind of change (flows, cluster flows, gateways, sends, reloads) goes through #change here, in arrival order */
/**
 * SluiceService: what `sluice serve` runs, and what its HTTP API, metrics
 * and dashboard use. It owns one Sluice (the relay flows), the TPO
 * gateways of its config, and the send jobs; it applies changes one at a
 * time, in arrival order, each validated whole first (one queue), writes
 * the state file after every change that succeeded, and emits each
 * change as a typed event whose name and payload are the server-sent
 * event's (service-events.ts).
 *
 * Nothing here runs per packet: counters are read from the engines'
 * shared memory and maps when asked (statsSnapshot, flows()).
 */
import { Sluice, TypedEmitter, type EngineFailedError, type Flow, type FlowStats, type HostDrops, type TierChoice, type TierName } from '../index.js';
import type { TpoGateway, TpoGatewayStatus, TpoPeerRemoval, TpoPeerView, TpoTableEntryRemoval, TpoTableEntryView } from '../tpo/index.js';
import { loadServeConfig, type ResolvedServeConfig } from './config-file.js';
import { readStateFile, writeStateFile } from './state-file.js';
import { flowView, policyJson, type FlowView } from './flow-view.js';
import * as ops from './flow-ops.js';
import { Gateways, type GatewayWatcher } from './gateways.js';
import { SendJobs, type SendJobView } from './send-jobs.js';
import { ServiceError } from './service-error.js';
import { applyClusterFlows, isClusterFlow, refuseClusterName, refuseClusterNames, type ClusterFlowChange } from './cluster-flows.js';
import type { FlowPolicy } from '../index.js';
import { silenceEvent, streamAlarmEvent, type AlarmEvent, type ServiceEvents } from './service-events.js';
import type { Logger } from './log.js';
import { packageVersion } from './version.js';
import { ServeFanout, type FanoutChange, type FanoutView } from './fanout-service.js';
import type { FanoutStats } from '../index.js';
import * as tcpOps from './tcp-flows.js';
import { applyTcpFlowList, tcpFlowStats, tcpFlowView, tcpPolicyJson, type TcpFlowStats, type TcpFlowView } from './tcp-flows.js';
import type { TcpRelay } from '../index.js';

export interface ServiceOptions {
  readonly config: ResolvedServeConfig;
  readonly log: Logger;
  /** Overrides the config's tier (--tier). */
  readonly tier?: TierChoice;
  /** Kernel tier: pin (--pin); stopping then leaves the flows forwarding. */
  readonly pin?: boolean | string;
  /** The log level was given on the command line: a reload keeps it. */
  readonly logLevelFixed?: boolean;
  /** How SIGHUP re-reads the config (default: the file again). */
  readonly loadConfig?: () => ResolvedServeConfig;
  /** Logs a TPO gateway's events (what `sluice tpo` logs); default: only start, stop and faults. */
  readonly watchGateway?: GatewayWatcher;
}

export interface Failure {
  readonly engine: string;
  readonly message: string;
  /** ISO time. */
  readonly at: string;
}

export interface HealthView {
  readonly status: 'ok' | 'degraded' | 'stopping';
  readonly tier: TierName;
  readonly version: string;
  readonly uptimeS: number;
  readonly flows: number;
  readonly gateways: number;
  readonly failures: readonly Failure[];
}

export interface ReloadSummary {
  readonly added: string[];
  readonly updated: string[];
  readonly replaced: string[];
  readonly removed: string[];
  readonly gatewaysStarted: string[];
  readonly gatewaysStopped: string[];
  /** Restarted from a config file that changed, or to drop the API's changes to it. */
  readonly gatewaysRestarted: string[];
  /** What became of the `fanout:` section's fan-out. */
  readonly fanout: FanoutChange;
}

/** Failures kept for /v1/health (the oldest go first). */
const MAX_FAILURES = 20;

export class SluiceService extends TypedEmitter<ServiceEvents> {
  readonly startedAt = Date.now();
  readonly #sluice: Sluice;
  readonly #log: Logger;
  readonly #options: ServiceOptions;
  #config: ResolvedServeConfig;
  readonly #gateways: Gateways;
  readonly #sends: SendJobs;
  readonly #fanout = new ServeFanout();
  readonly #failures: Failure[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(sluice: Sluice, options: ServiceOptions) {
    super();
    this.#sluice = sluice;
    this.#options = options;
    this.#config = options.config;
    this.#log = options.log;
    this.#gateways = new Gateways(
      this.#log,
      {
        peerup: (gateway, peer) => this.emit('peerup', { gateway, peer }),
        peerdown: (gateway, peer) => this.emit('peerdown', { gateway, peer }),
        alarm: (a) => this.emit('alarm', a),
        changed: (c) => this.emit('tpochanged', c),
        failed: (engine, message) => this.#failed(engine, message),
      },
      options.watchGateway,
    );
    this.#sends = new SendJobs(sluice, this.#log.child({ component: 'sends' }), {
      started: (v) => this.emit('sendstarted', v),
      done: (v) => this.emit('senddone', v),
    });
    sluice.on('engineFailed', (err: EngineFailedError) => this.#failed(err.engine, err.message));
    sluice.on('flowadded', (flow) => this.#watchFlow(flow));
    // Kernel tier: the host's backlog queue drops copies (once; the metric sluice_host_backlog_drops_total counts them).
    sluice.on('hostwarning', (message) => {
      this.#log.warn({ setting: 'net.core.netdev_max_backlog' }, message);
      this.emit('alarm', { source: 'host', kind: 'hostBacklog', message });
    });
  }

  /**
   * Opens the Sluice, starts the flows (the state file's when there is
   * one, else the config's), then the TPO gateways. Anything that fails
   * closes what started and throws.
   */
  static async start(options: ServiceOptions): Promise<SluiceService> {
    const { config, log } = options;
    const state = readStateFile(config.state);
    const sluice = await Sluice.open({
      tier: options.tier ?? config.tier,
      ...(options.pin ? { kernelPin: options.pin } : {}),
    });
    const svc = new SluiceService(sluice, options);
    try {
      if (state) {
        log.warn(
          { state: config.state, writtenAt: state.writtenAt },
          `using state file ${config.state} written ${state.writtenAt}; the config file's flows are ignored until SIGHUP`,
        );
      }
      const flows = state ? state.flows.filter((f) => !isClusterFlow(f.name ?? '')) : config.flows;
      refuseClusterNames(flows);
      await ops.applyFlowList(sluice, flows);
      // A state file of a version that did not keep tcp-redirects leaves them to the config file.
      const tcpFlows = state?.tcpFlows ?? config.tcpFlows ?? [];
      refuseClusterNames(tcpFlows);
      svc.#logTcp(await applyTcpFlowList(sluice, tcpFlows));
      const swept = sluice.sweepUnclaimed();
      if (swept) log.info({ swept }, 'removed pinned flows of an earlier run that the flows no longer have');
      for (const t of config.tpo) await svc.#gateways.start(t.config, state?.tpo);
      // As for flows: the state file's fan-out (its inputs changed over the API) when it has one.
      if ((await svc.#fanout.apply(state?.fanout ?? config.fanout)) === 'started') svc.#logFanout();
    } catch (err) {
      await svc.#shutdown().catch(() => undefined);
      throw err;
    }
    return svc;
  }

  get tier(): TierName {
    return this.#sluice.tier;
  }

  get config(): ResolvedServeConfig {
    return this.#config;
  }

  /** Log a flow's suspensions and stream alarms, and say them as events: the service's only per-flow listeners. */
  #watchFlow(flow: Flow): void {
    const name = flow.name;
    const log = this.#log.child({ flow: name });
    log.info({ type: flow.type, listen: flow.listenUrl, tier: flow.tier }, 'flow started');
    flow.on('suspension', (to, until) => {
      if (until) log.warn({ to, until: new Date(until).toISOString() }, 'subscriber suspended');
      else log.info({ to }, 'subscriber resumed');
      this.emit('subscribersuspended', { flow: name, to, until });
    });
    flow.on('alarm', (alarm) => this.emit('alarm', streamAlarmEvent(name, alarm, log)));
    flow.on('silence', (to, silent) => this.emit('subscribersuspended', silenceEvent(name, to, silent, log)));
    flow.once('close', (stats) => log.info({ packetsIn: stats?.packetsIn, packetsOut: stats?.packetsOut }, 'flow stopped'));
  }

  #logTcp(c: { added: string[]; replaced: string[]; removed: { name: string }[] }): void {
    for (const name of [...c.added, ...c.replaced]) {
      const r = this.#sluice.tcpFlow(name);
      this.#log.child({ flow: name }).info({ type: 'tcp-redirect', listen: r?.listen, to: r?.to, mode: r?.mode }, 'tcp-redirect started');
    }
    for (const { name } of c.removed) this.#log.child({ flow: name }).info('tcp-redirect stopped');
  }

  #logFanout(): void {
    void this.#fanout.status().then((v) => v && this.#log.info({ http: v.http, tcp: v.tcp }, 'fan-out started'));
  }

  // ---- fan-out ----

  /** The `fanout:` section's fan-out with its counters (asked of its thread); undefined when none is configured. */
  fanoutStatus(): Promise<FanoutView | undefined> {
    return this.#fanout.status();
  }

  /** `PUT /v1/fanout/inputs/NAME` (ServeFanout.putInput): the fan-out's view after, and whether the name is new. */
  putFanoutInput(name: string, body: unknown): Promise<{ created: boolean; view: FanoutView }> {
    return this.#change(async () => {
      const created = await this.#fanout.putInput(name, body);
      this.#log.info({ input: name }, created ? 'fan-out input added' : 'fan-out input changed');
      return { created, view: (await this.#fanout.status())! };
    });
  }

  /** `DELETE /v1/fanout/inputs/NAME` (ServeFanout.removeInput): the fan-out's view after. */
  deleteFanoutInput(name: string): Promise<FanoutView> {
    return this.#change(async () => {
      await this.#fanout.removeInput(name);
      this.#log.info({ input: name }, 'fan-out input removed');
      return (await this.#fanout.status())!;
    });
  }

  /** Asks the fan-out thread for its counters, for fanoutStats() (the metrics call it before each scrape). */
  refreshFanout(): Promise<void> {
    return this.#fanout.refresh();
  }

  /** The fan-out's last counters; undefined without one. */
  fanoutStats(): FanoutStats | undefined {
    return this.#fanout.last();
  }

  #failed(engine: string, message: string): void {
    this.#log.error({ engine }, `engine failed: ${message}`);
    this.#failures.push({ engine, message, at: new Date().toISOString() });
    if (this.#failures.length > MAX_FAILURES) this.#failures.shift();
    this.emit('enginefailed', { engine, message });
  }

  /**
   * Runs `op` after every change before it; then writes the state file —
   * also when `op` failed, since a change that failed half-way (a reload
   * that stopped at a taken address) has changed what runs, and the state
   * file says what runs.
   */
  #change<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new ServiceError('stopping', 'the service is stopping'));
    const run = this.#queue.then(async () => {
      try {
        return await op();
      } finally {
        await this.#persist();
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #persist(): Promise<void> {
    try {
      const flows = this.#sluice
        .flows()
        .filter((f) => !isClusterFlow(f.name))
        .map((f) => policyJson(f.spec, f.name));
      const tcpFlows = this.#sluice.tcpFlows().map((r) => tcpPolicyJson(r.spec));
      const fanout = this.#fanout.config;
      await writeStateFile(this.#config.state, { flows, tcpFlows, tpo: this.#gateways.state(), ...(fanout ? { fanout } : {}) });
    } catch (err) {
      const message = `cannot write the state file ${this.#config.state}: ${(err as Error).message}`;
      this.#log.error({ err }, message);
      const alarm: AlarmEvent = { source: 'state', kind: 'persist', message };
      this.emit('alarm', alarm);
    }
  }

  // ---- flows ----

  /**
   * The cluster agent's change: the node's `cluster.…` flows brought to
   * `wanted` (src/server/cluster-flows.ts), in the same queue as every
   * other change, with the same events.
   */
  applyClusterFlows(wanted: FlowPolicy[]): Promise<ClusterFlowChange> {
    return this.#change(async () => {
      const r = await applyClusterFlows(this.#sluice, wanted);
      for (const name of r.removed) this.emit('flowremoved', { name, stats: null });
      for (const name of r.added) this.emit('flowadded', { flow: this.flow(name)! });
      for (const name of r.updated) if (this.flow(name)) this.emit('flowchanged', { flow: this.flow(name)! });
      return r;
    });
  }

  flows(): FlowView[] {
    return this.#sluice.flows().map((f) => flowView(f));
  }

  flow(name: string): FlowView | undefined {
    const f = this.#sluice.flow(name);
    return f ? flowView(f) : undefined;
  }

  flowStats(name: string): FlowStats | TcpFlowStats {
    const tcp = this.#sluice.tcpFlow(name);
    return tcp ? tcpFlowStats(tcp) : ops.requireFlow(this.#sluice, name).stats();
  }

  /** The running tcp-redirects (the config file's and the API's). */
  tcpFlows(): TcpFlowView[] {
    return this.#sluice.tcpFlows().map((r) => this.#tcpView(r));
  }

  tcpFlow(name: string): TcpFlowView | undefined {
    const r = this.#sluice.tcpFlow(name);
    return r ? this.#tcpView(r) : undefined;
  }

  #tcpView(relay: TcpRelay): TcpFlowView {
    return tcpFlowView(relay, this.#config.tcpFlows ?? []);
  }

  /** Every tcp-redirect's counters, for the metrics. */
  tcpStatsSnapshot(): TcpFlowStats[] {
    return this.#sluice.tcpFlows().map((r) => tcpFlowStats(r));
  }

  /** A UDP flow's request that names a tcp-redirect, or the other way round: refused (the kinds do not turn into each other). */
  #refuseKindChange(name: string, body: unknown): void {
    const tcp = this.#sluice.tcpFlow(name) !== undefined;
    if (tcp === tcpOps.isTcpBody(body) || (!tcp && !this.#sluice.flow(name))) return;
    throw new ServiceError(
      'invalid_request',
      tcp
        ? `flow '${name}' is a tcp-redirect: send a tcp-redirect policy, or DELETE it and POST the new flow`
        : `flow '${name}' is a UDP flow: a tcp-redirect replaces it only after DELETE /v1/flows/${name}`,
    );
  }

  #requireUdp(name: string, what: string): void {
    if (this.#sluice.tcpFlow(name)) throw new ServiceError('invalid_request', `flow '${name}' is a tcp-redirect: ${what}`);
  }

  /** Counter snapshots of every flow (synchronous: shared memory and maps). */
  /** Kernel tier: the host's drops outside Sluice while its flows ran (host-wide); undefined on other tiers. */
  hostDrops(): HostDrops | undefined {
    return this.#sluice.hostDrops();
  }

  statsSnapshot(): FlowStats[] {
    return this.#sluice.stats();
  }

  createFlow(policy: unknown): Promise<FlowView | TcpFlowView> {
    const name = (policy as { name?: unknown } | null)?.name;
    refuseClusterName(typeof name === 'string' ? name : undefined);
    return this.#change(async () => {
      if (tcpOps.isTcpBody(policy)) {
        const relay = await tcpOps.createTcpFlow(this.#sluice, policy);
        this.#logTcp({ added: [relay.name], replaced: [], removed: [] });
        const view = this.#tcpView(relay);
        this.emit('flowadded', { flow: view });
        return view;
      }
      if (typeof name === 'string' && this.#sluice.tcpFlow(name))
        throw new ServiceError('flow_exists', `a flow named '${name}' exists (a tcp-redirect: DELETE it first to reuse the name)`);
      const view = flowView(await ops.createFlow(this.#sluice, policy));
      this.emit('flowadded', { flow: view });
      return view;
    });
  }

  replaceFlow(name: string, policy: unknown): Promise<FlowView | TcpFlowView> {
    refuseClusterName(name);
    return this.#change(async () => {
      this.#refuseKindChange(name, policy);
      const relay = this.#sluice.tcpFlow(name);
      if (relay) return this.#tcpReplaced(await tcpOps.replaceTcpFlow(this.#sluice, relay, tcpOps.namedTcpPolicy(policy, name)));
      return this.#replaced(await ops.replaceFlow(this.#sluice, ops.requireFlow(this.#sluice, name), ops.namedPolicy(policy, name)));
    });
  }

  patchFlow(name: string, patch: unknown): Promise<FlowView | TcpFlowView> {
    refuseClusterName(name);
    return this.#change(async () => {
      // A patch names a type only to keep it: another kind is refused.
      if ((patch as { type?: unknown } | null)?.type !== undefined) this.#refuseKindChange(name, patch);
      const relay = this.#sluice.tcpFlow(name);
      if (relay) return this.#tcpReplaced(await tcpOps.replaceTcpFlow(this.#sluice, relay, tcpOps.mergeTcpPatch(relay, patch)));
      const flow = ops.requireFlow(this.#sluice, name);
      return this.#replaced(await ops.replaceFlow(this.#sluice, flow, ops.mergePatch(flow, patch)));
    });
  }

  #tcpReplaced(r: { relay: TcpRelay; restarted: boolean }): TcpFlowView {
    const view = this.#tcpView(r.relay);
    if (r.restarted) {
      this.#log
        .child({ flow: view.name })
        .info({ type: 'tcp-redirect', listen: view.listen, to: view.to, mode: view.mode }, 'tcp-redirect changed (restarted)');
      this.emit('flowchanged', { flow: view });
    }
    return view;
  }

  #replaced(r: { flow: Flow; restarted: boolean }): FlowView {
    const view = flowView(r.flow);
    this.#log.child({ flow: view.name }).info({ restarted: r.restarted }, 'flow changed');
    this.emit('flowchanged', { flow: view });
    return view;
  }

  deleteFlow(name: string): Promise<{ name: string; stats: FlowStats | TcpFlowStats | null }> {
    refuseClusterName(name);
    return this.#change(async () => {
      const relay = this.#sluice.tcpFlow(name);
      // A tcp-redirect's last counters with its listen address as a URL, as GET shows them.
      const stats = relay ? { ...(await relay.remove()), listen: relay.listen } : ((await ops.requireFlow(this.#sluice, name).remove()) ?? null);
      if (relay) this.#logTcp({ added: [], replaced: [], removed: [{ name }] });
      this.emit('flowremoved', { name, stats });
      return { name, stats };
    });
  }

  addSubscriber(name: string, to: unknown): Promise<FlowView> {
    refuseClusterName(name);
    const addr = ops.subscriberAddress(to);
    return this.#change(async () => {
      this.#requireUdp(name, 'it has one destination (change it with PUT or PATCH {"to": ...})');
      const flow = ops.requireFlow(this.#sluice, name);
      await ops.addSubscriber(flow, addr);
      this.#log.child({ flow: name }).info({ to: addr }, 'subscriber added');
      this.emit('subscriberadded', { flow: name, to: addr });
      return flowView(flow);
    });
  }

  removeSubscriber(name: string, to: unknown): Promise<FlowView> {
    refuseClusterName(name);
    const addr = ops.subscriberAddress(to);
    return this.#change(async () => {
      this.#requireUdp(name, 'it has one destination (change it with PUT or PATCH {"to": ...})');
      const flow = ops.requireFlow(this.#sluice, name);
      await ops.removeSubscriber(flow, addr);
      this.#log.child({ flow: name }).info({ to: addr }, 'subscriber removed');
      this.emit('subscriberremoved', { flow: name, to: addr });
      return flowView(flow);
    });
  }

  // ---- TPO gateways ----

  gateways(): TpoGatewayStatus[] {
    return this.#gateways.statuses();
  }

  gateway(name: string): TpoGatewayStatus {
    return this.#gateways.gateway(name).status();
  }

  /** The running gateway of that name, or undefined: the node's TPO mesh drives it directly (src/server/cluster-mesh.ts). */
  tpoGateway(name: string): TpoGateway | undefined {
    return this.#gateways.names().includes(name) ? this.#gateways.gateway(name) : undefined;
  }

  /** A gateway's peers as configured now (no key), or its table entries. */
  gatewayPeers(name: string): TpoPeerView[] {
    return this.#gateways.gateway(name).peers();
  }

  gatewayTable(name: string): TpoTableEntryView[] {
    return this.#gateways.gateway(name).table();
  }

  addPeer(gateway: string, peer: unknown): Promise<TpoPeerView> {
    return this.#change(() => this.#gateways.addPeer(gateway, peer));
  }

  removePeer(gateway: string, peer: string): Promise<TpoPeerRemoval> {
    return this.#change(() => this.#gateways.removePeer(gateway, peer));
  }

  addTableEntry(gateway: string, entry: unknown): Promise<TpoTableEntryView> {
    return this.#change(() => this.#gateways.addTableEntry(gateway, entry));
  }

  removeTableEntry(gateway: string, entry: string, options: { resetFlows?: boolean } = {}): Promise<TpoTableEntryRemoval> {
    return this.#change(() => this.#gateways.removeTableEntry(gateway, entry, options));
  }

  // ---- sends ----

  startSend(request: unknown): SendJobView {
    if (this.#closing) throw new ServiceError('stopping', 'the service is stopping');
    return this.#sends.start(request);
  }

  sends(): SendJobView[] {
    return this.#sends.list();
  }

  send(id: string): SendJobView {
    return this.#sends.get(id);
  }

  cancelSend(id: string): Promise<SendJobView> {
    return this.#sends.cancel(id);
  }

  // ---- health, reload, close ----

  /** Engines that failed since start (the oldest may have been forgotten: MAX_FAILURES). */
  failures(): readonly Failure[] {
    return [...this.#failures];
  }

  health(): HealthView {
    return {
      status: this.#closing ? 'stopping' : this.#failures.length || this.#sluice.failure ? 'degraded' : 'ok',
      tier: this.#sluice.tier,
      version: packageVersion(),
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      flows: this.#sluice.flows().length + this.#sluice.tcpFlows().length,
      gateways: this.#gateways.size,
      failures: [...this.#failures],
    };
  }

  /**
   * SIGHUP: the config file is read again and wins (an operator's
   * explicit act): its flows are applied (changed ones only), gateways
   * added to or removed from `tpo:` are started or stopped, the log level
   * follows (unless given on the command line), and the state file is
   * rewritten to match. A config that cannot be read or applied changes
   * nothing that was not already applied, and is reported by the error.
   */
  reload(): Promise<ReloadSummary> {
    return this.#change(async () => {
      const next = (this.#options.loadConfig ?? (() => loadServeConfig(this.#config.path)))();
      const before = this.#config;
      refuseClusterNames(next.flows);
      const flows = await ops.applyFlowList(this.#sluice, next.flows, isClusterFlow);
      for (const r of flows.removed) this.emit('flowremoved', { name: r.name, stats: r.stats ?? null });
      for (const name of flows.added) this.emit('flowadded', { flow: this.flow(name)! });
      for (const name of [...flows.updated, ...flows.replaced]) this.emit('flowchanged', { flow: this.flow(name)! });
      const tcp = await applyTcpFlowList(this.#sluice, next.tcpFlows ?? []);
      this.#logTcp(tcp);
      const gw = await this.#gateways.reload(next.tpo.map((t) => t.config));
      const fanout = await this.#fanout.apply(next.fanout);
      if (fanout === 'started' || fanout === 'restarted') this.#logFanout();
      if (fanout === 'updated') this.#log.info('fan-out inputs updated');
      if (fanout === 'stopped') this.#log.info('fan-out stopped');
      this.#config = next;
      if (!this.#options.logLevelFixed) this.#log.level = next.log.level;
      if (JSON.stringify(next.api) !== JSON.stringify(before.api) || next.state !== before.state || next.tier !== before.tier)
        this.#log.warn('the api, state or tier settings changed: they take effect at the next start');
      return {
        added: [...flows.added, ...tcp.added],
        updated: flows.updated,
        replaced: [...flows.replaced, ...tcp.replaced],
        removed: [...flows.removed.map((r) => r.name), ...tcp.removed.map((r) => r.name)],
        gatewaysStarted: gw.started,
        gatewaysStopped: gw.stopped,
        gatewaysRestarted: gw.restarted,
        fanout,
      };
    });
  }

  /**
   * Stops: no new change is taken (health says 'stopping'), the changes
   * queued finish, stream jobs stop, the gateways and the Sluice close
   * (with --pin on the kernel tier the flows go on forwarding). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#queue.then(() => this.#shutdown());
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const errors: unknown[] = [];
    await this.#sends.close().catch((e: unknown) => errors.push(e));
    await this.#gateways.close().catch((e: unknown) => errors.push(e));
    await this.#fanout.close().catch((e: unknown) => errors.push(e));
    const keep = Boolean(this.#options.pin) && this.#sluice.tier === 'kernel';
    await this.#sluice.close({ keepForwarding: keep }).catch((e: unknown) => errors.push(e));
    if (keep) this.#log.info('kernel forwarding left in place (pinned); start again with --pin to adopt it, or `sluice detach` to remove it');
    if (errors.length) throw errors[0];
  }
}
