/**
 * The batched engine for aggregate sends, main-thread side: the aggregate
 * crosses to the send worker once (payloads copied into one transferred
 * buffer), the worker paces and sends it with sendmmsg, and the outcomes
 * come back in one message. One worker per engine, started on the first
 * send (again after it failed), ended by close().
 */
import { formatEndpoint } from '../wire/endpoint.js';
import type { SendableAggregate, SegmentSpec, TierName } from '../policy/schema.js';
import { planSchedule } from '../policy/schedule.js';
import type { AggregateJob, SendRequests, WriteJob } from './send-protocol.js';
import { DestinationTable } from './destination-table.js';
import { aggregateResult, type AggregateResult, type SendLabel, type WriteDestination, type WriteResult } from './results.js';
import type { SendEngine } from './send-engine.js';
import { addressOf } from '../sys/memory.js';
import { probeBatchedIo } from '../sys/probe.js';
import { EngineError } from '../errors.js';
import { WorkerChannel } from '../worker/channel.js';
import { workerEntry } from '../worker/spawn.js';

/** How the engine is named in EngineFailedError and ClosedError. */
const ENGINE = "the batched send engine (worker thread 'sluice-sender')";

/** Blobs kept for reuse, and the largest kept (a sender that once sent a huge aggregate should not hold it forever). */
const SPARE_BLOBS = 2;
const SPARE_BLOB_MAX_BYTES = 16 << 20;

export class BatchedSender implements SendEngine {
  readonly name = 'batched';
  readonly #label: SendLabel;
  /** The worker's channel, once a send started it; cleared when it fails (the next send starts another) or closes. */
  #channel: Promise<WorkerChannel<SendRequests>> | undefined;
  /** Most segments per UDP GSO send (0: no GSO), from the batched I/O probe (cached, so cheap after the first). */
  readonly #gsoMaxSegments = probeBatchedIo().gsoMaxSegments;

  /** Blobs the worker handed back, reused by later aggregates. */
  readonly #spareBlobs: ArrayBuffer[] = [];

  /** `tier`: the tier this engine sends for, named in every result. */
  constructor(tier: TierName) {
    this.#label = { engine: this.name, tier };
  }

