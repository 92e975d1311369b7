/**
 * FlowTaps: the policy table's monitor taps, one per monitored flow. It
 * turns the plan the table compiled into the plan the data plane runs (the
 * same, plus the tap as a last destination), and turns the data plane's
 * counters back into what the flow's owner sees: the tap's copies taken
 * out of the totals and of the destination list, and the monitor's
 * findings added as `media`.
 */
import type { FlowPlan } from '../policy/compile.js';
import type { Endpoint } from '../wire/endpoint.js';
import type { DestinationStats, FlowStats } from '../dataplane/common/counters.js';
import type { MediaAlarm, MediaStats } from '../media/monitor-types.js';
import { MonitorTap, type MonitorFactory } from './monitor-tap.js';
import type { RtcpCounters } from './rtcp-relay.js';

/** A flow's stream monitor findings (Flow.stats().media). */
export interface FlowMediaStats extends MediaStats {
  /**
   * Copies the data plane sent the monitor that it has not read yet: lost
   * on the loopback (the tap's receive buffer overflowed) or still queued.
   * While this grows, the monitor undercounts and may report losses the
   * subscribers did not have.
   */
  readonly unread: number;
}

/** A flow's counters with, for a monitored flow, what its monitor found, and for an RTCP-paired one, what its RTCP relay did. */
export type MonitoredFlowStats = FlowStats & { readonly media?: FlowMediaStats; readonly rtcp?: RtcpCounters };

export class FlowTaps {
  readonly #factory: MonitorFactory;
  readonly #onAlarm: (id: string, alarm: MediaAlarm) => void;
  readonly #taps = new Map<string, MonitorTap>();

  constructor(factory: MonitorFactory, onAlarm: (id: string, alarm: MediaAlarm) => void) {
    this.#factory = factory;
    this.#onAlarm = onAlarm;
  }

  /** The tap of flow `id`, if it is monitored (fast channel change reads the stream from it). */
  get(id: string): MonitorTap | undefined {
    return this.#taps.get(id);
  }

  /**
   * The plan the data plane runs for flow `id`: `plan` plus the tap. Opens
   * the tap the first time, applies a changed monitor plan, and closes it
   * (after `apply`) when monitoring was turned off. `apply` sends the plan
   * to the data plane; a tap opened here is closed again if it fails.
   */
  async run<T>(id: string, plan: FlowPlan, listen: Endpoint, apply: (planePlan: FlowPlan) => Promise<T>): Promise<T> {
    const existing = this.#taps.get(id);
    if (!plan.monitor) {
      const result = await apply(plan);
      if (existing) this.close(id);
      return result;
    }
    const tap = existing ?? (await MonitorTap.open(listen, plan.monitor, this.#factory, (alarm) => this.#onAlarm(id, alarm)));
    try {
      const result = await apply({ ...plan, destinations: [...plan.destinations, tap.endpoint] });
      if (existing) tap.update(plan.monitor);
      else this.#taps.set(id, tap);
      return result;
    } catch (err) {
      if (!existing) tap.close();
      throw err;
    }
  }

  /** Closes flow `id`'s tap (after the data plane stopped sending to it). */
  close(id: string): void {
    this.#taps.get(id)?.close();
    this.#taps.delete(id);
  }

  /** Closes every tap. */
  closeAll(): void {
    for (const id of [...this.#taps.keys()]) this.close(id);
  }

  /** What the flow's owner sees of `stats`: without the tap's copies, with the monitor's findings. */
  view(id: string, stats: FlowStats): MonitoredFlowStats;
  view(id: string, stats: FlowStats | undefined): MonitoredFlowStats | undefined;
  view(id: string, stats: FlowStats | undefined): MonitoredFlowStats | undefined {
    const tap = this.#taps.get(id);
    if (!stats || !tap) return stats;
    const to = tap.to;
    const copy = stats.destinations.find((d) => d.to === to);
    const media: FlowMediaStats = { ...tap.stats(), unread: Math.max(0, (copy?.packetsOut ?? 0) - tap.received) };
    if (!copy) return { ...stats, media };
    return {
      ...stats,
      packetsOut: stats.packetsOut - copy.packetsOut,
      bytesOut: stats.bytesOut - copy.bytesOut,
      drops: withoutCopyDrops(stats.drops, copy),
      destinations: stats.destinations.filter((d) => d !== copy),
      media,
    };
  }
}

/** The flow's drops minus those of the tap's copies (each destination reason counts in both). */
function withoutCopyDrops(drops: FlowStats['drops'], copy: DestinationStats): FlowStats['drops'] {
  const out = { ...drops };
  for (const [reason, n] of Object.entries(copy.drops) as [keyof DestinationStats['drops'], number][]) out[reason] -= n;
  return out;
}
