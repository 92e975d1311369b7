/**
 * What a one-shot send reports: per-message outcomes of an aggregate, and
 * per-destination counters of a segmented write. Engines fill these; the
 * shapes are the same whichever engine ran.
 */

/** A message sent more than this after its due time counts as late (it is still sent, unless past maxLatenessMs). */
export const LATE_TOLERANCE_MS = 1;

export interface MessageOutcome {
  /** Index in the aggregate's `messages`. */
  readonly index: number;
  /** Where it went (after remapping), `udp://host:port`. */
  readonly to: string;
  readonly stream?: string;
  readonly status: 'sent' | 'dropped';
  /** Due time, ms after the aggregate's start. */
  readonly dueMs: number;
  /** When it was handed to the kernel, ms after the start. */
  readonly sentAtMs: number;
  /** sentAtMs − dueMs (never negative). */
  readonly lateMs: number;
  /** Why it was dropped: `late` (past maxLatenessMs) or the send error's errno name. */
  readonly reason?: string;
}

export interface Percentiles {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface StreamCounters {
  sent: number;
  late: number;
  dropped: number;
  bytes: number;
}

export interface AggregateResult {
  readonly engine: 'portable' | 'batched';
  /** In transmission order. */
  readonly messages: readonly MessageOutcome[];
  readonly sent: number;
  /** Sent, but more than LATE_TOLERANCE_MS after its due time. */
  readonly late: number;
  readonly dropped: number;
  /** Lateness of the sent messages, ms. */
  readonly lateness: Percentiles;
  /** Per `stream` id given on the messages. */
  readonly streams: Readonly<Record<string, StreamCounters>>;
  /** From the start to the last message handed over, ms. */
  readonly elapsedMs: number;
  /** System calls that sent the messages (batched engine: sendmmsg calls). */
  readonly sendCalls?: number;
  /** Batched engine: sendmmsg messages that carried several of them to one destination (UDP GSO). */
  readonly gsoMessages?: number;
}

export interface WriteDestination {
  readonly to: string;
  packets: number;
  bytes: number;
  errors: number;
  lastError?: string;
}

export interface WriteResult {
  readonly engine: 'portable' | 'batched';
  /** Packets the write was cut into, and how many of them were sent. */
  readonly packets: number;
  readonly sent: number;
  readonly bytes: number;
  readonly errors: number;
  readonly destinations: readonly WriteDestination[];
  readonly elapsedMs: number;
  /** System calls that sent the packets (portable: one per packet; batched: sendmmsg calls). */
  readonly sendCalls?: number;
  /** Batched engine: sendmmsg messages that carried several packets (UDP GSO). */
  readonly gsoMessages?: number;
}

/** Nearest-rank percentiles of `values` (ms); zeros when empty. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1]! };
}
