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
 * Stats merge the three sources under the shared counter names.
 */
import { networkInterfaces } from 'node:os';
import { isIPv4 } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import type { DataPlane, DataPlaneOptions, TierProvider, TierProbe } from '../types.js';
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import type { DestinationStats, FlowStats } from '../../stats/counters.js';
import { InvalidArgumentError, NotSupportedError, type EngineFailedError } from '../../errors.js';
import { BatchedPlane, batchedProvider } from '../batched/batched-plane.js';
import { closeFd, mapCreate, mapDelete, mapKeys, mapLookup, mapUpdate, possibleCpus, BPF_MAP_TYPE } from '../../sys/bpf.js';
import { ffiAvailable } from '../../sys/probe.js';
import { errnoName } from '../../sys/errno.js';
import { openMaps, loadPrograms, readObject, type LoadedMaps } from './program.js';
import { interfacesWithIpv4, readInterfaceConfig } from './host-config.js';
import { attachAll, chooseHooks, detachPinned, ensureBpffs, pinDirFor, DEFAULT_PIN_ROOT, type Attachment } from './attach.js';
import { LoopbackLease } from './lo-settings.js';
import { KernelSuspensions, kernelCopied } from './suspensions.js';
import {
  DEST_COUNTERS,
  DEST_COUNTERS_SIZE,
  FLOW_COUNTERS,
  FLOW_COUNTERS_SIZE,
  FLOW_KEY_SIZE,
  FLOW_VALUE_SIZE,
  HOP_SIZE,
  MAX_DESTS,
  MAX_FLOWS,
  MAX_SUBS,
  CHUNK,
  SLUICE_MARK,
  addr16,
  allowKeys,
  ifcfgKey,
  ifcfgValue,
  decodeFlowValue,
  flowKey,
  flowValue,
  lastErrno,
  sumPerCpu,
  type FlowCounterName,
  type KernelSub,
} from './layout.js';

const SPILL_SUFFIX = '\u0000spill';
const LOCAL_REFRESH_MS = 2000;

/** Kernel-only detail of one flow, for `sluice doctor`, the bench and debugging. */
export interface KernelFlowDetail {
  /** Subscribers copied in the kernel / by the spill companion. */
  readonly inKernel: readonly string[];
  readonly spilled: readonly string[];
  readonly counters: Readonly<Record<FlowCounterName, number>>;
}

interface KernelCounters {
  readonly flow: Record<FlowCounterName, number>;
  readonly dests: Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>;
}

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
}

/** Slot allocator; freed slots are reused last (FIFO) so late increments from in-flight packets land nowhere that matters. */
class Slots {
  readonly #free: number[];
  constructor(size: number, used: Iterable<number>) {
    const u = new Set(used);
    this.#free = [];
    for (let i = 0; i < size; i++) if (!u.has(i)) this.#free.push(i);
  }
  take(what: string): number {
    const s = this.#free.shift();
    if (s === undefined) throw new NotSupportedError(`kernel tier: no free ${what} slot`, `at most this many ${what}s at once`);
    return s;
  }
  give(slot: number): void {
    this.#free.push(slot);
  }
}

function sameFamily(a: Endpoint, b: Endpoint): boolean {
  return isIPv4(a.address) === isIPv4(b.address);
}

