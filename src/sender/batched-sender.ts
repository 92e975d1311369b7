/**
 * The batched engine for aggregate sends, main-thread side: the aggregate
 * crosses to the send worker once (payloads copied into one transferred
 * buffer), the worker paces and sends it with sendmmsg, and the outcomes
 * come back in one message. One worker per Sluice instance, started on the
 * first send, ended by close().
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { isIPv4 } from 'node:net';
import { endpointKey, formatEndpoint, type Endpoint } from '../policy/endpoint.js';
import type { AggregateSpec } from '../policy/schema.js';
import { planSchedule } from '../policy/schedule.js';
import type { AggregateJob, Job, JobOutcome, WriteJob, WriteOutcome } from './send-protocol.js';
import { summarizeAggregate } from './portable-sender.js';
import type { AggregateResult, MessageOutcome, WriteDestination, WriteResult } from './results.js';
import type { SegmentSpec } from '../policy/schema.js';
import { libc } from '../sys/ffi.js';

function spawnSendWorker(): Worker {
  const options = { name: 'sluice-sender' };
  if (!fileURLToPath(import.meta.url).endsWith('.ts')) return new Worker(new URL('./send-worker.js', import.meta.url), options);
  // Run from source (tsx): Node 20 does not pass tsx's loader to workers.
  const entry = JSON.stringify(new URL('./send-worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { ...options, eval: true });
}

export class BatchedSender {
  #worker: Worker | undefined;
  #nextId = 1;
  /** Jobs posted and not answered yet; each answer carries its job's id. */
  readonly #pending = new Map<number, { resolve: (o: JobOutcome | WriteOutcome) => void; reject: (e: Error) => void }>();
  /** Most segments per UDP GSO send (0: no GSO), from the batched tier's probe. */
  readonly #gsoMaxSegments: number;

  constructor(gsoMaxSegments: number) {
    this.#gsoMaxSegments = gsoMaxSegments;
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const w = spawnSendWorker();
    w.on('message', (o: JobOutcome | WriteOutcome) => {
      const p = this.#pending.get(o.id);
      this.#pending.delete(o.id);
      p?.resolve(o);
    });
    const fail = (err: Error) => {
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
      this.#worker = undefined;
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`sluice-sender worker exited (code ${code})`)));
    w.unref();
    this.#worker = w;
    return w;
  }

  async sendAggregate(spec: AggregateSpec): Promise<AggregateResult> {
    const remap = new Map((spec.remap ?? []).map((r) => [endpointKey(r.from), r.to]));
    const plan = planSchedule(spec.schedule, spec.messages.length);
    const n = plan.length;
    const total = spec.messages.reduce((sum, m) => sum + m.data.byteLength, 0);
    const blob = new Uint8Array(total);
    const job: { -readonly [K in keyof AggregateJob]: AggregateJob[K] } = {
      kind: 'aggregate',
      id: this.#nextId++,
      blob: blob.buffer,
      index: new Int32Array(n),
      offset: new Float64Array(n),
      length: new Int32Array(n),
      dueMs: new Float64Array(n),
      dest: new Int32Array(n),
      destAddress: [] as string[],
      destPort: new Int32Array(0),
      destFamily: new Int8Array(0),
      from: spec.from ? { address: spec.from.address, port: spec.from.port, family: (isIPv4(spec.from.address) ? 4 : 6) as 4 | 6 } : undefined,
      maxLatenessMs: spec.maxLatenessMs,
      startAt: spec.schedule.kind === 'range' ? spec.schedule.startAt : undefined,
      gsoMaxSegments: this.#gsoMaxSegments,
    };
    let at = 0;
    // The destination table: endpoints parsed from the same string are one
    // object (see schema.ts), so most lookups hit the object map.
    const byObject = new Map<Endpoint, number>();
    const byKey = new Map<string, number>();
    const table: Endpoint[] = [];
    const destIndex = (to: Endpoint): number => {
      let i = byObject.get(to);
      if (i === undefined) {
        const key = endpointKey(to);
        i = byKey.get(key);
        if (i === undefined) {
          i = table.length;
          table.push(to);
          byKey.set(key, i);
        }
        byObject.set(to, i);
      }
      return i;
    };
    const dest = plan.map((p, k) => {
      const m = spec.messages[p.index]!;
      const to = remap.size ? (remap.get(endpointKey(m.to)) ?? m.to) : m.to;
      blob.set(m.data, at);
      job.index[k] = p.index;
      job.offset[k] = at;
      job.length[k] = m.data.byteLength;
      job.dueMs[k] = p.atMs;
      job.dest[k] = destIndex(to);
      at += m.data.byteLength;
      return to;
    });
    job.destAddress = table.map((e) => e.address);
    job.destPort = Int32Array.from(table, (e) => e.port);
    job.destFamily = Int8Array.from(table, (e) => (isIPv4(e.address) ? 4 : 6));
    const outcome = await this.#submit<JobOutcome>(job, [job.blob]);
    if (outcome.fatal) throw new Error(`batched sender: ${outcome.fatal}`);
    // Endpoints parsed from the same string are one object (see schema.ts): format each once.
    const names = new Map<object, string>();
    const messages: MessageOutcome[] = plan.map((p, k) => {
      const m = spec.messages[p.index]!;
      const to = dest[k]!;
      let name = names.get(to);
      if (name === undefined) names.set(to, (name = formatEndpoint(to)));
      const dueMs = p.atMs;
      const sentAtMs = outcome.sentAtMs[k]!;
      const err = outcome.error[k]!;
      const o: { -readonly [K in keyof MessageOutcome]: MessageOutcome[K] } = { index: p.index, to: name, status: err ? 'dropped' : 'sent', dueMs, sentAtMs, lateMs: Math.max(0, sentAtMs - dueMs) };
      if (m.stream) o.stream = m.stream;
      if (err) o.reason = err;
      return o;
    });
    return { ...summarizeAggregate('batched', spec, messages, outcome.elapsedMs), sendCalls: outcome.sendCalls, gsoMessages: outcome.gsoMessages };
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
   * GSO message.
   */
  async write(spec: SegmentSpec): Promise<WriteResult> {
    const n = spec.entries.length;
    const c = libc();
    const job: WriteJob = {
      kind: 'write',
      id: this.#nextId++,
      address: Float64Array.from(spec.entries, (e) => (e.data.byteLength ? c.memcpyAddr(e.data, e.data, 0) : 0)),
      length: Float64Array.from(spec.entries, (e) => e.data.byteLength),
      toAddress: spec.entries.map((e) => e.to.address),
      toPort: Int32Array.from(spec.entries, (e) => e.to.port),
      toFamily: Int8Array.from(spec.entries, (e) => (isIPv4(e.to.address) ? 4 : 6)),
      from: spec.from ? { address: spec.from.address, port: spec.from.port, family: isIPv4(spec.from.address) ? 4 : 6 } : undefined,
      packetSize: spec.packetSize,
      burst: spec.burst,
      gsoMaxSegments: this.#gsoMaxSegments,
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
    };
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}
