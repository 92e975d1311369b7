/**
 * Messages between the main thread and the send worker (send-worker.ts),
 * over a src/worker channel: each job is a request (`{ id, op, ...job }`)
 * answered with its outcome. An aggregate crosses once: every payload
 * copied into one transferred buffer, with per-message offsets,
 * destinations and due times.
 */
import type { Endpoint } from '../wire/endpoint.js';

/** What every job carries: where to send from, and the GSO limit. */
interface JobBase {
  readonly from: Endpoint | undefined;
  /** Most segments per UDP GSO message; 0 = no GSO. */
  readonly gsoMaxSegments: number;
}

export interface AggregateJob extends JobBase {
  /** All payloads back to back (transferred, not shared). */
  readonly blob: ArrayBuffer;
  /** Per message, in transmission order. */
  readonly offset: Float64Array;
  readonly length: Int32Array;
  readonly dueMs: Float64Array;
  /** Per message: index into the destination table (an aggregate names few destinations many times). */
  readonly dest: Int32Array;
  readonly destAddress: readonly string[];
  readonly destPort: Int32Array;
  readonly destFamily: Int8Array;
  readonly maxLatenessMs: number;
  /** Messages due together: at most this many in a row to one destination (interleave.ts). */
  readonly burst: number;
  /** Start as ms since the epoch, or undefined for "on receipt". */
  readonly startAt: number | undefined;
}

/**
 * A segmented write. The payloads are *not* copied: the worker's iovecs
 * point at the caller's buffers by address (one process, one address
 * space; V8 never moves an ArrayBuffer's backing store), and the main
 * thread keeps them alive until the outcome arrives.
 */
export interface WriteJob extends JobBase {
  readonly address: Float64Array;
  readonly length: Float64Array;
  readonly toAddress: readonly string[];
  readonly toPort: Int32Array;
  readonly toFamily: Int8Array;
  readonly packetSize: number;
  readonly burst: number;
  /** MSG_ZEROCOPY for messages large enough to gain from it ('auto'); false: always copy ('never'). */
  readonly zeroCopy: boolean;
}

/** MSG_ZEROCOPY bookkeeping of a write, over all its sockets. */
export interface WriteZeroCopy {
  /** sendmmsg messages the kernel took with MSG_ZEROCOPY (each is one zerocopy send call to the kernel). */
  readonly sends: number;
  /** Of those, how many the error queue reported complete (the kernel let go of the pages). */
  readonly completed: number;
  /** Completions the kernel flagged SO_EE_CODE_ZEROCOPY_COPIED: it copied after all (loopback, veth to a local namespace). */
  readonly copied: number;
  /** Why the write copied where it wanted zerocopy (SO_ZEROCOPY refused, zerocopy's ENOBUFS), if it did. */
  readonly fallback?: string;
  /** Completions that did not arrive in time: the kernel may still read the buffers. */
  readonly error?: string;
}

export interface WriteOutcome {
  readonly packets: number;
  /** Per entry. */
  readonly sentPackets: Float64Array;
  readonly sentBytes: Float64Array;
  readonly errors: Float64Array;
  readonly lastError: readonly string[];
  readonly sendCalls: number;
  /** sendmmsg messages that carried several packets (UDP GSO). */
  readonly gsoMessages: number;
  /** Present when the job asked for zerocopy (`zeroCopy: true`). */
  readonly zeroCopy?: WriteZeroCopy;
  readonly elapsedMs: number;
  readonly fatal?: string;
}

export interface JobOutcome {
  /** Per message in transmission order: sent-at ms after start (or when dropped). */
  readonly sentAtMs: Float64Array;
  /** Per message: 0 = sent, else 1 + an index into `reasons` ('late', or the send's errno name). */
  readonly reason: Uint16Array;
  readonly reasons: readonly string[];
  readonly sendCalls: number;
  /** sendmmsg messages that carried several messages of the aggregate (UDP GSO). */
  readonly gsoMessages: number;
  readonly elapsedMs: number;
  /** A failure of the whole job (e.g. bind refused). */
  readonly fatal?: string;
  /** The job's blob, handed back for reuse (fresh pages cost a fault and a clear each). */
  readonly blob?: ArrayBuffer;
}

/** The send worker's requests: one per job kind. */
export interface SendRequests {
  aggregate: { request: AggregateJob; result: JobOutcome };
  write: { request: WriteJob; result: WriteOutcome };
}