function hexKey(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export class KernelPlane implements DataPlane {
  readonly tier = 'kernel' as const;
  readonly #companion: BatchedPlane;
  readonly #maps: LoadedMaps;
  readonly #attachments: Attachment[];
  readonly #pinDir: string | undefined;
  readonly #cpus = possibleCpus();
  readonly #flows = new Map<string, KernelFlow>();
  /** Pinned entries found at start, by flow key: claimed by addFlow or swept. */
  readonly #adopted = new Map<string, { slot: number; subs: Map<string, { destSlot: number; pos: number }> }>();
  readonly #flowSlots: Slots;
  readonly #destSlots: Slots;
  #local = new Set<string>();
  /** ifcfg entries as last written, by ifindex (hex of the value). */
  readonly #ifcfg = new Map<number, string>();
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  /** lo's settings, held from start to close (restored when nobody needs them). */
  readonly #lo: LoopbackLease;
  /** What starting changed or found, for `sluice doctor` and logs. */
  readonly notes: string[] = [];

  private constructor(companion: BatchedPlane, maps: LoadedMaps, attachments: Attachment[], pinDir: string | undefined, lo: LoopbackLease) {
    this.#companion = companion;
    this.#lo = lo;
    // The caller's listener (DataPlaneOptions.onSuspension, set by BatchedPlane.start) hears of every one, spilled or not.
    const report = companion.onSuspension;
    companion.onSuspension = (id, to, until) => {
      this.#onSuspension(id, to, until);
      report?.(id, to, until);
    };
    this.#maps = maps;
    this.#attachments = attachments;
    this.#pinDir = pinDir;
    const usedFlows: number[] = [];
    const usedDests: number[] = [];
    if (maps.adopted) {
      for (const key of mapKeys(this.#fd('flows'), FLOW_KEY_SIZE, 'flows')) {
        const raw = mapLookup(this.#fd('flows'), key, FLOW_VALUE_SIZE, 'flows');
        if (!raw) continue;
        const v = decodeFlowValue(raw);
        usedFlows.push(v.slot);
        const subs = new Map<string, { destSlot: number; pos: number }>();
        for (const s of v.subs) {
          usedDests.push(s.destSlot);
          subs.set(`${hexKey(s.addr)}:${s.port}`, { destSlot: s.destSlot, pos: s.pos });
        }
        this.#adopted.set(hexKey(key), { slot: v.slot, subs });
      }
    }
    this.#flowSlots = new Slots(MAX_FLOWS, usedFlows);
    this.#destSlots = new Slots(MAX_DESTS, usedDests);
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
      try {
        const plane = new KernelPlane(companion, maps, attachments, pinDir, lo);
        plane.notes.push(
          ...lo.notes,
          `attached: ${attachments.map((a) => `${a.hook.iface.name} ${a.hook.direction}${a.adopted ? ' (adopted)' : ''}`).join(', ')}`,
          programNote(progs.insns),
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
        for (const a of attachments) closeFd(a.linkFd);
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

  #slotKey(slot: number): Uint8Array {
    const k = new Uint8Array(4);
    new DataView(k.buffer).setUint32(0, slot, true);
    return k;
  }

  #zero(map: 'flow_stats' | 'dest_stats' | 'hops', slot: number): void {
    const size = map === 'flow_stats' ? FLOW_COUNTERS_SIZE : map === 'dest_stats' ? DEST_COUNTERS_SIZE : HOP_SIZE;
    mapUpdate(this.#fd(map), this.#slotKey(slot), new Uint8Array(size * this.#cpus), 0, map);
  }

  /** A destination slot given to a new subscriber starts with no counts and no cached next hop. */
  #zeroDests(slots: readonly number[]): void {
    for (const d of slots) {
      this.#zero('dest_stats', d);
      this.#zero('hops', d);
    }
  }

  /**
   * Keeps what the program mirrors of the host in step with it: this
   * host's addresses (below) and, per interface it hooks at ingress, the
   * settings of the stack's source checks (rp_filter and friends). A
   * change reaches the program within LOCAL_REFRESH_MS.
   */
  #refreshHost(): void {
    this.#refreshLocal();
    this.#refreshInterfaces();
  }

  #refreshInterfaces(): void {
    const fd = this.#fd('ifcfg');
    const withIpv4 = interfacesWithIpv4();
    for (const a of this.#attachments) {
      if (a.hook.direction !== 'ingress') continue;
      const { ifindex, name } = a.hook.iface;
      const cfg = readInterfaceConfig(name, withIpv4);
      const hex = cfg ? hexKey(ifcfgValue(cfg)) : '';
      if (this.#ifcfg.get(ifindex) === hex) continue;
      // No entry: the program punts that interface's datagrams to the stack.
      if (cfg) mapUpdate(fd, ifcfgKey(ifindex), ifcfgValue(cfg), 0, 'ifcfg');
      else mapDelete(fd, ifcfgKey(ifindex), 'ifcfg');
      this.#ifcfg.set(ifindex, hex);
    }
  }

  /** Keeps `local_addrs` and each subscriber's "local" mark in step with the host's addresses. */
  #refreshLocal(): void {
    const now = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) now.add(hexKey(addr16(a.address)));
    }
    const same = now.size === this.#local.size && [...now].every((k) => this.#local.has(k));
    if (same) return;
    const fd = this.#fd('local_addrs');
    const one = new Uint8Array(4);
    one[0] = 1;
    for (const k of now) if (!this.#local.has(k)) mapUpdate(fd, Buffer.from(k, 'hex'), one, 0, 'local_addrs');
    for (const k of this.#local) if (!now.has(k)) mapDelete(fd, Buffer.from(k, 'hex'), 'local_addrs');
    this.#local = now;
    for (const f of this.#flows.values()) {
      f.subs = f.subs.map((s) => ({ ...s, local: this.#isLocal(s.endpoint.address) }));
      this.#writeFlow(f);
    }
  }

  #isLocal(address: string): boolean {
    const b = addr16(address);
    if (isIPv4(address) && b[12] === 127) return true;
    if (address === '::1') return true;
    return this.#local.has(hexKey(b));
  }

  /**
   * The companion suspended (until > 0) or resumed (until 0) subscriber
   * `to` of flow `id`: an in-kernel one leaves the flow entry or comes back
   * (spilled ones are served by the companion, which skips them itself).
   */
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

  /**
   * Which subscribers the kernel copies to, and where. Assignment is
   * sticky: one that is in the kernel stays there at the same position, so
   * no subscriber ever moves between the kernel and the spill companion
   * (its counters would split) or within the array (see KernelSub.pos).
   * New subscribers take the lowest free positions.
   */
  #assign(
    plan: FlowPlan,
    listen: Endpoint,
    current: readonly KernelSub[],
    currentSpill: readonly Endpoint[],
    adopted?: Map<string, { destSlot: number; pos: number }>,
  ): { subs: KernelSub[]; spill: Endpoint[]; fresh: number[] } {
    const cur = new Map(current.map((s) => [endpointKey(s.endpoint), s]));
    if (adopted) {
      for (const d of plan.destinations) {
        const a = adopted.get(`${hexKey(addr16(d.address))}:${d.port}`);
        if (a && sameFamily(d, listen)) cur.set(endpointKey(d), { endpoint: d, destSlot: a.destSlot, pos: a.pos, local: false });
      }
    }
    const spilled = new Set(currentSpill.map(endpointKey));
    const kept = plan.destinations.map(endpointKey).filter((k) => cur.has(k));
    const taken = new Set(kept.map((k) => cur.get(k)!.pos));
    let nextFree = 0;
    const freePos = (): number | undefined => {
      while (taken.has(nextFree)) nextFree++;
      return nextFree < MAX_SUBS ? nextFree : undefined;
    };
    const subs: KernelSub[] = [];
    const spill: Endpoint[] = [];
    const fresh: number[] = [];
    for (const d of plan.destinations) {
      const k = endpointKey(d);
      const existing = cur.get(k);
      if (existing) {
        subs.push({ ...existing, endpoint: d, local: this.#isLocal(d.address) });
        continue;
      }
      const pos = sameFamily(d, listen) && !spilled.has(k) ? freePos() : undefined;
      if (pos === undefined) {
        spill.push(d);
        continue;
      }
      taken.add(pos);
      const destSlot = this.#destSlots.take('destination');
      fresh.push(destSlot);
      subs.push({ endpoint: d, destSlot, pos, local: this.#isLocal(d.address) });
    }
    return { subs, spill, fresh };
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
      if (!adopted) this.#zero('flow_stats', slot);
      const { subs, spill, fresh } = this.#assign(plan, listen, [], [], adopted?.subs);
      this.#zeroDests(fresh);
      // Adopted destination slots no longer subscribed are free again.
      if (adopted) for (const s of adopted.subs.values()) if (!subs.some((x) => x.destSlot === s.destSlot)) this.#destSlots.give(s.destSlot);
      const f: KernelFlow = { plan, listen, key, slot, subs, spill, spillPort: 0, allow: [], generation: 0, suspended: new KernelSuspensions() };
      if (spill.length) f.spillPort = await this.#startSpill(id, f);
      f.allow = this.#writeAllow(slot, plan, []);
      this.#writeFlow(f);
      this.#flows.set(id, f);
      return { listen };
    } catch (err) {
      if (slot !== undefined) this.#flowSlots.give(slot);
      await this.#companion.removeFlow(`${id}${SPILL_SUFFIX}`).catch(() => undefined);
      await this.#companion.removeFlow(id).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The spill flow: a companion flow that serves the spilled subscribers.
   * It receives the program's spill copy on a socket bound like the listen
   * socket on another port, which takes only datagrams the program marked
   * (SLUICE_MARK), so nobody else can feed it. The program has applied the
   * allow list and the size and payload checks, and sends the copy from
   * the local address the datagram was sent to (a strict rp_filter on lo
   * would refuse the original sender), hence `any` source here. It sends
   * through the main companion's sockets, so its copies leave from the
   * listen port like every other copy, on every tier.
   */
  #spillPlan(plan: FlowPlan, listen: Endpoint, port: number, destinations: readonly Endpoint[]): FlowPlan {
    return { ...plan, name: `${plan.name} (spill)`, listen: { ...listen, port }, sources: { any: true }, destinations };
  }

  async #startSpill(id: string, f: KernelFlow): Promise<number> {
    const r = await this.#companion.addFlow(`${id}${SPILL_SUFFIX}`, this.#spillPlan(f.plan, f.listen, 0, f.spill), { sendVia: id, onlyMark: SLUICE_MARK });
    return r.listen.port;
  }

  async updateFlow(id: string, plan: FlowPlan): Promise<void> {
    const f = this.#flows.get(id);
    if (!f) throw new InvalidArgumentError(`no flow with id '${id}'`);
    const { subs, spill, fresh } = this.#assign(plan, f.listen, f.subs, f.spill);
    this.#zeroDests(fresh);
    await this.#companion.updateFlow(id, plan);
    if (f.spillPort) await this.#companion.updateFlow(`${id}${SPILL_SUFFIX}`, this.#spillPlan(plan, f.listen, f.spillPort, spill));
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
    const kernel = this.#kernelCounters(f);
    // The spill flow sends through the main flow's sockets: it goes first.
    const spill = f.spillPort ? await this.#companion.removeFlow(`${id}${SPILL_SUFFIX}`) : undefined;
    const main = await this.#companion.removeFlow(id);
    for (const k of f.allow) mapDelete(this.#fd('allow'), k, 'allow');
    for (const s of f.subs) this.#destSlots.give(s.destSlot);
    this.#flowSlots.give(f.slot);
    return this.#merge(f, kernel, main, spill);
  }

  flowStats(id: string): FlowStats | undefined {
    const f = this.#flows.get(id);
    if (!f) return undefined;
    const spill = f.spillPort ? this.#companion.flowStats(`${id}${SPILL_SUFFIX}`) : undefined;
    return this.#merge(f, this.#kernelCounters(f), this.#companion.flowStats(id), spill);
  }

  /** Where each subscriber is served and the kernel-only counters (punts, spills). */
  flowDetail(id: string): KernelFlowDetail | undefined {
    const f = this.#flows.get(id);
    if (!f) return undefined;
    return { inKernel: f.subs.map((s) => formatEndpoint(s.endpoint)), spilled: f.spill.map(formatEndpoint), counters: this.#kernelCounters(f).flow };
  }

  #kernelCounters(f: KernelFlow): KernelCounters {
    const raw = mapLookup(this.#fd('flow_stats'), this.#slotKey(f.slot), FLOW_COUNTERS_SIZE * this.#cpus, 'flow_stats');
    const flow = sumPerCpu(raw ?? new Uint8Array(FLOW_COUNTERS_SIZE * this.#cpus), FLOW_COUNTERS, this.#cpus);
    const dests = new Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>();
    for (const s of f.subs) {
      const d =
        mapLookup(this.#fd('dest_stats'), this.#slotKey(s.destSlot), DEST_COUNTERS_SIZE * this.#cpus, 'dest_stats') ??
        new Uint8Array(DEST_COUNTERS_SIZE * this.#cpus);
      dests.set(endpointKey(s.endpoint), { counts: sumPerCpu(d, DEST_COUNTERS, this.#cpus), errno: lastErrno(d, this.#cpus) });
    }
    return { flow, dests };
  }

  #merge(f: KernelFlow, k: KernelCounters, main: FlowStats | undefined, spill: FlowStats | undefined): FlowStats {
    const kf = k.flow;
    const byDest = (s: FlowStats | undefined) => new Map((s?.destinations ?? []).map((d) => [d.to, d]));
    const mainDest = byDest(main);
    const spillDest = byDest(spill);
    const copied = kernelCopied(kf);
    const destinations: DestinationStats[] = f.plan.destinations.map((ep) => {
      const to = formatEndpoint(ep);
      const kd = k.dests.get(endpointKey(ep));
      const parts = [mainDest.get(to), spillDest.get(to)];
      const sum = (pick: (d: DestinationStats) => number) => parts.reduce((n, d) => n + (d ? pick(d) : 0), 0);
      const s: DestinationStats = {
        to,
        packetsOut: (kd?.counts.packetsOut ?? 0) + sum((d) => d.packetsOut),
        bytesOut: (kd?.counts.bytesOut ?? 0) + sum((d) => d.bytesOut),
        drops: {
          sendError: (kd?.counts.sendError ?? 0) + sum((d) => d.drops.sendError),
          queueFull: sum((d) => d.drops.queueFull),
          // ICMP errors come back to the companions' sockets, whoever made the copy.
          unreachable: sum((d) => d.drops.unreachable),
          suspended: f.suspended.missed(to, copied) + sum((d) => d.drops.suspended),
        },
      };
      const lastError = kd?.errno ? errnoName(kd.errno) : parts.find((d) => d?.lastError)?.lastError;
      const until = parts.find((d) => d?.suspendedUntil)?.suspendedUntil;
      return { ...s, ...(lastError ? { lastError } : {}), ...(until ? { suspendedUntil: until } : {}) };
    });
    const m = main;
    const sp = spill;
    const add = (pick: (s: FlowStats) => number) => (m ? pick(m) : 0) + (sp ? pick(sp) : 0);
    return {
      name: f.plan.name,
      type: f.plan.type,
      tier: 'kernel',
      listen: formatEndpoint(f.listen),
      // Datagrams the program punted were counted by it and again by the companion.
      packetsIn: Math.max(0, kf.packetsIn - kf.toStackPackets) + (m?.packetsIn ?? 0),
      bytesIn: Math.max(0, kf.bytesIn - kf.toStackBytes) + (m?.bytesIn ?? 0),
      packetsOut: kf.packetsOut + add((s) => s.packetsOut),
      bytesOut: kf.bytesOut + add((s) => s.bytesOut),
      drops: {
        sourceNotAllowed: kf.sourceNotAllowed + add((s) => s.drops.sourceNotAllowed),
        malformed: kf.malformed + add((s) => s.drops.malformed),
        tooLarge: kf.tooLarge + add((s) => s.drops.tooLarge),
        sendError: kf.sendError + kf.spillError + add((s) => s.drops.sendError),
        queueFull: add((s) => s.drops.queueFull),
        // Loops are caught where datagrams reach user space: the companions.
        relayLoop: add((s) => s.drops.relayLoop),
        unreachable: add((s) => s.drops.unreachable),
        suspended: add((s) => s.drops.suspended) + f.suspended.totalMissed(copied),
      },
      destinations,
    };
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
      for (const a of this.#attachments) closeFd(a.linkFd);
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

/** Root, or both CAP_BPF (39) and CAP_NET_ADMIN (12) in the effective set. */
function privilegeProblem(): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const caps = BigInt(`0x${hex}`);
    const has = (bit: number) => ((caps >> BigInt(bit)) & 1n) === 1n;
    if (has(39) && has(12)) return undefined;
  } catch {
    // No /proc: treat as unprivileged.
  }
  return 'needs root, or CAP_BPF and CAP_NET_ADMIN';
}

/** What the program holds, for notes and `sluice doctor`. */
function programNote(insns: number): string {
  return `program: ${insns} instructions; up to ${MAX_SUBS} subscribers per flow in the kernel (${CHUNK} per run, continued by tail call), the rest spilled to the batched tier`;
}

/**
 * Copies for local (lo) and veth subscribers wait in the CPU's backlog
 * queue until the program's run ends: a datagram for N of them queues N.
 */
function backlogNote(): string {
  let v = '?';
  try {
    v = readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8').trim();
  } catch {
    // Not visible in this namespace (the sysctl is global, shown in the initial one only).
  }
  return `net.core.netdev_max_backlog=${v}: every copy to a local or veth subscriber waits there until the datagram's copies are made; raise it (e.g. 10000) for fan-outs of hundreds with bursts`;
}

/** Kernel version as [major, minor]. */
function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export async function probeKernelTier(): Promise<TierProbe> {
  const no = (detail: string, notes?: string[]): TierProbe => ({ tier: 'kernel', available: false, detail, ...(notes ? { notes } : {}) });
  if (process.platform !== 'linux') return no(`needs Linux (this is ${process.platform})`);
  const [maj, min] = kernelVersion();
  if (maj < 6 || (maj === 6 && min < 6)) return no(`needs Linux 6.6 or newer for tcx links (this is ${maj}.${min})`);
  const priv = privilegeProblem();
  if (priv) return no(priv);
  const ffi = ffiAvailable();
  if (!ffi.ok) return no(ffi.reason);
  const batched = await batchedProvider.probe();
  if (!batched.available) return no(`its companion, the batched tier, is unavailable: ${batched.detail}`);
  let insns = 0;
  try {
    insns = readObject().programs[0]!.insns.length / 8;
  } catch (err) {
    return no(`bpf/sluice.o is unusable: ${(err as Error).message}`);
  }
  try {
    // bpf() permitted here (seccomp, lockdown and unprivileged_bpf_disabled say otherwise)?
    closeFd(mapCreate({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, flags: 0, name: 'sl_probe' }));
  } catch (err) {
    return no(`bpf() refused: ${(err as Error).message}`);
  }
  const { hooks, skipped } = chooseHooks();
  const notes = [
    `tcx hooks: ${hooks.map((h) => `${h.iface.name} ${h.direction}`).join(', ')}`,
    ...(skipped.length ? [`not attached: ${skipped.join(', ')}`] : []),
    programNote(insns),
    'sets on lo: net.ipv4.conf.lo.{forwarding,route_localnet,accept_local}=1, net.ipv6.conf.lo.forwarding=1 (route lookups and local delivery from eBPF); restored when no kernel-tier process and no pinned state needs them any more',
    'checks at ingress as the stack does: lengths, checksums, martian sources and rp_filter (per interface, refreshed every 2 s); what fails is left to the stack. Netfilter rules (an IPv6 rpfilter too) do not apply to what it carries: it runs before them',
    backlogNote(),
  ];
  return { tier: 'kernel', available: true, detail: `eBPF on tcx (Linux ${maj}.${min}), with the batched tier as companion`, notes };
}

export const kernelProvider: TierProvider = {
  tier: 'kernel',
  probe: probeKernelTier,
  async create(options) {
    return KernelPlane.start(options);
  },
};
