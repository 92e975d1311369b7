/**
 * Send jobs: one-shot work a request starts and a client follows by id —
 * an aggregate (Sluice.sendAggregate, one call on the send engine) or a
 * set of paced streams (a StreamScheduler from Sluice.streams, one per
 * job, cancellable). Finished jobs are kept, the last MAX_FINISHED, so
 * their results can be read after they end.
 */
import { randomUUID } from 'node:crypto';
import type { AggregateResult, Sluice, StreamHandle, StreamScheduler, StreamStats } from '../index.js';
import type { Logger } from './log.js';
import { ServiceError } from './service-error.js';
import { decodeAggregate, decodeStreams, sendRequestSchema, type JobStream } from './send-request.js';
import { parseAggregate, PolicyValidationError, type PolicyIssue } from '../index.js';
import { describeIssue } from '../policy/validate.js';

/** Finished jobs kept for reading. */
export const MAX_FINISHED = 100;
/** Jobs running at once. */
export const MAX_RUNNING = 16;

export type SendJobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface SendJobView {
  readonly id: string;
  readonly kind: 'aggregate' | 'stream';
  readonly state: SendJobState;
  readonly startedAt: string;
  readonly finishedAt?: string;
  /** Aggregate: messages (known at the end); stream: bytes (total null for looping streams). */
  readonly progress: { readonly sent: number; readonly total: number | null };
  readonly result?: unknown;
  readonly error?: string;
}

interface Job {
  readonly id: string;
  readonly kind: 'aggregate' | 'stream';
  state: SendJobState;
  readonly startedAt: Date;
  finishedAt?: Date;
  total: number | null;
  sent: number;
  result?: unknown;
  error?: string;
  scheduler?: StreamScheduler;
  handles?: StreamHandle[];
}

/** The aggregate's result without its per-message outcomes (65,536 objects, built only when read). */
function aggregateSummary(r: AggregateResult): Record<string, unknown> {
  const { engine, tier, sent, late, dropped, lateness, streams, destinations, elapsedMs } = r;
  return { engine, tier, sent, late, dropped, lateness, streams, destinations, elapsedMs };
}

function streamSummary(s: StreamStats): Record<string, unknown> {
  return { ...s };
}

export interface SendJobsEvents {
  started(view: SendJobView): void;
  done(view: SendJobView): void;
}

export class SendJobs {
  readonly #sluice: Sluice;
  readonly #log: Logger;
  readonly #events: SendJobsEvents;
  /** Running and finished jobs, oldest first. */
  readonly #jobs = new Map<string, Job>();
  #closed = false;

  constructor(sluice: Sluice, log: Logger, events: SendJobsEvents) {
    this.#sluice = sluice;
    this.#log = log;
    this.#events = events;
  }

  /** Validates and starts a job; the view says `running`. Throws PolicyValidationError or ServiceError. */
  start(body: unknown): SendJobView {
    if (this.#closed) throw new ServiceError('stopping', 'the service is stopping');
    const parsed = sendRequestSchema.safeParse(body);
    if (!parsed.success) throw new PolicyValidationError(parsed.error.issues.map((i) => describeIssue(i, body)) as PolicyIssue[], 'invalid send');
    const running = [...this.#jobs.values()].filter((j) => j.state === 'running').length;
    if (running >= MAX_RUNNING) throw new ServiceError('too_many_sends', `${running} send jobs are running; at most ${MAX_RUNNING} may run at once`);
    const req = parsed.data;
    const job: Job = { id: randomUUID(), kind: req.kind, state: 'running', startedAt: new Date(), total: null, sent: 0 };
    if (req.kind === 'aggregate') {
      const input = decodeAggregate(req.aggregate as never);
      try {
        // Validated now, so a bad aggregate is a 400, not a failed job (the engine checks it again).
        parseAggregate(input);
      } catch (err) {
        if (err instanceof PolicyValidationError)
          throw new PolicyValidationError(
            err.issues.map((i) => ({ ...i, path: i.path ? `aggregate.${i.path}` : 'aggregate' })),
            'invalid aggregate',
          );
        throw err;
      }
      job.total = input.messages.length;
      this.#add(job);
      this.#sluice.sendAggregate(input).then(
        (r) => this.#finish(job, 'done', { result: aggregateSummary(r), sent: r.sent }),
        (err: unknown) => this.#fail(job, err),
      );
    } else {
      const streams = decodeStreams(req);
      this.#startStreams(job, streams, req.packetSize, req.burst);
    }
    return this.#view(job);
  }

  #startStreams(job: Job, streams: JobStream[], packetSize: number, burst: number | undefined): void {
    const scheduler = this.#sluice.streams({ packetSize, ...(burst !== undefined ? { burst } : {}) });
    const handles: StreamHandle[] = [];
    try {
      for (const s of streams) handles.push(scheduler.add(s));
    } catch (err) {
      void scheduler.close();
      // A bad destination or bitrate, said the scheduler's way: a request error.
      throw new PolicyValidationError([{ path: 'streams', message: (err as Error).message }], 'invalid stream job');
    }
    job.scheduler = scheduler;
    job.handles = handles;
    job.total = streams.some((s) => s.loop) ? null : streams.reduce((n, s) => n + s.data.byteLength, 0);
    this.#add(job);
    void Promise.all(handles.map((h) => h.done)).then((finals) => {
      void scheduler.close();
      const failed = finals.find((f) => f.status === 'failed');
      const cancelled = finals.some((f) => f.status === 'removed' || f.status === 'closed');
      const sent = finals.reduce((n, f) => n + f.bytes, 0);
      const result = { streams: finals.map(streamSummary) };
      if (failed) this.#finish(job, 'failed', { result, sent, error: failed.error ?? 'a write failed' });
      else this.#finish(job, cancelled ? 'cancelled' : 'done', { result, sent });
    });
  }