  /** `bytes` of payload room: a spare blob large enough, or a new one. */
  #blob(bytes: number): Uint8Array {
    const i = this.#spareBlobs.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) return new Uint8Array(Math.max(bytes, 1));
    const [b] = this.#spareBlobs.splice(i, 1);
    return new Uint8Array(b!, 0, bytes);
  }

  #start(): Promise<WorkerChannel<SendRequests>> {
    if (this.#channel) return this.#channel;
    const starting = WorkerChannel.start<SendRequests>({
      spawn: { entry: workerEntry(import.meta.url, './send-worker'), name: 'sluice-sender' },
      engine: ENGINE,
      // The worker keeps the process alive only while jobs run.
      keepAlive: () => false,
    });
    this.#channel = starting;
    // Jobs in flight when it fails reject with its EngineFailedError; later sends get a new worker.
    const forget = () => {
      if (this.#channel === starting) this.#channel = undefined;
    };
    starting.then((channel) => channel.once('failed', forget), forget);
    return starting;
  }

  async sendAggregate(spec: SendableAggregate): Promise<AggregateResult> {
    const plan = planSchedule(spec.schedule, spec.messages.length);
    const n = plan.order.length;
    let total = 0;
    for (const m of spec.messages) total += m.data.byteLength;
    const blob = this.#blob(total);
    const offset = new Float64Array(n);
    const length = new Int32Array(n);
    const dest = new Int32Array(n);
    const table = new DestinationTable(spec.remap);
    // One pass in transmission order: payloads copied back to back, so the
    // worker reads a group of messages due together from one region.
    for (let k = 0, at = 0; k < n; k++) {
      const i = plan.order[k]!;
      const m = spec.messages[i]!;
      // Buffer's copy is a fast native call; Uint8Array.prototype.set costs 4x as much per call.
      if (Buffer.isBuffer(m.data)) m.data.copy(blob, at);
      else blob.set(m.data, at);
      offset[k] = at;
      length[k] = m.data.byteLength;
      dest[k] = table.indexOf(spec.to[i]!);
      at += m.data.byteLength;
    }
    const job: AggregateJob = {
      blob: blob.buffer as ArrayBuffer,
      offset,
      length,
      dueMs: plan.atMs,
      dest,
      destAddress: table.endpoints.map((e) => e.address),
      destPort: Int32Array.from(table.endpoints, (e) => e.port),
      destFamily: Int8Array.from(table.endpoints, (e) => e.family),
      from: spec.from,
      maxLatenessMs: spec.maxLatenessMs,
      burst: spec.burst,
      startAt: spec.schedule.kind === 'range' ? spec.schedule.startAt : undefined,
      gsoMaxSegments: this.#gsoMaxSegments,
    };
    // The blob moves to the worker; the plan's due times are copied (small, and kept here for the result).
    const outcome = await (await this.#start()).request('aggregate', job, [job.blob]);
    if (outcome.blob && this.#spareBlobs.length < SPARE_BLOBS && outcome.blob.byteLength <= SPARE_BLOB_MAX_BYTES) this.#spareBlobs.push(outcome.blob);
    if (outcome.fatal) throw new EngineError(ENGINE, `batched sender: ${outcome.fatal}`);
    const rec = { plan, sentAtMs: outcome.sentAtMs, reason: outcome.reason, reasons: outcome.reasons, dest, length, destNames: table.names() };
    return aggregateResult(this.#label, spec, rec, outcome.elapsedMs, { sendCalls: outcome.sendCalls, gsoMessages: outcome.gsoMessages });
  }

  /**
   * A segmented write on the worker: iovecs point into the caller's
   * buffers (addresses, no copy; `spec` keeps them alive until the worker
   * is done), runs of several packets for one destination go as one UDP
   * GSO message, and large messages with MSG_ZEROCOPY (`zeroCopy:
   * 'auto'`): the worker answers only once the kernel has released every
   * page it pinned, so the buffers are free when this resolves.
   */
  async write(spec: SegmentSpec): Promise<WriteResult> {
    const job: WriteJob = {
      address: Float64Array.from(spec.entries, (e) => addressOf(e.data)),
      length: Float64Array.from(spec.entries, (e) => e.data.byteLength),
      toAddress: spec.entries.map((e) => e.to.address),
      toPort: Int32Array.from(spec.entries, (e) => e.to.port),
      toFamily: Int8Array.from(spec.entries, (e) => e.to.family),
      from: spec.from,
      packetSize: spec.packetSize,
      burst: spec.burst,
      gsoMaxSegments: spec.gso === 'never' ? 0 : this.#gsoMaxSegments,
      zeroCopy: spec.zeroCopy === 'auto',
    };
    const o = await (await this.#start()).request('write', job);
    if (o.fatal) throw new EngineError(ENGINE, `batched sender: ${o.fatal}`);
    const destinations: WriteDestination[] = spec.entries.map((e, i) => ({
      to: formatEndpoint(e.to),
      packets: o.sentPackets[i]!,
      bytes: o.sentBytes[i]!,
      errors: o.errors[i]!,
      ...(o.lastError[i] ? { lastError: o.lastError[i] } : {}),
    }));
    const sent = destinations.reduce((k, d) => k + d.packets, 0);
    return {
      ...this.#label,
      packets: o.packets,
      sent,
      bytes: destinations.reduce((k, d) => k + d.bytes, 0),
      errors: destinations.reduce((k, d) => k + d.errors, 0),
      destinations,
      elapsedMs: o.elapsedMs,
      sendCalls: o.sendCalls,
      gsoMessages: o.gsoMessages,
      ...(o.zeroCopy ? { zeroCopy: o.zeroCopy } : {}),
    };
  }

  /** Ends the worker; sends still in flight reject with ClosedError. */
  async close(): Promise<void> {
    const starting = this.#channel;
    this.#channel = undefined;
    const channel = await starting?.catch(() => undefined);
    await channel?.close({ terminateAfterMs: 0 });
  }
}
