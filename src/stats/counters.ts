/**
 * Counter names shared by every tier. A tier may not observe every reason
 * (see docs/ARCHITECTURE.md), but it never invents other names, so
 * dashboards and tests read one shape whatever the tier.
 */

/** Why a datagram (or one copy of it) was not delivered. */
export const FLOW_DROP_REASONS = [
  /** Sender is not in the flow's allow list. */
  'sourceNotAllowed',
  /** Payload failed the policy's format check (e.g. not whole TS packets). */
  'malformed',
  /** Datagram longer than maxDatagramSize. */
  'tooLarge',
  /** The OS refused a copy (EHOSTUNREACH, ENETUNREACH, ENOBUFS, EPERM, ...). */
  'sendError',
  /** The send queue was full; the copy was not queued. */
  'queueFull',
  /**
   * The datagram came from one of this instance's own flow sockets: flows
   * feeding each other or themselves (a relay loop). Dropped on arrival, so
   * a datagram crosses at most one flow-to-flow hop instead of circulating.
   */
  'relayLoop',
] as const;
export type FlowDropReason = (typeof FLOW_DROP_REASONS)[number];

/** Reasons that apply to one copy, i.e. to one destination. */
export const DESTINATION_DROP_REASONS = ['sendError', 'queueFull'] as const;
export type DestinationDropReason = (typeof DESTINATION_DROP_REASONS)[number];

export interface DestinationStats {
  /** `udp://HOST:PORT` */
  readonly to: string;
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly drops: Readonly<Record<DestinationDropReason, number>>;
  /** errno of the most recent failed copy, e.g. `EHOSTUNREACH`. */
  readonly lastError?: string;
}

/**
 * Snapshot of one flow. `packetsIn` counts every datagram received on the
 * listen address, including those then dropped; `packetsOut` counts copies
 * handed to the OS for sending (a 1→8 replicate turns one in into eight out).
 * Totals survive subscriber removal; `destinations` lists current ones.
 */
export interface FlowStats {
  readonly name: string;
  readonly type: 'redirect' | 'replicate';
  readonly tier: string;
  readonly listen: string;
  readonly packetsIn: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly drops: Readonly<Record<FlowDropReason, number>>;
  readonly destinations: readonly DestinationStats[];
}

/** Mutable counters a data plane increments (one object per flow). */
export class FlowCounters {
  packetsIn = 0;
  bytesIn = 0;
  packetsOut = 0;
  bytesOut = 0;
  sourceNotAllowed = 0;
  malformed = 0;
  tooLarge = 0;
  sendError = 0;
  queueFull = 0;
  relayLoop = 0;

  drops(): Record<FlowDropReason, number> {
    return {
      sourceNotAllowed: this.sourceNotAllowed,
      malformed: this.malformed,
      tooLarge: this.tooLarge,
      sendError: this.sendError,
      queueFull: this.queueFull,
      relayLoop: this.relayLoop,
    };
  }
}

/** Mutable counters for one destination of a flow. */
export class DestinationCounters {
  packetsOut = 0;
  bytesOut = 0;
  sendError = 0;
  queueFull = 0;
  lastError: string | undefined = undefined;

  snapshot(to: string): DestinationStats {
    const s = { to, packetsOut: this.packetsOut, bytesOut: this.bytesOut, drops: { sendError: this.sendError, queueFull: this.queueFull } };
    return this.lastError === undefined ? s : { ...s, lastError: this.lastError };
  }
}
