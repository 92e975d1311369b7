/**
 * Sender: one-shot sends (aggregates, segmented writes, stream schedulers)
 * without a data plane. It runs on the send engine of one tier, chosen
 * through the tier registry, so `Sender.open({ tier: 'kernel' })` loads no
 * eBPF and says in every result that the batched engine sent for the
 * kernel tier. A Sluice holds one for its own tier; `sluice send` and
 * `sluice write` use one directly.
 */
import type { AggregatePolicy, SegmentPolicy, SendEngineName, TierChoice, TierName } from '../policy/schema.js';
import { parseAggregateForSend, parseSegment } from '../policy/validate.js';
import { createSendEngine } from '../sender/engines.js';
import type { SendEngine } from '../sender/send-engine.js';
import type { AggregateResult, WriteResult } from '../sender/results.js';
import { StreamScheduler, type StreamSchedulerOptions } from '../sender/stream-scheduler.js';
import { selectSendTier, sendEngineOf } from '../dataplane/tiers.js';
import { ClosedError } from '../errors.js';

/** An aggregate for sendAggregate (docs/POLICY.md, aggregate). */
export type AggregateInput = Omit<AggregatePolicy, 'type'>;
/** One entry of write. */
export type WriteEntryInput = SegmentPolicy['entries'][number];
/** Options of write (docs/POLICY.md, segment). */
export type WriteOptions = Omit<SegmentPolicy, 'type' | 'entries'>;

export class Sender {
  /** The tier these sends are for; results say it as `tier`. */
  readonly tier: TierName;
  /** The engine that sends them; results say it as `engine`. */
  readonly engine: SendEngineName;
  /** Started on the first send: a Sluice that never sends starts no send worker. */
  #engine: SendEngine | undefined;
  /** Schedulers made by streams() and not yet seen closed: close() closes them first. */
  readonly #schedulers = new Set<StreamScheduler>();
  #closing: Promise<void> | undefined;

  /** A sender for `tier`, whose availability the caller has established (Sluice: its plane runs on it). */
  constructor(tier: TierName) {
    this.tier = tier;
    this.engine = sendEngineOf(tier);
  }

  /**
   * A sender on `options.tier` (default `auto`: the fastest tier with a
   * send engine of its own). Rejects with NotSupportedError when an
   * explicitly requested tier is unavailable, saying why.
   */
  static async open(options: { tier?: TierChoice } = {}): Promise<Sender> {
    return new Sender(await selectSendTier(options.tier ?? 'auto'));
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  #check(): SendEngine {
    if (this.#closing) throw new ClosedError('Sender');
    this.#engine ??= createSendEngine(this.engine, this.tier);
    return this.#engine;
  }

  /**
   * Sends many messages, each to its own destination, in one call, on the
   * given schedule (sequence numbers, delays, or a time range). Resolves
   * once, after the last message, with every message's outcome. Rejects
   * with PolicyValidationError for an invalid aggregate. The batched
   * engine paces it in a send worker with absolute deadlines and sends
   * each group of messages due together with one sendmmsg per address
   * family; the portable engine sends with node:dgram, paced by Node
   * timers (~1 ms).
   */
  async sendAggregate(aggregate: AggregateInput): Promise<AggregateResult> {
    const engine = this.#check();
    return engine.sendAggregate(parseAggregateForSend(aggregate));
  }

  /**
   * Segmented multi-destination write: each entry's data is cut into
   * packets of at most `packetSize` bytes for its destination, destinations
   * interleaved `burst` packets at a time (1 = strict). Resolves once, after
   * the last packet, with per-destination counters. The caller must not
   * change the buffers before it resolves. The batched engine reads them in
   * place (no copy) and sends runs of several packets for one destination
   * (burst > 1) as one UDP GSO message, 1024 messages per sendmmsg; the
   * portable engine sends one packet per call. With `zeroCopy: 'auto'` (the
   * default) the batched engine sends messages of 10 KiB or more with
   * MSG_ZEROCOPY where the kernel allows it, and resolves only after the
   * kernel has reported every such send complete, so the buffers are free
   * again when the promise settles; `result.zeroCopy` counts the sends,
   * completions and those the kernel copied anyway (always, to a local
   * receiver). `'never'` copies every packet.
   */
  async write(entries: readonly WriteEntryInput[], options: WriteOptions = {}): Promise<WriteResult> {
    const engine = this.#check();
    return engine.write(parseSegment({ ...options, entries }));
  }

  /**
   * A stream scheduler whose writes go through write(): streams added to
   * it, each with its own destination, data and bitrate (or `pace: 'pcr'`
   * / `'rtp'`: the media's own clock, docs/API.md), are paced together,
   * everything due from all of them going out as one write per tick or
   * due time (docs/POLICY.md, "Stream scheduler"). close() closes it first
   * (its streams end as 'closed'), so closing it yourself is optional.
   */
  streams(options: StreamSchedulerOptions): StreamScheduler {
    this.#check();
    // Schedulers closed by their owner are dropped here rather than on an event of theirs (none exists).
    for (const s of this.#schedulers) if (s.closed) this.#schedulers.delete(s);
    const scheduler = new StreamScheduler((entries, opts) => this.write(entries, opts), options);
    this.#schedulers.add(scheduler);
    return scheduler;
  }

  /**
   * Closes the stream schedulers made by streams() (a write in flight
   * completes; streams end 'closed'), then the engine (the batched one's
   * sends still in flight reject with ClosedError). Idempotent: every call
   * returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const schedulers = [...this.#schedulers].map((s) => s.close());
    this.#schedulers.clear();
    await Promise.allSettled(schedulers);
    await this.#engine?.close();
  }
}
