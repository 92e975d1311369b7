/**
 * Messages between the main thread and the send worker (send-worker.ts).
 * An aggregate crosses once: every payload copied into one transferred
 * buffer, with per-message offsets, destinations and due times.
 */
export interface AggregateJob {
  readonly id: number;
  /** All payloads back to back (transferred, not shared). */
  readonly blob: ArrayBuffer;
  /** Per message, in transmission order. */
  readonly index: Int32Array;
  readonly offset: Float64Array;
  readonly length: Int32Array;
  readonly dueMs: Float64Array;
  readonly toAddress: readonly string[];
  readonly toPort: Int32Array;
  readonly toFamily: Int8Array;
  readonly from: { address: string; port: number; family: 4 | 6 } | undefined;
  readonly maxLatenessMs: number;
  /** Start as ms since the epoch, or undefined for "on receipt". */
  readonly startAt: number | undefined;
}

export interface JobOutcome {
  readonly id: number;
  /** Per message in transmission order: sent-at ms after start, and error ('' = sent). */
  readonly sentAtMs: Float64Array;
  readonly error: readonly string[];
  readonly sendCalls: number;
  readonly elapsedMs: number;
  /** A failure of the whole job (e.g. bind refused). */
  readonly fatal?: string;
}
