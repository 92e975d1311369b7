/**
 * Messages between the application thread (BatchedPlane) and the worker
 * (BatchedEngine). Requests carry an id; the worker answers each once.
 * Everything here is structured-clone data; counter arrays are shared.
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
}

export type Request =
  | {
      readonly op: 'add';
      readonly id: number;
      readonly flow: string;
      readonly plan: FlowPlan;
      readonly counters: Float64Array;
      readonly destinations: readonly DestinationBinding[];
      readonly options?: FlowOptions;
    }
  | { readonly op: 'update'; readonly id: number; readonly flow: string; readonly plan: FlowPlan; readonly destinations: readonly DestinationBinding[] }
  | { readonly op: 'remove'; readonly id: number; readonly flow: string }
  | { readonly op: 'close'; readonly id: number };

export interface ErrorInfo {
  readonly name: string;
  readonly message: string;
  /** For SyscallError: the call and errno, so the application rebuilds the same error. */
  readonly op?: string;
  readonly errno?: string;
  readonly detail?: string;
}

export type Reply =
  | { readonly kind: 'ready' }
  /** `fds`: after add and update, every socket the flow holds (closed by the application if the worker dies). */
  | { readonly kind: 'reply'; readonly id: number; readonly listen?: Endpoint; readonly fds?: readonly number[]; readonly error?: ErrorInfo }
  /** A destination of `flow` was suspended until `until` (ms since the epoch), or resumed (until 0). */
  | { readonly kind: 'suspension'; readonly flow: string; readonly to: string; readonly until: number }
  /** Something failed inside the loop that no request is waiting for. */
  | { readonly kind: 'fault'; readonly flow?: string; readonly error: ErrorInfo };
