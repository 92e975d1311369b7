/**
 * DataPlane.joinFlow on the kernel tier. The program copies each datagram
 * on the CPU it arrives on, with the map entry it looked up, so no instant
 * of a loop separates "before" from "after" as in the batched worker. The
 * boundary is read from the counters instead: once the new entry is in
 * place, every datagram counts one copy for the counter destination (the
 * tap) and one attempt for the new subscriber, so counter − subscriber
 * stays constant and is exactly the number of datagrams the program copied
 * without the subscriber, whenever the entry was swapped and however long
 * runs that still held the old entry took. Two equal readings in a row
 * rule out a reading taken between a datagram's two copies.
 */
import type { JoinPoint, JoinResult } from '../common/types.js';
import type { FlowStats } from '../common/counters.js';
import type { FlowPlan } from '../../policy/compile.js';
import { endpointKey, formatEndpoint } from '../../wire/endpoint.js';

/** Counter copies and the new subscriber's attempts (copies, failed sends, suspended, queue full) as flowStats merges them. */
export interface JoinCounts {
  readonly counter: number;
  readonly joined: number;
}

const MAX_READINGS = 100;

/**
 * `read` gives the counts; `update` writes the new entry. Refuses (as the
 * contract says) when the counter is not at `at.after` before the write,
 * unless forced.
 */
export async function joinByCounts(at: JoinPoint, read: () => JoinCounts, update: () => Promise<void>): Promise<JoinResult> {
  const before = read().counter;
  if (before !== at.after && at.force !== true) return { applied: false, count: before, overlap: 0 };
  await update();
  let last = -1;
  for (let i = 0; i < MAX_READINGS; i++) {
    // A new pass: counters read in one synchronous pass may come from one snapshot (dest-snapshot.ts).
    await new Promise<void>((resolve) => setImmediate(resolve));
    const c = read();
    const boundary = c.counter - c.joined;
    if (boundary === last) return { applied: true, count: boundary, overlap: 0 };
    last = boundary;
  }
  // Traffic never let two readings agree: the last may be one off either way.
  return { applied: true, count: last, overlap: 1 };
}

/** Reads the counter's copies and the attempts of the destination `plan` adds to `old`, from the flow's merged stats. */
export function joinCounts(old: FlowPlan | undefined, plan: FlowPlan, at: JoinPoint, stats: () => FlowStats | undefined): () => JoinCounts {
  const before = new Set(old?.destinations.map((ep) => endpointKey(ep)));
  const added = plan.destinations.find((ep) => !before.has(endpointKey(ep)));
  const counter = formatEndpoint(at.counter);
  const joined = added && formatEndpoint(added);
  return () => {
    const dests = stats()?.destinations ?? [];
    const c = dests.find((d) => d.to === counter);
    const j = joined === undefined ? undefined : dests.find((d) => d.to === joined);
    return { counter: c?.packetsOut ?? 0, joined: j ? j.packetsOut + j.drops.sendError + j.drops.suspended + j.drops.queueFull : 0 };
  };
}
