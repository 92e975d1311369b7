/**
 * Messages between the application thread (BatchedPlane) and the worker
 * (BatchedEngine), over a src/worker channel. Everything here is
 * structured-clone data; counter arrays are shared.
 */
import type { Endpoint } from '../../wire/endpoint.js';
import type { FlowPlan } from '../../policy/compile.js';

export interface EngineOptions {
  /** Longest time a received datagram may wait for more to batch with (ms). */
  readonly holdMs: number;
  /** Datagrams per recvmmsg and most datagrams held per flow before a flush. */
  readonly batch: number;
  /** Receive slots (64 KiB each) shared by all flows. */
  readonly slots: number;
  readonly socketBufferBytes: number;
  readonly gso: boolean;
  readonly gsoMaxSegments: number;
  readonly gro: boolean;
}

export interface WorkerData {
  readonly wakeFd: number;
  readonly options: EngineOptions;
}

export interface DestinationBinding {
  readonly endpoint: Endpoint;
  readonly counters: Float64Array;
}

/** How a flow differs from a plain relay (the kernel tier's spill flow uses both). */
export interface FlowOptions {
  /** Send the copies through that flow's sockets: they leave from its listen port. */
  readonly sendVia?: string;
  /** Receive only datagrams carrying this skb mark (the kernel tier's program marks its copies). */
  readonly onlyMark?: number;
  /** SO_REUSEPORT on the listen socket: one of a flow's workers (workers-plane.ts). */
  readonly reusePort?: boolean;
}

/**
 * DataPlane.joinFlow in the worker: after the held datagrams leave, the
 * plan is applied only if the counter destination (its index in the new
 * bindings) has packetsOut = `after`, or `force`.
 */
export interface JoinRequest {
  readonly counter: number;
  readonly after: number;
  readonly force: boolean;
}

/**
 * Requests (src/worker channel: each is posted as `{ id, op, ...request }`
 * and answered once). `fds` in a result: every socket the flow holds now,
 * closed by the application thread if the worker dies.
 */
export interface BatchedRequests {
  add: {
    request: {
      readonly flow: string;
      readonly plan: FlowPlan;
      readonly counters: Float64Array;
      readonly destinations: readonly DestinationBinding[];
      readonly options?: FlowOptions;
    };
    result: { readonly listen: Endpoint; readonly fds: readonly number[] };
  };
  update: {
    request: { readonly flow: string; readonly plan: FlowPlan; readonly destinations: readonly DestinationBinding[]; readonly join?: JoinRequest };
    /** With `join`: whether the plan was applied, and the counter destination's packetsOut at that instant. */
    result: { readonly fds: readonly number[]; readonly applied?: boolean; readonly count?: number };
  };
  remove: { request: { readonly flow: string }; result: undefined };
  /** Another worker of the flow suspended (until > 0) or resumed (0) destination `to`: mirror it, without a notification. */
  suspend: { request: { readonly flow: string; readonly to: string; readonly until: number }; result: undefined };
  /** Flush, close every flow, answer, end the loop. */
  close: { request: object; result: undefined };
}

/** Notifications. (A failure inside the loop that no request waits for is a non-fatal fault whose scope is the flow's name.) */
export interface BatchedNotifications {
  /** A destination `to` of `flow` was suspended until `until` (ms since the epoch), or resumed (until 0). */
  suspension: { readonly flow: string; readonly to: string; readonly until: number };
}

/** Engine-level detail for `sluice doctor`, the bench and debugging. */
export interface BatchedFlowDetail {
  readonly recvCalls: number;
  readonly sendCalls: number;
  readonly gsoMessages: number;
  readonly gsoSegments: number;
  readonly groBuffers: number;
  /** Destinations whose GSO was switched off after the kernel refused it. */
  readonly gsoOff: readonly string[];
  /** ICMP errors read that named no current destination (e.g. a subscriber removed since). */
  readonly icmpUnmatched: number;
  /** Worker threads the flow runs on (present when more than one: workers-plane.ts). */
  readonly workers?: number;
}
