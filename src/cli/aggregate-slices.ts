/**
 * `sluice send` of a long aggregate, in slices: an engine answers an
 * aggregate once, after its last message, so a schedule of minutes would
 * show nothing until the end and a stop would lose every outcome. The
 * schedule is cut into slices of about SLICE_MS of due times; each slice
 * goes to the engine as a `range` aggregate with an absolute `startAt`,
 * LEAD_MS before it is due, at most two at a time. The engine paces each
 * slice against the shared start, so messages leave at the times of the
 * whole schedule; messages due at the same instant stay in one slice, in
 * the plan's order, so the engine's interleave puts them on the wire as
 * the whole aggregate would.
 *
 * A stop signal hands over no further slice; those in flight finish (a
 * second or so). The outcomes of the slices sent are merged into one
 * AggregateResult, as if the aggregate had been those messages.
 *
 * One imprecision: an engine turns `startAt` into its clock through
 * Date.now(), whole milliseconds, so a slice may start up to 1 ms after
 * its time (never before). Lateness is measured by the engine against the
 * slice's start, as it is against the aggregate's start unsliced.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AggregateInput, Sender } from '../control/sender.js';
import type { SendableAggregate } from '../policy/schema.js';
import { planSchedule, type SchedulePlan } from '../policy/schedule.js';
import { aggregateResult, ReasonCodes, type AggregateResult } from '../sender/results.js';
import type { StopListener } from './signals.js';

/** Due times a slice spans, ms. Schedules no longer than this go whole, as one aggregate. */
export const SLICE_MS = 1000;
/** A slice is handed over this long before it is due. */
const LEAD_MS = 300;
/**
 * Slices handed to the engine and not yet answered, at most: the next one
 * waits in the batched engine's worker (one job at a time) while the
 * current one runs. The portable engine runs them side by side, each with
 * its own socket: with a fixed `from` port the second could not bind, so
 * there one at a time (the next then starts a few ms late, as it is
 * handed over when the previous one ends).
 */
function inFlightLimit(engine: Sender['engine'], spec: SendableAggregate): number {
  return engine === 'portable' && spec.from !== undefined && spec.from.port !== 0 ? 1 : 2;
}

export interface SliceProgress {
  /** Messages whose outcome is known (sent or dropped). */
  readonly done: number;
  /** Payload bytes of the messages sent. */
  readonly bytes: number;
  /** Until the last message is due, ms (0 once past). */
  readonly etaMs: number;
}

export interface SlicedSendResult {
  /** The outcomes of the messages handed over (all of them, unless stopped). */
  readonly result: AggregateResult;
  /** Messages never handed to the engine (a stop came first). */
  readonly notSent: number;
}

/** Whether `spec` is worth slicing: due times over more than SLICE_MS, or a start further ahead than that. */
export function wantsSlicing(spec: SendableAggregate, plan: SchedulePlan = planSchedule(spec.schedule, spec.messages.length)): boolean {
  const n = plan.atMs.length;
  const span = n ? plan.atMs[n - 1]! : 0;
  const ahead = spec.schedule.kind === 'range' && spec.schedule.startAt !== undefined ? spec.schedule.startAt - Date.now() : 0;
  return span > SLICE_MS || ahead > SLICE_MS;
}

/** Slot ranges [from, to) of the plan, each spanning at most SLICE_MS of due times; equal times never split. */
export function planSlices(plan: SchedulePlan): { from: number; to: number }[] {
  const out: { from: number; to: number }[] = [];
  const n = plan.atMs.length;
  for (let from = 0; from < n;) {
    let to = from + 1;
    while (to < n && plan.atMs[to]! - plan.atMs[from]! < SLICE_MS) to++;
    out.push({ from, to });
    from = to;
  }
  return out;
}

/**
 * Time the first slice needs before it is due: validation and the copy of
 * its payloads take time in proportion (about 2 µs a message, 1 ms a MB
 * here); a late start would make its first messages late.
 */
function startMarginMs(messages: number, bytes: number): number {
  return 20 + messages * 0.002 + bytes / 1e6;
}

/** Sends an aggregate in slices; see the file's comment. */
export class SlicedSend {
  readonly #sender: Sender;
  readonly #input: AggregateInput;
  readonly #spec: SendableAggregate;
  readonly #plan: SchedulePlan;
  // Per slot of the whole plan, as an engine records it (results.ts AggregateRecord).
  readonly #sentAtMs: Float64Array;
  readonly #reason: Uint16Array;
  readonly #length: Int32Array;
  readonly #dest: Int32Array;
  readonly #reasons = new ReasonCodes();
  readonly #destNames: string[] = [];
  readonly #destIndex = new Map<string, number>();
  #done = 0;
  #bytes = 0;
  #elapsedMs = 0;
  #sendCalls: number | undefined;
  #gsoMessages: number | undefined;
  #label: { engine: AggregateResult['engine']; tier: AggregateResult['tier'] };
  /** The schedule's start, ms since the epoch (set by run()). */
  #base = Date.now();

  /** `input`, already validated as `spec`. */
  constructor(sender: Sender, input: AggregateInput, spec: SendableAggregate) {
    this.#sender = sender;
    this.#input = input;
    this.#spec = spec;
    this.#plan = planSchedule(spec.schedule, spec.messages.length);
    const n = this.#plan.order.length;
    this.#sentAtMs = new Float64Array(n);
    this.#reason = new Uint16Array(n);
    this.#length = new Int32Array(n);
    this.#dest = new Int32Array(n);
    this.#label = { engine: sender.engine, tier: sender.tier };
  }

