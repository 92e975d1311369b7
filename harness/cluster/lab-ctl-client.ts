/**
 * The test side of harness/cluster/lab-ctl.ts: the store's changes as
 * they were seen (with their times), waits on them, and requests (put,
 * delete, etcd metrics) answered over the child's stdin/stdout.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NsProcess } from '../netns/netns.js';

export interface WatchEvent {
  ev: 'watch';
  /** Wall-clock ms when lab-ctl received it. */
  t: number;
  type: 'put' | 'delete';
  key: string;
  value?: string;
  rev: string;
  /** Part of the first read rather than a change. */
  initial?: boolean;
}

export interface CtlReply {
  ev: 'reply';
  id: number;
  ok: boolean;
  /** Wall-clock ms when the request was sent to etcd, and when it answered. */
  t0?: number;
  t: number;
  error?: string;
  rev?: string;
  metrics?: Record<string, number>;
}

const POLL_MS = 20;

export class LabCtl {
  #nextId = 1;
  #parsed = 0;
  readonly #events: WatchEvent[] = [];
  readonly #replies = new Map<number, CtlReply>();

  constructor(readonly proc: NsProcess) {}

  /** Every watch event so far (the initial read first). */
  events(): readonly WatchEvent[] {
    this.#drain();
    return this.#events;
  }

  #drain(): void {
    const lines = this.proc.stdoutLines;
    for (; this.#parsed < lines.length; this.#parsed++) {
      const line = lines[this.#parsed]!;
      if (!line.startsWith('{')) continue;
      const o = JSON.parse(line) as { ev: string };
      if (o.ev === 'watch') this.#events.push(o as WatchEvent);
      else if (o.ev === 'reply') this.#replies.set((o as CtlReply).id, o as CtlReply);
    }
  }

  /** The first event (already seen or future) matching; rejects after `timeoutMs`. */
  async waitFor(pred: (e: WatchEvent) => boolean, what: string, timeoutMs = 30_000): Promise<WatchEvent> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events().find(pred);
      if (hit) return hit;
      if (this.proc.exitStatus) throw new Error(`lab-ctl exited while waiting for ${what}:\n${this.proc.stderr().slice(-2000)}`);
      if (Date.now() > end) throw new Error(`no store event '${what}' within ${timeoutMs} ms`);
      await sleep(POLL_MS);
    }
  }

  /** Waits for the deletion of `key` seen after wall-clock `since`; resolves with its time. */
  async keyDeleted(key: string, since: number, timeoutMs = 30_000): Promise<number> {
    return (await this.waitFor((e) => e.type === 'delete' && e.key === key && e.t >= since, `delete ${key}`, timeoutMs)).t;
  }

  /** Waits for a put of `key` seen after wall-clock `since`. */
  async keyPut(key: string, since: number, timeoutMs = 30_000): Promise<WatchEvent> {
    return this.waitFor((e) => e.type === 'put' && e.key === key && e.t >= since, `put ${key}`, timeoutMs);
  }

  async #request(body: Record<string, unknown>, timeoutMs = 15_000): Promise<CtlReply> {
    const id = this.#nextId++;
    this.proc.writeLine(JSON.stringify({ id, ...body }));
    const end = Date.now() + timeoutMs;
    for (;;) {
      this.#drain();
      const r = this.#replies.get(id);
      if (r) {
        if (!r.ok) throw new Error(`lab-ctl ${String(body.op)}: ${r.error}`);
        return r;
      }
      if (Date.now() > end) throw new Error(`lab-ctl ${String(body.op)}: no answer within ${timeoutMs} ms`);
      await sleep(POLL_MS);
    }
  }

  /** Writes a key straight into etcd (bypassing Sluice's CLI: garbage is allowed). */
  put(key: string, value: string): Promise<CtlReply> {
    return this.#request({ op: 'put', key, value });
  }

  delete(key: string): Promise<CtlReply> {
    return this.#request({ op: 'delete', key });
  }

  /** Selected counters of etcd's /metrics (see lab-ctl.ts). */
  async metrics(): Promise<Record<string, number>> {
    return (await this.#request({ op: 'metrics' })).metrics ?? {};
  }
}
