/**
 * What a one-shot send reports: per-message outcomes of an aggregate, and
 * per-destination counters of a segmented write. Engines fill these; the
 * shapes are the same whichever engine ran.
 */
import type { SendableAggregate, SendEngineName, TierName } from '../policy/schema.js';
import type { SchedulePlan } from '../policy/schedule.js';

/** Which engine sent, for which tier: every result carries both (the kernel tier sends on the batched engine). */
export interface SendLabel {
  readonly engine: SendEngineName;
  readonly tier: TierName;
}

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
  /** Lateness of this flow's sent messages, ms. */
  lateness: Percentiles;
}

export interface AggregateResult extends SendLabel {
  /**
   * In transmission order. Built on first read: the counters below are
   * computed without an object per message, and a caller that only wants
   * them never pays for 65,536 outcome objects.
   */
  readonly messages: readonly MessageOutcome[];
  readonly sent: number;
  /** Sent, but more than LATE_TOLERANCE_MS after its due time. */
  readonly late: number;
  readonly dropped: number;
  /** Lateness of the sent messages, ms. */
  readonly lateness: Percentiles;
  /** Per `stream` id given on the messages. */
  readonly streams: Readonly<Record<string, StreamCounters>>;
  /** Per destination (after remapping), keyed `udp://host:port`. */
  readonly destinations: Readonly<Record<string, StreamCounters>>;
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

export interface WriteResult extends SendLabel {
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
  /**
   * Batched engine with `zeroCopy: 'auto'`: `sends` = sendmmsg messages
   * sent with MSG_ZEROCOPY (those of ≥ 10 KiB), `completed` = of them, how
   * many the kernel reported done before the write resolved (all, unless
   * `error` says otherwise), `copied` = completions the kernel flagged as
   * copied anyway (always so on loopback). `fallback`: why zerocopy was not
   * used after all; `error`: completions that never came.
   */
  readonly zeroCopy?: { readonly sends: number; readonly completed: number; readonly copied: number; readonly fallback?: string; readonly error?: string };
}

/** Nearest-rank percentiles of `values` (ms); zeros when empty. */
export function percentiles(values: readonly number[] | Float64Array): Percentiles {
  return percentilesInPlace(Float64Array.from(values));
}

/**
 * The same, reordering `a` (a scratch array): two selections and a scan,
 * O(n), instead of a sort; an aggregate computes this per destination and
 * per stream.
 */
function percentilesInPlace(a: Float64Array): Percentiles {
  const n = a.length;
  if (n === 0) return { p50: 0, p99: 0, max: 0 };
  const rank = (q: number) => Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  const r50 = rank(0.5);
  const r99 = rank(0.99);
  select(a, 0, n - 1, r50);
  // Everything right of r50 is now >= a[r50]: select p99 among those.
  if (r99 > r50) select(a, r50 + 1, n - 1, r99);
  let max = a[r99]!;
  for (let i = r99 + 1; i < n; i++) if (a[i]! > max) max = a[i]!;
  return { p50: a[r50]!, p99: a[r99]!, max };
}

/** Hoare's quickselect: afterwards a[k] is the k-th smallest of a[lo..hi], smaller ones left, larger right. */
function select(a: Float64Array, lo: number, hi: number, k: number): void {
  while (hi > lo) {
    // Median of three as the pivot: sorted or constant input stays linear.
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < a[lo]!) swap(a, mid, lo);
    if (a[hi]! < a[lo]!) swap(a, hi, lo);
    if (a[hi]! < a[mid]!) swap(a, hi, mid);
    const pivot = a[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

/**
 * What an engine records while it sends an aggregate, per transmission
 * slot (the plan's order): typed arrays, so that recording costs no
 * object per message.
 */
export interface AggregateRecord {
  readonly plan: SchedulePlan;
  /** When slot k was handed to the kernel (or dropped), ms after the start. */
  readonly sentAtMs: Float64Array;
  /** 0 = sent; otherwise 1 + an index into `reasons`. */
  readonly reason: Uint16Array;
  readonly reasons: readonly string[];
  /** Slot k's payload bytes. */
  readonly length: Int32Array;
  /** Slot k's destination: an index into `destNames` (`udp://host:port`, after remapping). */
  readonly dest: Int32Array;
  readonly destNames: readonly string[];
}

/**
 * Counters of a group of slots (a stream, a destination): slots are
 * bucketed by group id, and each group's percentiles are selected in
 * place in one shared array.
 */
function groupCounters(group: Int32Array, groups: number, rec: AggregateRecord): StreamCounters[] {
  const n = group.length;
  const start = new Int32Array(groups + 1);
  const out = Array.from({ length: groups }, () => ({ sent: 0, late: 0, dropped: 0, bytes: 0, lateness: { p50: 0, p99: 0, max: 0 } }));
  for (let k = 0; k < n; k++) {
    const g = group[k]!;
    if (g < 0) continue;
    const c = out[g]!;
    if (rec.reason[k] !== 0) {
      c.dropped++;
      continue;
    }
    c.sent++;
    c.bytes += rec.length[k]!;
    const late = rec.sentAtMs[k]! - rec.plan.atMs[k]!;
    if (late > LATE_TOLERANCE_MS) c.late++;
    start[g + 1]!++;
  }
  for (let g = 0; g < groups; g++) start[g + 1]! += start[g]!;
  const fill = start.slice(0, groups);
  const lateness = new Float64Array(start[groups]!);
  for (let k = 0; k < n; k++) {
    const g = group[k]!;
    if (g < 0 || rec.reason[k] !== 0) continue;
    lateness[fill[g]!++] = Math.max(0, rec.sentAtMs[k]! - rec.plan.atMs[k]!);
  }
  for (let g = 0; g < groups; g++) out[g]!.lateness = percentilesInPlace(lateness.subarray(start[g]!, start[g + 1]!));
  return out;
}

/** Per-message outcomes from the record, in transmission order. */
function outcomesOf(spec: SendableAggregate, rec: AggregateRecord): MessageOutcome[] {
  const { plan, sentAtMs, reason, reasons, dest, destNames } = rec;
  const out = new Array<MessageOutcome>(plan.order.length);
  for (let k = 0; k < out.length; k++) {
    const index = plan.order[k]!;
    const m = spec.messages[index]!;
    const o: { -readonly [K in keyof MessageOutcome]: MessageOutcome[K] } = {
      index,
      to: destNames[dest[k]!]!,
      status: reason[k] ? 'dropped' : 'sent',
      dueMs: plan.atMs[k]!,
      sentAtMs: sentAtMs[k]!,
      lateMs: Math.max(0, sentAtMs[k]! - plan.atMs[k]!),
    };
    if (m.stream) o.stream = m.stream;
    if (reason[k]) o.reason = reasons[reason[k]! - 1]!;
    out[k] = o;
  }
  return out;
}

/**
 * An aggregate's result from what its engine recorded. `messages` is an
 * own, enumerable accessor built on first read: spreading the result,
 * JSON.stringify and deepEqual see it like a plain property.
 */
export function aggregateResult(
  label: SendLabel,
  spec: SendableAggregate,
  rec: AggregateRecord,
  elapsedMs: number,
  extra: { sendCalls?: number; gsoMessages?: number } = {},
): AggregateResult {
  const n = rec.plan.order.length;
  // The whole aggregate is one group; destinations and streams are the others.
  const all = groupCounters(new Int32Array(n), 1, rec)[0]!;
  const dests = groupCounters(rec.dest, rec.destNames.length, rec);
  const streamIds = new Map<string, number>();
  const streamOf = new Int32Array(n).fill(-1);
  for (let k = 0; k < n; k++) {
    const id = spec.messages[rec.plan.order[k]!]!.stream;
    if (id === undefined) continue;
    let g = streamIds.get(id);
    if (g === undefined) streamIds.set(id, (g = streamIds.size));
    streamOf[k] = g;
  }
  const streams = streamIds.size ? groupCounters(streamOf, streamIds.size, rec) : [];
  const result = {
    engine: label.engine,
    tier: label.tier,
    sent: all.sent,
    late: all.late,
    dropped: all.dropped,
    lateness: all.lateness,
    streams: Object.fromEntries([...streamIds].map(([id, g]) => [id, streams[g]!])),
    destinations: Object.fromEntries(rec.destNames.map((name, i) => [name, dests[i]!] as const).filter(([, c]) => c.sent + c.dropped > 0)),
    elapsedMs,
    ...(extra.sendCalls !== undefined ? { sendCalls: extra.sendCalls } : {}),
    ...(extra.gsoMessages !== undefined ? { gsoMessages: extra.gsoMessages } : {}),
  };
  let messages: MessageOutcome[] | undefined;
  Object.defineProperty(result, 'messages', { enumerable: true, get: () => (messages ??= outcomesOf(spec, rec)) });
  return result as typeof result & Pick<AggregateResult, 'messages'>;
}

/** Interns reason strings as the codes of AggregateRecord.reason. */
export class ReasonCodes {
  readonly list: string[] = [];
  readonly #code = new Map<string, number>();
  code(reason: string): number {
    let c = this.#code.get(reason);
    if (c === undefined) {
      this.list.push(reason);
      this.#code.set(reason, (c = this.list.length));
    }
    return c;
  }
}