  /** Counters so far, for a progress line. */
  progress(): SliceProgress {
    const n = this.#plan.atMs.length;
    return { done: this.#done, bytes: this.#bytes, etaMs: Math.max(0, this.#base + (n ? this.#plan.atMs[n - 1]! : 0) - Date.now()) };
  }

  /** Sends until done or `stop`; resolves with the outcomes of what was handed over. */
  async run(stop: StopListener): Promise<SlicedSendResult> {
    const plan = this.#plan;
    const spec = this.#spec;
    const n = plan.order.length;
    const slices = planSlices(plan);
    const { messages: _m, schedule: _s, ...head } = this.#input;
    // The batched engine's worker starts on its first job: start it now (an empty write sends nothing), not inside the schedule.
    if (this.#sender.engine === 'batched') await this.#sender.write([{ to: this.#input.messages[0]!.to, data: new Uint8Array(0) }]).catch(() => undefined);
    const first = slices[0];
    let firstBytes = 0;
    if (first) for (let k = first.from; k < first.to; k++) firstBytes += spec.messages[plan.order[k]!]!.data.byteLength;
    this.#base =
      spec.schedule.kind === 'range' && spec.schedule.startAt !== undefined
        ? spec.schedule.startAt
        : Date.now() + startMarginMs(first ? first.to - first.from : 0, firstBytes);
    const waits = new AbortController();
    void stop.signal.then(() => waits.abort());
    const inFlight: Promise<void>[] = [];
    const limit = inFlightLimit(this.#sender.engine, spec);
    let failure: { error: unknown } | undefined;
    let handedOver = 0;
    for (const slice of slices) {
      const startAt = this.#base + plan.atMs[slice.from]!;
      const wait = startAt - LEAD_MS - Date.now();
      if (wait > 0) await sleep(wait, undefined, { signal: waits.signal }).catch(() => undefined);
      while (inFlight.length >= limit) await inFlight.shift();
      if (stop.received !== undefined || failure) break;
      const slots = Array.from({ length: slice.to - slice.from }, (_, j) => plan.order[slice.from + j]!);
      const part: AggregateInput = {
        ...head,
        messages: slots.map((i) => this.#input.messages[i]!),
        schedule: {
          kind: 'range',
          startAt,
          durationMs: plan.atMs[slice.to - 1]! - plan.atMs[slice.from]!,
          offsetsMs: slots.map((_, j) => plan.atMs[slice.from + j]! - plan.atMs[slice.from]!),
        },
      };
      handedOver = slice.to;
      inFlight.push(
        this.#sender.sendAggregate(part).then(
          (r) => this.#record(slice, r),
          (error: unknown) => void (failure ??= { error }),
        ),
      );
    }
    await Promise.all(inFlight);
    waits.abort();
    if (failure) throw failure.error;
    // The slots handed over are a prefix of the plan: the result covers them.
    const rec = {
      plan: { order: plan.order.subarray(0, handedOver), atMs: plan.atMs.subarray(0, handedOver) },
      sentAtMs: this.#sentAtMs.subarray(0, handedOver),
      reason: this.#reason.subarray(0, handedOver),
      reasons: this.#reasons.list,
      length: this.#length.subarray(0, handedOver),
      dest: this.#dest.subarray(0, handedOver),
      destNames: this.#destNames,
    };
    const extra = {
      ...(this.#sendCalls !== undefined ? { sendCalls: this.#sendCalls } : {}),
      ...(this.#gsoMessages !== undefined ? { gsoMessages: this.#gsoMessages } : {}),
    };
    return { result: aggregateResult(this.#label, spec, rec, this.#elapsedMs, extra), notSent: n - handedOver };
  }

  /** A slice's outcomes into the whole plan's record. */
  #record(slice: { from: number; to: number }, r: AggregateResult): void {
    this.#label = { engine: r.engine, tier: r.tier };
    const offset = this.#plan.atMs[slice.from]!;
    for (const m of r.messages) {
      // The slice's messages are its slots in order: message j is slot from + j.
      const k = slice.from + m.index;
      this.#sentAtMs[k] = offset + m.sentAtMs;
      this.#reason[k] = m.status === 'sent' ? 0 : this.#reasons.code(m.reason ?? 'dropped');
      this.#length[k] = this.#spec.messages[this.#plan.order[k]!]!.data.byteLength;
      let d = this.#destIndex.get(m.to);
      if (d === undefined) this.#destIndex.set(m.to, (d = this.#destNames.push(m.to) - 1));
      this.#dest[k] = d;
      if (m.status === 'sent') this.#bytes += this.#length[k]!;
    }
    this.#done += slice.to - slice.from;
    this.#elapsedMs = Math.max(this.#elapsedMs, offset + r.elapsedMs);
    if (r.sendCalls !== undefined) this.#sendCalls = (this.#sendCalls ?? 0) + r.sendCalls;
    if (r.gsoMessages !== undefined) this.#gsoMessages = (this.#gsoMessages ?? 0) + r.gsoMessages;
  }
}
