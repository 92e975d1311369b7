/**
 * The contract between the policy table (control plane) and a tier's data
 * plane. The policy table validates and compiles policies; a DataPlane only
 * executes FlowPlans. Every tier implements this one interface, and the
 * conformance suite (test/conformance) checks them all against it.
 */
import type { Endpoint } from '../../wire/endpoint.js';
import type { FlowPlan } from '../../policy/compile.js';
import type { SendEngineName, TierName } from '../../policy/schema.js';
import type { FlowStats } from './counters.js';
import type { EngineFailedError } from '../../errors.js';

export interface DataPlane {
  readonly tier: TierName;

  /**
   * Starts carrying out `plan` under `id`. Resolves once datagrams arriving
   * on the listen address are handled, with the address actually bound (a
   * listen port of 0 is replaced by the port the OS chose).
   * Rejects with SyscallError (e.g. bind: EADDRINUSE) and leaves nothing behind.
   */
  addFlow(id: string, plan: FlowPlan): Promise<{ listen: Endpoint }>;

  /**
   * Replaces the plan of a running flow. The listen address does not change.
   * Destinations present in both plans keep their counters and lose no
   * datagram; new ones receive from the next datagram on.
   */
  updateFlow(id: string, plan: FlowPlan): Promise<void>;

  /**
   * Fast channel change: applies `plan` (the running plan with new
   * destinations) at a datagram boundary, so that a feeder that forwarded a
   * counter destination's copies 1..N to the new destinations hands over
   * with no gap and no duplicate. The counter destination (the monitor tap)
   * numbers the flow's datagrams by the copies the plane handed it. With
   * `at.after` = N the plan is applied only if that count is still N (the
   * new destinations then get datagram N+1 on from the plane); otherwise
   * nothing changes and the count is reported, so the feeder can catch up
   * and ask again. `force` applies it whatever the count: the feeder then
   * forwards N+1..count itself (they reach the new destinations after, not
   * before, what the plane sends). Optional: tiers without it are joined by
   * updateFlow.
   */
  joinFlow?(id: string, plan: FlowPlan, at: JoinPoint): Promise<JoinResult>;

  /**
   * Stops the flow, lets copies already queued leave, releases its
   * sockets/maps and returns its final counters. Unknown ids: undefined.
   */
  removeFlow(id: string): Promise<FlowStats | undefined>;

  /** Cheap synchronous counter snapshot; undefined for unknown ids. */
  flowStats(id: string): FlowStats | undefined;

  /**
   * Set once the plane's engine has stopped on its own (e.g. its worker
   * thread died): its flows carry nothing any more, addFlow/updateFlow
   * reject with this error, flowStats keep the last counters, and
   * removeFlow/close release what is left. Undefined while healthy (and
   * always on a tier without an engine of its own).
   */
  readonly failure?: EngineFailedError;

  /** Tier-specific diagnostics of one flow (optional). */
  flowDetail?(id: string): unknown;

  /** Kernel tier: drops outside Sluice on this host while its flows ran (HostDrops); other tiers have none. */
  hostDrops?(): HostDrops;

  /**
   * Removes every flow and releases the plane. Idempotent. `keepForwarding`
   * asks a tier that can (kernel, pinned) to leave its flows forwarding after
   * this process; others ignore it.
   */
  close(options?: { keepForwarding?: boolean }): Promise<void>;
}

/**
 * Drops the host made outside Sluice while a plane's flows ran, host-wide:
 * the kernel counts them per CPU, not per flow or socket.
 */
export interface HostDrops {
  /**
   * Packets the host's backlog queue (`net.core.netdev_max_backlog`) had
   * no room for: /proc/net/softnet_stat's dropped column, summed over CPUs.
   * The kernel tier's copies to local and veth subscribers wait there.
   */
  readonly hostBacklog: number;
}

/** Where joinFlow applies a plan: see DataPlane.joinFlow. */
export interface JoinPoint {
  /** The destination whose copies number the flow's datagrams (in the plan before and after). */
  readonly counter: Endpoint;
  /** Apply only while the counter's copies number exactly this many. */
  readonly after: number;
  /** Apply whatever the count. */
  readonly force?: boolean;
}

export interface JoinResult {
  /** Whether the plan now runs. */
  readonly applied: boolean;
  /**
   * The counter's copies when the plan took effect (or, not applied, now):
   * the new destinations get datagram count+1 on from the plane.
   */
  readonly count: number;
  /**
   * Datagrams just before the boundary that the new destinations may get
   * both from the plane and from the feeder (kernel tier: the copies the
   * program made while its map entry was being replaced; 0 where exact).
   */
  readonly overlap: number;
}

/** What probing found out about one tier on this host. */
export interface TierProbe {
  readonly tier: TierName;
  readonly available: boolean;
  /** Why the tier is unavailable, or what it will use when available. */
  readonly detail: string;
  /** Individual findings (kernel features, limits), one line each, for `sluice doctor`. */
  readonly notes?: readonly string[];
}

/** A tier's entry in the registry: how to probe it, how to start it, and which engine its one-shot sends use. */
export interface TierProvider {
  readonly tier: TierName;
  readonly sendEngine: SendEngineName;
  probe(): Promise<TierProbe>;
  create(options: DataPlaneOptions): Promise<DataPlane>;
}

export interface DataPlaneOptions {
  /** Socket receive/send buffer request, bytes (the kernel may cap it at rmem_max/wmem_max). */
  readonly socketBufferBytes?: number;
  /**
   * Batched tier: longest time (ms) a received datagram waits for others to
   * be sent with it (one sendmmsg, GSO per destination). 0 sends every
   * receive batch at once. Default 1.
   */
  readonly batchHoldMs?: number;
  /**
   * Batched tier: worker threads per flow, each with its own SO_REUSEPORT
   * listen socket, every source steered to one of them (order per source
   * holds). 'auto': one per core. Default 1.
   */
  readonly workers?: number | 'auto';
  /**
   * Kernel tier: pin maps and links in bpffs so forwarding survives this
   * process (true: under /sys/fs/bpf/sluice; a string: under that bpffs
   * directory). A later process with the same pin root adopts the state.
   */
  readonly kernelPin?: boolean | string;
  /** Kernel tier: attach ingress only on these interfaces (lo egress is always attached). */
  readonly kernelInterfaces?: readonly string[];
  /** Kernel tier: where redirect flows run (src/dataplane/kernel/xdp.ts): 'tcx' (default), 'xdp' (native, else generic) or 'auto' (native only). */
  readonly kernelHook?: 'xdp' | 'tcx' | 'auto';
  /**
   * Called once if the plane's engine stops on its own (see
   * DataPlane.failure). Never called for a stop that close() asked for.
   */
  readonly onEngineFailed?: (error: EngineFailedError) => void;
  /**
   * Batched and kernel tiers: called when the engine suspends subscriber
   * `to` (`udp://HOST:PORT`) of flow `id` until `until` (ms since the
   * epoch), or resumes it (`until` 0), under the policy's
   * suspendAfterErrors. The portable tier suspends without calling it.
   */
  readonly onSuspension?: (id: string, to: string, until: number) => void;
  /**
   * Kernel tier: called once, when the host's backlog queue first drops
   * packets while flows run, with a message naming the setting to change.
   */
  readonly onHostWarning?: (message: string) => void;
}
