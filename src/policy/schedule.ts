/**
 * Pure planning for aggregate sends: when each message of an aggregate is
 * due, relative to the aggregate's start. Engines (issue #5) pace these;
 * keeping the arithmetic here makes it testable without a clock.
 *
 * The plan is two typed arrays rather than an object per message: an
 * aggregate may hold 65,536 messages, and the engines read the plan in one
 * pass.
 */
import type { ScheduleSpec } from './schema.js';

/** Messages in transmission order: `order[k]` is a message index, due `atMs[k]` ms after the start. */
export interface SchedulePlan {
  readonly order: Int32Array;
  readonly atMs: Float64Array;
}

/**
 * Returns the messages in transmission order with their due times.
 * - sequence: ascending sequence number, spaced by tickMs;
 * - delays: each message at its delay (ties keep the given order);
 * - range: given offsets, or evenly spread over durationMs.
 */
export function planSchedule(schedule: ScheduleSpec, count: number): SchedulePlan {
  switch (schedule.kind) {
    case 'sequence': {
      const order = sortedBy(schedule.sequence, count);
      const atMs = new Float64Array(count);
      for (let rank = 0; rank < count; rank++) atMs[rank] = rank * schedule.tickMs;
      return { order, atMs };
    }
    case 'delays':
      return byTime(schedule.delaysMs, count);
    case 'range': {
      if (schedule.offsetsMs) return byTime(schedule.offsetsMs, count);
      const step = count > 1 ? schedule.durationMs / (count - 1) : 0;
      const order = identity(count);
      const atMs = new Float64Array(count);
      for (let i = 0; i < count; i++) atMs[i] = i * step;
      return { order, atMs };
    }
  }
}

function byTime(times: readonly number[], count: number): SchedulePlan {
  const order = sortedBy(times, count);
  const atMs = new Float64Array(count);
  for (let k = 0; k < count; k++) atMs[k] = times[order[k]!]!;
  return { order, atMs };
}

/** Indices 0..count-1 ordered by key, ties in index order (the common already-sorted case costs one pass). */
function sortedBy(key: readonly number[], count: number): Int32Array {
  const order = identity(count);
  let sorted = true;
  for (let i = 1; i < count && sorted; i++) sorted = key[i - 1]! <= key[i]!;
  if (!sorted) order.sort((a, b) => key[a]! - key[b]! || a - b);
  return order;
}

function identity(count: number): Int32Array {
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  return order;
}