  #add(job: Job): void {
    this.#jobs.set(job.id, job);
    this.#log.info({ send: job.id, kind: job.kind }, 'send started');
    this.#events.started(this.#view(job));
  }

  #finish(job: Job, state: Exclude<SendJobState, 'running'>, out: { result?: unknown; sent: number; error?: string }): void {
    if (job.state !== 'running') return;
    job.state = state;
    job.finishedAt = new Date();
    job.sent = out.sent;
    job.result = out.result;
    if (out.error !== undefined) job.error = out.error;
    job.scheduler = undefined;
    job.handles = undefined;
    const log = { send: job.id, kind: job.kind, state, sent: job.sent, ...(job.error ? { error: job.error } : {}) };
    if (state === 'failed') this.#log.warn(log, 'send failed');
    else this.#log.info(log, 'send finished');
    this.#events.done(this.#view(job));
    this.#prune();
  }

  #fail(job: Job, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.#finish(job, 'failed', { sent: 0, error: message });
  }

  /** Forgets the oldest finished jobs beyond MAX_FINISHED. */
  #prune(): void {
    let finished = [...this.#jobs.values()].filter((j) => j.state !== 'running').length;
    for (const [id, j] of this.#jobs) {
      if (finished <= MAX_FINISHED) break;
      if (j.state !== 'running') {
        this.#jobs.delete(id);
        finished--;
      }
    }
  }

  list(): SendJobView[] {
    return [...this.#jobs.values()].map((j) => this.#view(j));
  }

  get(id: string): SendJobView {
    const j = this.#jobs.get(id);
    if (!j) throw new ServiceError('send_not_found', `no send job '${id}'`);
    return this.#view(j);
  }

  /** Cancels a running stream job (its streams stop; the job ends 'cancelled'); a finished job is returned as it is. */
  async cancel(id: string): Promise<SendJobView> {
    const j = this.#jobs.get(id);
    if (!j) throw new ServiceError('send_not_found', `no send job '${id}'`);
    if (j.state === 'running') {
      if (!j.scheduler) throw new ServiceError('not_cancellable', 'an aggregate runs to its end once started; only stream jobs can be cancelled');
      const handles = j.handles ?? [];
      for (const h of handles) h.remove();
      await Promise.all(handles.map((h) => h.done));
    }
    return this.#view(j);
  }

  get running(): number {
    return [...this.#jobs.values()].filter((j) => j.state === 'running').length;
  }

  /** Stops every stream job (they end 'cancelled'); aggregates end with the Sluice. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#jobs.values()].filter((j) => j.scheduler).map((j) => j.scheduler!.close()));
  }

  #view(j: Job): SendJobView {
    let sent = j.sent;
    if (j.state === 'running' && j.handles) sent = j.handles.reduce((n, h) => n + h.stats().bytes, 0);
    return {
      id: j.id,
      kind: j.kind,
      state: j.state,
      startedAt: j.startedAt.toISOString(),
      ...(j.finishedAt ? { finishedAt: j.finishedAt.toISOString() } : {}),
      progress: { sent, total: j.total },
      ...(j.result !== undefined ? { result: j.result } : {}),
      ...(j.error !== undefined ? { error: j.error } : {}),
    };
  }
}
