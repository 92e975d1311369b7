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
  /**
   * Copies the network reported undeliverable after they left: an ICMP
   * error (port, host or network unreachable, ...) came back naming the
   * destination. Counted *in addition to* packetsOut (the copy did leave);
   * at most one per refused copy, fewer where the kernel rate-limits ICMP.
   * Tiers that cannot read ICMP errors report 0 (docs/ARCHITECTURE.md).
   */
  'unreachable',
  /** Copies not sent because their subscriber is suspended (policy `suspendAfterErrors`). */
  'suspended',
] as const;
export type FlowDropReason = (typeof FLOW_DROP_REASONS)[number];

/** Reasons that apply to one copy, i.e. to one destination. */
export const DESTINATION_DROP_REASONS = ['sendError', 'queueFull', 'unreachable', 'suspended'] as const;
export type DestinationDropReason = (typeof DESTINATION_DROP_REASONS)[number];

export interface DestinationStats {
  /** `udp://HOST:PORT` */
  readonly to: string;
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly drops: Readonly<Record<DestinationDropReason, number>>;
  /** errno of the most recent failed copy or ICMP error, e.g. `EHOSTUNREACH`, `ECONNREFUSED`. */
  readonly lastError?: string;
  /** Present while the subscriber is suspended: when it is tried again (ms since the epoch). */
  readonly suspendedUntil?: number;
  /**
   * Present while the subscriber is left out for sending no RTCP report
   * for the policy's subscriberTimeoutMs (ms since the epoch): it is sent
   * nothing until it reports again, and its counters are those it had then.
   */
  readonly silentSince?: number;
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
  /**
   * Kernel tier only: packets the host dropped outside Sluice since the
   * flow started, by reason. Host-wide, not this flow's alone (the kernel
   * does not say whose they were): several kernel flows show the same drops.
   * `hostBacklog`: the CPU backlog queue was full (`net.core.netdev_max_backlog`).
   */
  readonly hostDrops?: { readonly hostBacklog: number };
  readonly destinations: readonly DestinationStats[];
  /**
   * Batched tier with several workers only: each worker's share, in worker
   * order (the totals above are their sums). A source always lands on the
   * same worker (SO_REUSEPORT steering), so one busy source shows as one
   * busy worker.
   */
  readonly workers?: readonly WorkerFlowCounters[];
  /** Present on a flow with policy `fastChannelChange` once its monitor tap runs (added by Flow.stats, not by the tiers). */
  readonly fastChannelChange?: FastChannelChangeStats;
}

/** One worker's counters of a flow (FlowStats.workers); `drops` is its drops of every reason. */
export interface WorkerFlowCounters {
  readonly packetsIn: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly bytesOut: number;
  readonly drops: number;
}

/** A flow's fast channel change (docs/POLICY.md, "Fast channel change"). */
export interface FastChannelChangeStats {
  /** What a join now would get: bytes and datagrams from the last random access point (0: none cached). */
  readonly cacheBytes: number;
  readonly cacheDatagrams: number;
  /** Random access points the cache found. */
  readonly randomAccessPoints: number;
  /** Caches dropped because a group of pictures outgrew maxCacheBytes. */
  readonly cacheOverflows: number;
  /** Subscribers added while the flow ran (Flow.addSubscriber, POST .../subscribers). */
  readonly joins: number;
  /** Joins that got a burst from the cache. */
  readonly fastJoins: number;
  /** Joins with no cache to send (none found yet, or it overflowed): live from the next datagram. */
  readonly fallbacks: number;
  /** Joins the data plane took at a later datagram than asked: the feeder forwarded up to it (may reorder a few). */
  readonly forcedJoins: number;
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
  unreachable = 0;
  suspended = 0;

  drops(): Record<FlowDropReason, number> {
    return {
      sourceNotAllowed: this.sourceNotAllowed,
      malformed: this.malformed,
      tooLarge: this.tooLarge,
      sendError: this.sendError,
      queueFull: this.queueFull,
      relayLoop: this.relayLoop,
      unreachable: this.unreachable,
      suspended: this.suspended,
    };
  }
}

/** Mutable counters for one destination of a flow. */
export class DestinationCounters {
  packetsOut = 0;
  bytesOut = 0;
  sendError = 0;
  queueFull = 0;
  unreachable = 0;
  suspended = 0;
  lastError: string | undefined = undefined;
  /** 0 while active. */
  suspendedUntil = 0;

  snapshot(to: string): DestinationStats {
    const drops = { sendError: this.sendError, queueFull: this.queueFull, unreachable: this.unreachable, suspended: this.suspended };
    return {
      to,
      packetsOut: this.packetsOut,
      bytesOut: this.bytesOut,
      drops,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
      ...(this.suspendedUntil ? { suspendedUntil: this.suspendedUntil } : {}),
    };
  }
}
