/**
 * DataPlane.joinFlow on the kernel tier. The program copies a datagram on
 * whichever CPU it arrives, with the map entry it looked up, so no
 * instant separates "before" from "after" as the batched worker's loop
 * does: the boundary is read from the counter destination's copies just
 * before and just after the flow entry is replaced. Datagrams counted in
 * between may reach the new destinations twice (from the program and
 * from the feeder); their number is reported as `overlap` (docs/TIERS.md).
 */
import type { JoinPoint, JoinResult } from '../common/types.js';

/**
 * `count` reads the counter destination's copies; `update` applies the plan
 * and calls `beforeWrite` just before it writes the flow entry.
 */
export async function joinByCounts(at: JoinPoint, count: () => number, update: (beforeWrite: () => void) => Promise<void>): Promise<JoinResult> {
  let before = count();
  if (before !== at.after && at.force !== true) return { applied: false, count: before, overlap: 0 };
  await update(() => (before = count()));
  const after = count();
  return { applied: true, count: after, overlap: after - before };
}
