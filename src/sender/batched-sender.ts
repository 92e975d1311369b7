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
import { endpointKey, formatEndpoint } from '../policy/endpoint.js';
import type { AggregateSpec } from '../policy/schema.js';
import { planSchedule } from '../policy/schedule.js';
import type { AggregateJob, JobOutcome } from './send-protocol.js';
import { summarizeAggregate } from './portable-sender.js';
import type { AggregateResult, MessageOutcome } from './results.js';

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
  readonly #pending = new Map<number, { resolve: (o: JobOutcome) => void; reject: (e: Error) => void }>();

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const w = spawnSendWorker();
    w.on('message', (o: JobOutcome) => {
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
    const job = {
      id: this.#nextId++,
      blob: blob.buffer,
      index: new Int32Array(n),
      offset: new Float64Array(n),
      length: new Int32Array(n),
      dueMs: new Float64Array(n),
      toAddress: new Array<string>(n),
      toPort: new Int32Array(n),
      toFamily: new Int8Array(n),
      from: spec.from ? { address: spec.from.address, port: spec.from.port, family: (isIPv4(spec.from.address) ? 4 : 6) as 4 | 6 } : undefined,
      maxLatenessMs: spec.maxLatenessMs,
      startAt: spec.schedule.kind === 'range' ? spec.schedule.startAt : undefined,
    } satisfies AggregateJob;
    let at = 0;
    const dest = plan.map((p, k) => {
      const m = spec.messages[p.index]!;
      const to = remap.get(endpointKey(m.to)) ?? m.to;
      blob.set(m.data, at);
      job.index[k] = p.index;
      job.offset[k] = at;
      job.length[k] = m.data.byteLength;
      job.dueMs[k] = p.atMs;
      job.toAddress[k] = to.address;
      job.toPort[k] = to.port;
      job.toFamily[k] = isIPv4(to.address) ? 4 : 6;
      at += m.data.byteLength;
      return to;
    });
    const w = this.#ensureWorker();
    w.ref();
    const outcome = await new Promise<JobOutcome>((resolve, reject) => {
      this.#pending.set(job.id, { resolve, reject });
      w.postMessage(job, [job.blob]);
    }).finally(() => {
      if (this.#pending.size === 0) this.#worker?.unref();
    });
    if (outcome.fatal) throw new Error(`batched sender: ${outcome.fatal}`);
    const messages: MessageOutcome[] = plan.map((p, k) => {
      const m = spec.messages[p.index]!;
      const dueMs = p.atMs;
      const sentAtMs = outcome.sentAtMs[k]!;
      const err = outcome.error[k]!;
      return {
        index: p.index,
        to: formatEndpoint(dest[k]!),
        ...(m.stream ? { stream: m.stream } : {}),
        status: err ? 'dropped' : 'sent',
        dueMs,
        sentAtMs,
        lateMs: Math.max(0, sentAtMs - dueMs),
        ...(err ? { reason: err } : {}),
      } satisfies MessageOutcome;
    });
    return { ...summarizeAggregate('batched', spec, messages, outcome.elapsedMs), sendCalls: outcome.sendCalls };
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}
