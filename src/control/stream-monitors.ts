/**
 * The stream monitor a monitored flow gets: src/media's createMonitor with
 * the TS monitor plugged in, for the plan's payload and clock rate.
 */
import { createMonitor as createMediaMonitor } from '../media/monitor.js';
import { createTsMonitor } from '../media/ts-monitor.js';
import type { MonitorPlan } from '../policy/compile.js';
import type { MediaAlarm, StreamMonitor } from '../media/monitor-types.js';

export function createMonitor(plan: MonitorPlan, onAlarm: (alarm: MediaAlarm) => void): StreamMonitor {
  return createMediaMonitor(plan.payload, { onAlarm, rtpClockRate: plan.rtpClockRate }, { createTsMonitor });
}
