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

/** The program's counters of one flow, summed over CPUs. */
export interface KernelCounters {
  readonly flow: Record<FlowCounterName, number>;
  readonly dests: Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>;
}

/** Reads the counters of the flow in `slot` and of its in-kernel subscribers from the flow_stats and dest_stats maps. */
export function readKernelCounters(flowStatsFd: number, destStatsFd: number, cpus: number, slot: number, subs: readonly KernelSub[]): KernelCounters {
  const raw = mapLookup(flowStatsFd, slotKey(slot), FLOW_COUNTERS_SIZE * cpus, 'flow_stats');
  const flow = sumPerCpu(raw ?? new Uint8Array(FLOW_COUNTERS_SIZE * cpus), FLOW_COUNTERS, cpus);
  const dests = new Map<string, { counts: Record<(typeof DEST_COUNTERS)[number], number>; errno: number }>();
  for (const s of subs) {
    const d = mapLookup(destStatsFd, slotKey(s.destSlot), DEST_COUNTERS_SIZE * cpus, 'dest_stats') ?? new Uint8Array(DEST_COUNTERS_SIZE * cpus);
    dests.set(endpointKey(s.endpoint), { counts: sumPerCpu(d, DEST_COUNTERS, cpus), errno: lastErrno(d, cpus) });
  }
  return { flow, dests };
}

/** The flow as the merge needs it: its policy, listen address and the subscribers the companion suspended. */
export interface MergedFlow {
  readonly plan: FlowPlan;
  readonly listen: Endpoint;
  readonly suspended: KernelSuspensions;
}

/** One FlowStats from the program's counters `k` and the companion flows' stats (`main`, `spill`). */
export function mergeFlowStats(f: MergedFlow, k: KernelCounters, main: FlowStats | undefined, spill: FlowStats | undefined): FlowStats {
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
