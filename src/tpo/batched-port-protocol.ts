/**
 * Messages between the batched datagram port (batched-port.ts) and its
 * receive thread (batched-port-worker.ts). Structured-clone data; the stop
 * flag is shared memory so the thread can check it without a message.
 */

export interface PortWorkerData {
  /** The port's socket (owned and closed by the application thread). */
  readonly fd: number;
  /** eventfd the application signals to wake the thread (to stop it). */
  readonly wakeFd: number;
  /** Int32Array(1) on a SharedArrayBuffer: 1 = stop. */
  readonly stop: Int32Array;
  /** Messages per recvmmsg (and 64 KiB receive slots). */
  readonly batch: number;
  /** UDP_GRO is on: entries may be super-buffers to split. */
  readonly gro: boolean;
}

export interface SourceEntry {
  readonly id: number;
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

export interface PortBatch {
  readonly kind: 'batch';
  /** The datagrams back to back. */
  readonly data: ArrayBuffer;
  /** Per datagram: its length and its source id. */
  readonly pairs: Int32Array;
  readonly groBuffers: number;
  /** Datagrams longer than a receive slot (cannot happen with 64 KiB slots; counted, not delivered). */
  readonly truncated: number;
  /** Sources first seen in this batch. */
  sources?: SourceEntry[];
  /** The thread restarted its source table: forget earlier ids before reading `sources`. */
  reset?: boolean;
}

export type PortWorkerReply =
  | { readonly kind: 'ready' }
  | PortBatch
  | { readonly kind: 'fault'; readonly error: { name: string; message: string; op?: string; errno?: string } };
