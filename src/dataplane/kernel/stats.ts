/**
 * A kernel-tier flow's statistics: the program's per-CPU counters (flow and
 * per destination) read from the maps, and their merge with the two
 * companion flows' (main and spill) under the counter names every tier uses.
 */
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../../wire/endpoint.js';
import type { DestinationStats, FlowStats } from '../common/counters.js';
import { mapLookup } from '../../sys/bpf.js';
import { errnoName } from '../../sys/errno.js';
import { kernelCopied, type KernelSuspensions } from './suspensions.js';
import { SNAPSHOT_FROM_SUBSCRIBERS, type DestStatsSnapshot } from './dest-snapshot.js';
import {
  DEST_COUNTERS,
  DEST_COUNTERS_SIZE,
  FLOW_COUNTERS,
  FLOW_COUNTERS_SIZE,
  lastErrno,
  slotKey,
  sumPerCpu,
  type FlowCounterName,
  type KernelSub,
} from './layout.js';

/** Kernel-only detail of one flow, for `sluice doctor`, the bench and debugging. */
export interface KernelFlowDetail {
  /** Subscribers copied in the kernel / by the spill companion. */
  readonly inKernel: readonly string[];
  readonly spilled: readonly string[];
  readonly counters: Readonly<Record<FlowCounterName, number>>;
  /** The XDP program's share (kernelHook 'xdp'/'auto'): redirected in the driver (also in `counters`), and datagrams left to tcx. */
  readonly xdp?: Readonly<{ packets: number; bytes: number; passed: number }>;
}

/** The program's counters of one flow, summed over CPUs. */
export interface KernelCounters {
  readonly flow: Record<FlowCounterName, number>;
  readonly dests: Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>;
}

/** Reads the counters of the flow in `slot` (flow_stats map) and of its in-kernel subscribers (dest_stats, through `dests`). */
export function readKernelCounters(flowStatsFd: number, destStats: DestStatsSnapshot, cpus: number, slot: number, subs: readonly KernelSub[]): KernelCounters {
  const raw = mapLookup(flowStatsFd, slotKey(slot), FLOW_COUNTERS_SIZE * cpus, 'flow_stats');
  const flow = sumPerCpu(raw ?? new Uint8Array(FLOW_COUNTERS_SIZE * cpus), FLOW_COUNTERS, cpus);
  const dests = new Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>();
  const many = subs.length >= SNAPSHOT_FROM_SUBSCRIBERS;
  for (const s of subs) {
    const d = destStats.value(s.destSlot, many) ?? new Uint8Array(DEST_COUNTERS_SIZE * cpus);
    dests.set(keyOf(s.endpoint), { counts: sumPerCpu(d, DEST_COUNTERS, cpus), errno: lastErrno(d, cpus) });
  }
  return { flow, dests };
}

/** The flow as the merge needs it: its policy, listen address and the subscribers the companion suspended. */
export interface MergedFlow {
  readonly plan: FlowPlan;
  readonly listen: Endpoint;
  readonly suspended: KernelSuspensions;
}

/** Endpoint keys by endpoint object: a subscriber's endpoint lives as long as its placement. */
const keys = new WeakMap<Endpoint, string>();
function keyOf(ep: Endpoint): string {
  let k = keys.get(ep);
  if (k === undefined) keys.set(ep, (k = endpointKey(ep)));
  return k;
}

/** A companion flow's destinations by `to`; undefined when it has none (the usual case: the program serves them). */
function byDestination(s: FlowStats | undefined): Map<string, DestinationStats> | undefined {
  if (!s || s.destinations.length === 0) return undefined;
  return new Map(s.destinations.map((d) => [d.to, d]));
}

/**
 * Each destination's `udp://` name and endpoint key, computed once per plan
 * (a plan is replaced, never changed, when the policy changes): formatting
 * and canonicalizing 10,000 addresses on every read was most of a scrape.
 */
const planNames = new WeakMap<FlowPlan, readonly { readonly to: string; readonly key: string }[]>();
function destinationNames(plan: FlowPlan): readonly { readonly to: string; readonly key: string }[] {
  let names = planNames.get(plan);
  if (!names) {
    names = plan.destinations.map((ep) => ({ to: formatEndpoint(ep), key: endpointKey(ep) }));
    planNames.set(plan, names);
  }
  return names;
}

/** One FlowStats from the program's counters `k`, the companion flows' stats (`main`, `spill`) and the host's backlog drops since the flow started. */
export function mergeFlowStats(f: MergedFlow, k: KernelCounters, main: FlowStats | undefined, spill: FlowStats | undefined, hostBacklog = 0): FlowStats {
  const kf = k.flow;
  const mainDest = byDestination(main);
  const spillDest = byDestination(spill);
  const copied = kernelCopied(kf);
  const names = destinationNames(f.plan);
  const destinations: DestinationStats[] = names.map(({ to, key }) => {
    const kd = k.dests.get(key);
    const a = mainDest?.get(to);
    const b = spillDest?.get(to);
    const s: DestinationStats = {
      to,
      packetsOut: (kd?.counts.packetsOut ?? 0) + (a?.packetsOut ?? 0) + (b?.packetsOut ?? 0),
      bytesOut: (kd?.counts.bytesOut ?? 0) + (a?.bytesOut ?? 0) + (b?.bytesOut ?? 0),
      drops: {
        sendError: (kd?.counts.sendError ?? 0) + (a?.drops.sendError ?? 0) + (b?.drops.sendError ?? 0),
        queueFull: (a?.drops.queueFull ?? 0) + (b?.drops.queueFull ?? 0),
        // ICMP errors come back to the companions' sockets, whoever made the copy.
        unreachable: (a?.drops.unreachable ?? 0) + (b?.drops.unreachable ?? 0),
        suspended: f.suspended.missed(to, copied) + (a?.drops.suspended ?? 0) + (b?.drops.suspended ?? 0),
      },
    };
    const lastError = kd?.errno ? errnoName(kd.errno) : (a?.lastError ?? b?.lastError);
    const until = a?.suspendedUntil || b?.suspendedUntil;
    return lastError || until ? { ...s, ...(lastError ? { lastError } : {}), ...(until ? { suspendedUntil: until } : {}) } : s;
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
    hostDrops: { hostBacklog },
    destinations,
  };
}
