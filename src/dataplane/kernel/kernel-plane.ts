/* eslint-disable max-lines -- one class holds the plane's lifecycle (start, flows, stats, close) for three hooks: tcx ingress, lo egress and XDP */
/**
 * The kernel tier: flows are entries in BPF maps read by the tcx program
 * (bpf/sluice.c); copies are made below the IP stack, with no context
 * switch and no copy to user space.
 *
 * Each flow also has a *companion* on the batched tier, bound to the same
 * listen socket: it reserves the port (bind errors and conflicts behave as
 * on every tier) and carries what the program hands to the stack
 * (fragments, IP options, GSO packets, unresolved neighbours) with the full
 * policy. Subscribers beyond the kernel's per-flow limit, or of the other
 * address family, are *spilled*: the program sends one extra copy to a
 * second companion socket (the spill flow) which serves just them.
 * Stats merge the three sources under the shared counter names (stats.ts).
 * Placement: placement.ts; host mirror: host-mirror.ts; probe: probe.ts; joinFlow: join.ts.
 */
import { existsSync } from 'node:fs';
import type { DataPlane, DataPlaneOptions, HostDrops, JoinPoint, JoinResult } from '../common/types.js';
import { joinByCounts, joinCounts } from './join.js';
import type { FlowPlan } from '../../policy/compile.js';
import { formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import type { FlowStats } from '../common/counters.js';
import { InvalidArgumentError, type EngineFailedError } from '../../errors.js';
import { BatchedPlane } from '../batched/batched-plane.js';
import { closeFd, mapDelete, mapKeys, mapUpdate, possibleCpus } from '../../sys/bpf.js';
import { openMaps, loadPrograms, type LoadedMaps } from './program.js';
import { HostMirror } from './host-mirror.js';
import { startXdp, readXdpCounters, XDP_COUNTERS_SIZE, type XdpAttachment } from './xdp.js';
import { attachAll, chooseHooks, detachPinned, ensureBpffs, pinDirFor, DEFAULT_PIN_ROOT, type Attachment } from './attach.js';
import { LoopbackLease } from './lo-settings.js';
import { KernelSuspensions, kernelCopied } from './suspensions.js';
import { adoptPinned, assignSubscribers, hexKey, spillPlan, type AdoptedFlow, type AdoptedSubs, type Assignment, type Slots } from './placement.js';
import { mergeFlowStats, readKernelCounters, type KernelCounters, type KernelFlowDetail } from './stats.js';
import { BacklogWatch } from './softnet.js';

export type { KernelFlowDetail };
import { DestStatsSnapshot } from './dest-snapshot.js';
import { programNote } from './probe.js';
import { interfaceIndex } from '../../sys/multicast.js';
import {
  DEST_COUNTERS_SIZE,
  FLOW_COUNTERS_SIZE,
  FLOW_KEY_SIZE,
  HOP_SIZE,
  SLUICE_MARK,
  allowKeys,
  flowKey,
  flowValue,
  slotKey,
  type KernelSub,
} from './layout.js';

const SPILL_SUFFIX = '\u0000spill';
const LOCAL_REFRESH_MS = 2000;

interface KernelFlow {
  plan: FlowPlan;
  listen: Endpoint;
  key: Uint8Array;
  slot: number;
  subs: KernelSub[];
  spill: Endpoint[];
  spillPort: number;
  allow: Uint8Array[];
  generation: number;
  /** In-kernel subscribers the companion suspended: left out of the flow entry. */
  suspended: KernelSuspensions;
  /** A group listen joined (by the companion, whose socket the IGMP/MLD reports are for) on a named interface: its index; else 0. */
  groupIfindex: number;
}

export class KernelPlane implements DataPlane {
  readonly tier = 'kernel' as const;
  readonly #companion: BatchedPlane;
  readonly #maps: LoadedMaps;
  readonly #attachments: Attachment[];
  #xdp: XdpAttachment[] = [];
  readonly #pinDir: string | undefined;
  readonly #cpus = possibleCpus();
  #destStats: DestStatsSnapshot | undefined; // dest_stats read whole for a pass over many subscribers (a scrape)
  readonly #flows = new Map<string, KernelFlow>();
  /** Pinned entries found at start, by flow key: claimed by addFlow or swept. */
  readonly #adopted: Map<string, AdoptedFlow>;
  readonly #flowSlots: Slots;
  readonly #destSlots: Slots;
  /** This host's addresses and interface settings as the program sees them. */
  readonly #host: HostMirror;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  /** lo's settings, held from start to close (restored when nobody needs them). */
  readonly #lo: LoopbackLease;
  /** What starting changed or found, for `sluice doctor` and logs. */
  readonly notes: string[] = [];
  /** The host's backlog queue drops (softnet.ts), sampled at each refresh while flows run; each flow's count starts at its base. */
  readonly #backlog = new BacklogWatch();
  readonly #backlogBase = new Map<string, number>();

  private constructor(companion: BatchedPlane, maps: LoadedMaps, attachments: Attachment[], pinDir: string | undefined, lo: LoopbackLease) {
    this.#companion = companion;
    this.#lo = lo;
    // The caller's listener (DataPlaneOptions.onSuspension, set by BatchedPlane.start) hears of every one, spilled or not.
    const report = companion.onSuspension;
    companion.onSuspension = (id, to, until) => void (this.#onSuspension(id, to, until), report?.(id, to, until));
    this.#maps = maps;
    this.#attachments = attachments;
    this.#pinDir = pinDir;
    this.#host = new HostMirror(this.#fd('local_addrs'), this.#fd('ifcfg'), attachments);
    const pinned = adoptPinned(maps.adopted ? this.#fd('flows') : undefined);
    this.#adopted = pinned.adopted;
    this.#flowSlots = pinned.flowSlots;
    this.#destSlots = pinned.destSlots;
  }

  static async start(options: DataPlaneOptions): Promise<KernelPlane> {
    const companion = await BatchedPlane.start(options, "the kernel tier's batched companion (worker thread 'sluice-batched')");
    let maps: LoadedMaps | undefined;
    try {
      let pinDir: string | undefined;
      if (options.kernelPin) {
        const root = typeof options.kernelPin === 'string' ? options.kernelPin : DEFAULT_PIN_ROOT;
        ensureBpffs(root);
        pinDir = pinDirFor(root);
      }
      maps = openMaps(pinDir);
      const progs = loadPrograms(maps);
      const { hooks, skipped } = chooseHooks(options.kernelInterfaces);
      let attachments: Attachment[];
      try {
        attachments = attachAll(hooks, progs, pinDir);
      } finally {
        // Links hold the programs now.
        closeFd(progs.ingress);
        closeFd(progs.egress);
      }
      const lo = LoopbackLease.acquire();
      let xdp: XdpAttachment[] = [];
      try {
        const plane = new KernelPlane(companion, maps, attachments, pinDir, lo);
        plane.#backlog.onWarning = options.onHostWarning;
        const x = startXdp(options.kernelHook ?? 'tcx', maps, hooks, pinDir);
        plane.#xdp = xdp = x.attachments;
        plane.notes.push(
          ...lo.notes,
          `attached: ${attachments.map((a) => `${a.hook.iface.name} ${a.hook.direction}${a.adopted ? ' (adopted)' : ''}`).join(', ')}`,
          programNote(progs.insns),
          ...x.notes,
        );
        if (skipped.length) plane.notes.push(`not attached: ${skipped.join(', ')}`);
        if (lo.changed.length) plane.notes.push(`set on lo: ${lo.changed.join(', ')}`);
        if (pinDir) plane.notes.push(`pinned in ${pinDir}${maps.adopted ? ` (adopted ${plane.#adopted.size} flow(s) from a previous run)` : ''}`);
        plane.#refreshHost();
        let lastError = '';
        plane.#timer = setInterval(() => {
          try {
            plane.#refreshHost();
          } catch (err) {
            // A timer must not crash the process; the program keeps the previous values meanwhile.
            const msg = `host refresh failed: ${(err as Error).message}`;
            if (msg !== lastError) plane.notes.push(msg);
            lastError = msg;
          }
        }, LOCAL_REFRESH_MS);
        plane.#timer.unref();
        return plane;
      } catch (err) {
        // Unpinned links detach when closed; pinned ones stay (and keep needing lo's settings).
        for (const a of [...attachments, ...xdp]) closeFd(a.linkFd);
        lo.release(pinDir && existsSync(pinDir) ? pinDir : undefined);
        throw err;
      }
    } catch (err) {
      if (maps) for (const fd of maps.fds.values()) closeFd(fd);
      await companion.close();
      throw err;
    }
  }

  /** The companion's failure: punted, spilled and loop-checked datagrams are no longer carried (DataPlane.failure). */
  get failure(): EngineFailedError | undefined {
    return this.#companion.failure;
  }

  #fd(name: string): number {
    const fd = this.#maps.fds.get(name);
    if (fd === undefined) throw new Error(`kernel tier: map '${name}' missing from bpf/sluice.o`);
    return fd;
  }

  #zero(map: 'flow_stats' | 'dest_stats' | 'hops' | 'xdp_stats', slot: number): void {
    if (map === 'dest_stats') this.#destStats?.invalidate();
    const size = { flow_stats: FLOW_COUNTERS_SIZE, dest_stats: DEST_COUNTERS_SIZE, hops: HOP_SIZE, xdp_stats: XDP_COUNTERS_SIZE }[map];
    mapUpdate(this.#fd(map), slotKey(slot), new Uint8Array(size * this.#cpus), 0, map);
  }

  /** A destination slot given to a new subscriber starts with no counts and no cached next hop. */
  #zeroDests(slots: readonly number[]): void {
    for (const d of slots) {
      this.#zero('dest_stats', d);
      this.#zero('hops', d);
    }
  }

  /** Keeps what the program mirrors of the host (HostMirror) and each subscriber's "local" mark in step, within LOCAL_REFRESH_MS; samples backlog drops. */
  #refreshHost(): void {
    if (this.#flows.size > 0) this.#backlog.sample();
    else this.#backlog.pause();
    if (this.#host.refreshLocal()) {
      for (const f of this.#flows.values()) {
        f.subs = f.subs.map((s) => ({ ...s, local: this.#host.isLocal(s.endpoint.address) }));
        this.#writeFlow(f);
      }
    }
    this.#host.refreshInterfaces();
  }

  /** The companion suspended (until > 0) or resumed (until 0) subscriber `to` of flow `id`: an in-kernel one leaves
   * the flow entry or comes back (spilled ones are served by the companion, which skips them itself). */
  #onSuspension(id: string, to: string, until: number): void {
    const f = this.#flows.get(id);
    if (!f || !f.subs.some((s) => formatEndpoint(s.endpoint) === to)) return;
    try {
      if (f.suspended.set(to, until, kernelCopied(this.#kernelCounters(f).flow))) this.#writeFlow(f);
    } catch (err) {
      // A failed map write leaves the entry as it was: the subscriber keeps receiving.
      this.notes.push(`${until ? 'suspending' : 'resuming'} ${to} in flow '${f.plan.name}' failed: ${(err as Error).message}`);
    }
  }

  #writeFlow(f: KernelFlow): void {
    f.generation++;
    const value = flowValue({
      slot: f.slot,
      listen: f.listen,
      sources: f.plan.sources,
      maxDatagramSize: f.plan.maxDatagramSize,
      payload: f.plan.payload,
      // A suspended subscriber's position stays reserved as a hole.
      subs: f.subs.filter((s) => !f.suspended.has(formatEndpoint(s.endpoint))),
      spillPort: f.spillPort,
      generation: f.generation,
      groupIfindex: f.groupIfindex,
    });
    mapUpdate(this.#fd('flows'), f.key, value, 0, `flows ${formatEndpoint(f.listen)}`);
  }

  /** Replaces the allow keys of a flow: new ones first, so no allowed sender is ever refused in between. */
  #writeAllow(slot: number, plan: FlowPlan, old: readonly Uint8Array[]): Uint8Array[] {
    const fd = this.#fd('allow');
    const next = allowKeys(slot, plan.sources);
    const value = new Uint8Array(4);
    for (const k of next) mapUpdate(fd, k, value, 0, 'allow');
    const keep = new Set(next.map(hexKey));
    for (const k of old) if (!keep.has(hexKey(k))) mapDelete(fd, k, 'allow');
    return next;
  }

  /** Places the plan's subscribers (placement.ts): in the kernel, or spilled to the companion. */
  #assign(plan: FlowPlan, listen: Endpoint, current: readonly KernelSub[], currentSpill: readonly Endpoint[], adopted?: AdoptedSubs): Assignment {
    return assignSubscribers(plan, listen, current, currentSpill, this.#destSlots, (address) => this.#host.isLocal(address), adopted);
  }

  async addFlow(id: string, plan: FlowPlan): Promise<{ listen: Endpoint }> {
    if (this.#flows.has(id)) throw new InvalidArgumentError(`flow id '${id}' is already in use`);
    const { listen } = await this.#companion.addFlow(id, plan);
    const key = flowKey(listen);
    const adopted = this.#adopted.get(hexKey(key));
    this.#adopted.delete(hexKey(key));
    let slot: number | undefined;
    try {
      slot = adopted?.slot ?? this.#flowSlots.take('flow');
      if (!adopted) for (const m of ['flow_stats', 'xdp_stats'] as const) this.#zero(m, slot);
      const { subs, spill, fresh } = this.#assign(plan, listen, [], [], adopted?.subs);
      this.#zeroDests(fresh);
      // Adopted destination slots no longer subscribed are free again.
      if (adopted) for (const s of adopted.subs.values()) if (!subs.some((x) => x.destSlot === s.destSlot)) this.#destSlots.give(s.destSlot);
      const groupIfindex = plan.multicast?.interface === undefined ? 0 : interfaceIndex(plan.multicast.interface);
      const f: KernelFlow = { plan, listen, key, slot, subs, spill, spillPort: 0, allow: [], generation: 0, suspended: new KernelSuspensions(), groupIfindex };
      if (spill.length) f.spillPort = await this.#startSpill(id, f);
      f.allow = this.#writeAllow(slot, plan, []);
      this.#writeFlow(f);
      this.#backlog.sample(); // the first flow's sample is the base the next ones count from
      this.#flows.set(id, f);
      this.#backlogBase.set(id, this.#backlog.total);
      return { listen };
    } catch (err) {
      if (slot !== undefined) this.#flowSlots.give(slot);
      await this.#companion.removeFlow(`${id}${SPILL_SUFFIX}`).catch(() => undefined);
      await this.#companion.removeFlow(id).catch(() => undefined);
      throw err;
    }
  }

  async #startSpill(id: string, f: KernelFlow): Promise<number> {
    const r = await this.#companion.addFlow(`${id}${SPILL_SUFFIX}`, spillPlan(f.plan, f.listen, 0, f.spill), { sendVia: id, onlyMark: SLUICE_MARK });
    return r.listen.port;
  }

  joinFlow(id: string, plan: FlowPlan, at: JoinPoint): Promise<JoinResult> {
    const read = joinCounts(this.#flows.get(id)?.plan, plan, at, () => this.flowStats(id));
    return joinByCounts(at, read, () => this.updateFlow(id, plan));
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    const f = this.#flows.get(id);
    if (!f) throw new InvalidArgumentError(`no flow with id '${id}'`);
    const { subs, spill, fresh } = this.#assign(plan, f.listen, f.subs, f.spill);
    this.#zeroDests(fresh);
    await this.#companion.updateFlow(id, plan);
    if (f.spillPort) await this.#companion.updateFlow(`${id}${SPILL_SUFFIX}`, spillPlan(plan, f.listen, f.spillPort, spill));
    const removed = f.subs.filter((s) => !subs.some((x) => x.destSlot === s.destSlot));
    f.plan = plan;
    f.subs = subs;
    f.spill = spill;
    f.suspended.keepOnly(new Set(subs.map((s) => formatEndpoint(s.endpoint))), kernelCopied(this.#kernelCounters(f).flow));
    if (spill.length && !f.spillPort) f.spillPort = await this.#startSpill(id, f);
    f.allow = this.#writeAllow(f.slot, plan, f.allow);
    this.#writeFlow(f);
    for (const s of removed) this.#destSlots.give(s.destSlot);
  }

  async removeFlow(id: string): Promise<FlowStats | undefined> {
    const f = this.#flows.get(id);
    if (!f) return undefined;
    this.#flows.delete(id);
    // The kernel stops first; the companion carries stragglers until it goes.
    mapDelete(this.#fd('flows'), f.key, 'flows');
    this.#backlog.sample(); // the final counts include the drops up to now; none are counted while no flow runs
    if (this.#flows.size === 0) this.#backlog.pause();
    const kernel = this.#kernelCounters(f);
    // The spill flow sends through the main flow's sockets: it goes first.
    const spill = f.spillPort ? await this.#companion.removeFlow(`${id}${SPILL_SUFFIX}`) : undefined;
    const main = await this.#companion.removeFlow(id);
    for (const k of f.allow) mapDelete(this.#fd('allow'), k, 'allow');
    for (const s of f.subs) this.#destSlots.give(s.destSlot);
    this.#flowSlots.give(f.slot);
    const base = this.#backlogBase.get(id) ?? 0;
    this.#backlogBase.delete(id);
    return mergeFlowStats(f, kernel, main, spill, this.#backlog.total - base);
  }

  flowStats(id: string): FlowStats | undefined {
    const f = this.#flows.get(id);
    if (!f) return undefined;
    const spill = f.spillPort ? this.#companion.flowStats(`${id}${SPILL_SUFFIX}`) : undefined;
    return mergeFlowStats(f, this.#kernelCounters(f), this.#companion.flowStats(id), spill, this.#backlog.total - (this.#backlogBase.get(id) ?? 0));
  }

  /** Host-wide drops outside Sluice seen while this plane's flows ran (DataPlane.hostDrops). */
  hostDrops(): HostDrops {
    return { hostBacklog: this.#backlog.total };
  }

  /** Where each subscriber is served and the kernel-only counters (punts, spills). */
  flowDetail(id: string): KernelFlowDetail | undefined {
    const f = this.#flows.get(id);
    if (!f) return undefined;
    const xdp = readXdpCounters(this.#maps.fds.get('xdp_stats'), this.#cpus, f.slot);
    return { inKernel: f.subs.map((s) => formatEndpoint(s.endpoint)), spilled: f.spill.map(formatEndpoint), counters: this.#kernelCounters(f).flow, xdp };
  }

  #kernelCounters(f: KernelFlow): KernelCounters {
    const dests = (this.#destStats ??= new DestStatsSnapshot(this.#fd('dest_stats'), DEST_COUNTERS_SIZE * this.#cpus));
    return readKernelCounters(this.#fd('flow_stats'), dests, this.#cpus, f.slot, f.subs);
  }

  /**
   * Deletes pinned flows that a previous process left and that no addFlow
   * has claimed since this plane started. `sluice run` calls it once its
   * configuration is applied.
   */
  sweepUnclaimed(): number {
    let n = 0;
    for (const [hex, a] of this.#adopted) {
      mapDelete(this.#fd('flows'), Buffer.from(hex, 'hex'), 'flows');
      this.#flowSlots.give(a.slot);
      for (const s of a.subs.values()) this.#destSlots.give(s.destSlot);
      n++;
    }
    this.#adopted.clear();
    return n;
  }

  /**
   * Removes every flow and releases the plane. With `keepForwarding` (and a
   * pin directory), the flows stay in the pinned maps and the pinned links
   * keep the program attached: forwarding goes on in the kernel until a
   * later process adopts it, or `sluice detach` removes it.
   */
  close(options: { keepForwarding?: boolean } = {}): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#timer) clearInterval(this.#timer);
      const keep = options.keepForwarding === true && this.#pinDir !== undefined;
      if (!keep) for (const id of [...this.#flows.keys()]) await this.removeFlow(id);
      this.#flows.clear();
      await this.#companion.close();
      for (const a of [...this.#attachments, ...this.#xdp]) closeFd(a.linkFd);
      const flowsEmpty = !keep && mapKeys(this.#fd('flows'), FLOW_KEY_SIZE, 'flows').length === 0;
      for (const fd of this.#maps.fds.values()) closeFd(fd);
      // Pinned but nothing left to forward: leave no trace.
      if (this.#pinDir && flowsEmpty && existsSync(this.#pinDir)) detachPinned(this.#pinDir);
      // Pinned state that stays forwarding still needs lo's settings; otherwise they go back if nobody else needs them.
      const restored = this.#lo.release(this.#pinDir && existsSync(this.#pinDir) ? this.#pinDir : undefined);
      if (restored.length) this.notes.push(`restored on lo: ${restored.join(', ')}`);
    })();
    return this.#closed;
  }
}
