/**
 * The batched engine for aggregate sends, main-thread side: the aggregate
 * crosses to the send worker once (payloads copied into one transferred
 * buffer), the worker paces and sends it with sendmmsg, and the outcomes
 * come back in one message. One worker per Sluice instance, started on the
 * first send, ended by close().
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { formatEndpoint } from '../wire/endpoint.js';
import type { SendableAggregate } from '../policy/schema.js';
import { planSchedule } from '../policy/schedule.js';
import type { AggregateJob, Job, JobOutcome, WriteJob, WriteOutcome } from './send-protocol.js';
import { DestinationTable } from './destination-table.js';
import { aggregateResult, type AggregateResult, type WriteDestination, type WriteResult } from './results.js';
import type { SegmentSpec } from '../policy/schema.js';
import { addressOf } from '../sys/memory.js';
import { EngineFailedError } from '../errors.js';

function spawnSendWorker(): Worker {
  const options = { name: 'sluice-sender' };
  if (!fileURLToPath(import.meta.url).endsWith('.ts')) return new Worker(new URL('./send-worker.js', import.meta.url), options);
  // Run from source (tsx): Node 20 does not pass tsx's loader to workers.
  const entry = JSON.stringify(new URL('./send-worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { ...options, eval: true });
}

/** Blobs kept for reuse, and the largest kept (a sender that once sent a huge aggregate should not hold it forever). */
const SPARE_BLOBS = 2;
const SPARE_BLOB_MAX_BYTES = 16 << 20;

export class BatchedSender {
  #worker: Worker | undefined;
  #nextId = 1;
  /** Jobs posted and not answered yet; each answer carries its job's id. */
  readonly #pending = new Map<number, { resolve: (o: JobOutcome | WriteOutcome) => void; reject: (e: Error) => void }>();
  /** Most segments per UDP GSO send (0: no GSO), from the batched tier's probe. */
  readonly #gsoMaxSegments: number;

  /** Blobs the worker handed back, reused by later aggregates. */
  readonly #spareBlobs: ArrayBuffer[] = [];

  constructor(gsoMaxSegments: number) {
    this.#gsoMaxSegments = gsoMaxSegments;
  }

  /** `bytes` of payload room: a spare blob large enough, or a new one. */
  #blob(bytes: number): Uint8Array {
    const i = this.#spareBlobs.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) return new Uint8Array(Math.max(bytes, 1));
    const [b] = this.#spareBlobs.splice(i, 1);
    return new Uint8Array(b!, 0, bytes);
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const w = spawnSendWorker();
    w.on('message', (o: JobOutcome | WriteOutcome) => {
      const p = this.#pending.get(o.id);
      this.#pending.delete(o.id);
      p?.resolve(o);
    });
    // Only the current worker's death fails the jobs in flight: a worker
    // replaced after an 'error' still emits 'exit' later.
    const fail = (how: string, cause?: unknown) => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      const err = new EngineFailedError("the batched send engine (worker thread 'sluice-sender')", how, cause === undefined ? undefined : { cause });
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    w.on('error', (e: unknown) => fail(e instanceof Error ? `uncaught ${e.name}: ${e.message}` : `uncaught ${String(e)}`, e));
    w.on('exit', (code) => fail(`its thread exited (code ${code})`));
    w.unref();
    this.#worker = w;
    return w;
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
      kind: 'aggregate',
      id: this.#nextId++,
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
    const outcome = await this.#submit<JobOutcome>(job, [job.blob]);
    if (outcome.blob && this.#spareBlobs.length < SPARE_BLOBS && outcome.blob.byteLength <= SPARE_BLOB_MAX_BYTES) this.#spareBlobs.push(outcome.blob);
    if (outcome.fatal) throw new Error(`batched sender: ${outcome.fatal}`);
    const rec = { plan, sentAtMs: outcome.sentAtMs, reason: outcome.reason, reasons: outcome.reasons, dest, length, destNames: table.names() };
    return aggregateResult('batched', spec, rec, outcome.elapsedMs, { sendCalls: outcome.sendCalls, gsoMessages: outcome.gsoMessages });
  }

  /** Posts a job; resolves with its outcome. The worker keeps the process alive only while jobs run. */
  #submit<O extends JobOutcome | WriteOutcome>(job: Job, transfer: ArrayBuffer[]): Promise<O> {
    const w = this.#ensureWorker();
    w.ref();
    return new Promise<O>((resolve, reject) => {
      // The worker answers an aggregate job with a JobOutcome, a write job with a WriteOutcome.
      this.#pending.set(job.id, { resolve: resolve as (o: JobOutcome | WriteOutcome) => void, reject });
      w.postMessage(job, transfer);
    }).finally(() => {
      if (this.#pending.size === 0) this.#worker?.unref();
    });
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
      kind: 'write',
      id: this.#nextId++,
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
    const o = await this.#submit<WriteOutcome>(job, []);
    if (o.fatal) throw new Error(`batched sender: ${o.fatal}`);
    const destinations: WriteDestination[] = spec.entries.map((e, i) => ({
      to: formatEndpoint(e.to),
      packets: o.sentPackets[i]!,
      bytes: o.sentBytes[i]!,
      errors: o.errors[i]!,
      ...(o.lastError[i] ? { lastError: o.lastError[i] } : {}),
    }));
    const sent = destinations.reduce((k, d) => k + d.packets, 0);
    return {
      engine: 'batched',
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

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}
