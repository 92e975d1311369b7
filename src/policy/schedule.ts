/**
 * Pure planning for aggregate sends: when each message of an aggregate is
 * due, relative to the aggregate's start. Engines (issue #5) pace these;
 * keeping the arithmetic here makes it testable without a clock.
 */
import type { ScheduleSpec } from './schema.js';

/** One entry of a transmission plan: message index and due time (ms after start). */
export interface PlannedSend {
  readonly index: number;
  readonly atMs: number;
}

/**
 * Returns the messages in transmission order with their due times.
 * - sequence: ascending sequence number, spaced by tickMs;
 * - delays: each message at its delay (ties keep the given order);
 * - range: given offsets, or evenly spread over durationMs.
 */
export function planSchedule(schedule: ScheduleSpec, count: number): PlannedSend[] {
  const idx = Array.from({ length: count }, (_, i) => i);
  switch (schedule.kind) {
    case 'sequence': {
      const seq = schedule.sequence;
      idx.sort((a, b) => seq[a]! - seq[b]!);
      return idx.map((index, rank) => ({ index, atMs: rank * schedule.tickMs }));
    }
    case 'delays': {
      const d = schedule.delaysMs;
      idx.sort((a, b) => d[a]! - d[b]! || a - b);
      return idx.map((index) => ({ index, atMs: d[index]! }));
    }
    case 'range': {
      const offsets = schedule.offsetsMs;
      if (offsets) {
        idx.sort((a, b) => offsets[a]! - offsets[b]! || a - b);
        return idx.map((index) => ({ index, atMs: offsets[index]! }));
      }
      const step = count > 1 ? schedule.durationMs / (count - 1) : 0;
      return idx.map((index) => ({ index, atMs: index * step }));
    }
  }
}
