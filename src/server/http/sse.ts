/**
 * `GET /v1/events`: the service's events as server-sent events, to any
 * number of clients, without ever waiting for one.
 *
 * Each event is serialized once and written to every client's response
 * with res.write(), which never blocks: what the socket does not take at
 * once waits in the response's buffer. That buffer is each client's queue
 * and it is bounded: a client whose unsent bytes would pass
 * `maxQueueBytes` (it reads too slowly, or not at all) is disconnected —
 * it can reconnect and read the current state — so a stuck client costs
 * at most that much memory and nothing else. A `stats` event (every flow's
 * and gateway's counters) goes out once a second while anyone listens, and
 * a `: keepalive` comment every 15 s keeps proxies from closing a quiet
 * stream.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { SluiceService } from '../service.js';
import { SERVICE_EVENT_NAMES, statsEvent } from '../service-events.js';

export interface SseOptions {
  /** Unsent bytes a client may have queued before it is disconnected (default 1 MiB). */
  readonly maxQueueBytes?: number;
  /** Between `stats` events, ms (default 1000). */
  readonly statsIntervalMs?: number;
  /** Between keepalive comments, ms (default 15000). */
  readonly keepaliveMs?: number;
}

export class EventHub {
  readonly #service: SluiceService;
  readonly #log: Logger;
  readonly #clients = new Set<ServerResponse>();
  readonly #maxQueue: number;
  readonly #statsMs: number;
  readonly #keepaliveMs: number;
  readonly #unsubscribe: (() => void)[] = [];
  #seq = 0;
  #statsTimer: NodeJS.Timeout | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #dropped = 0;

  constructor(service: SluiceService, log: Logger, options: SseOptions = {}) {
    this.#service = service;
    this.#log = log;
    this.#maxQueue = options.maxQueueBytes ?? 1024 * 1024;
    this.#statsMs = options.statsIntervalMs ?? 1000;
    this.#keepaliveMs = options.keepaliveMs ?? 15_000;
    for (const name of SERVICE_EVENT_NAMES) {
      const listener = (payload: unknown) => this.#broadcast(name, payload);
      service.on(name, listener);
      this.#unsubscribe.push(() => service.off(name, listener));
    }
  }

  /** Clients listening now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Clients disconnected for falling behind, since start. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Takes over `res` (headers sent here) until the client goes or the hub closes. */
  add(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      connection: 'keep-alive',
      // nginx and similar proxies: pass events through as they come.
      'x-accel-buffering': 'no',
    });
    // The client waits 2 s before reconnecting after a drop.
    res.write('retry: 2000\n\n');
    this.#clients.add(res);
    res.once('close', () => this.#remove(res));
    if (this.#clients.size === 1) this.#startTimers();
    // A first stats event at once: a client sees the counters without waiting a second.
    this.#write(res, this.#frame('stats', statsEvent(this.#service.statsSnapshot(), this.#service.gateways())));
  }

  #startTimers(): void {
    this.#statsTimer = setInterval(() => this.#broadcast('stats', statsEvent(this.#service.statsSnapshot(), this.#service.gateways())), this.#statsMs);
    this.#keepaliveTimer = setInterval(() => {
      for (const res of this.#clients) this.#write(res, ': keepalive\n\n');
    }, this.#keepaliveMs);
    this.#statsTimer.unref();
    this.#keepaliveTimer.unref();
  }

  #remove(res: ServerResponse): void {
    if (!this.#clients.delete(res)) return;
    if (this.#clients.size === 0) {
      clearInterval(this.#statsTimer);
      clearInterval(this.#keepaliveTimer);
      this.#statsTimer = this.#keepaliveTimer = undefined;
    }
  }

  #frame(type: string, payload: unknown): string {
    return `event: ${type}\nid: ${++this.#seq}\ndata: ${JSON.stringify(payload)}\n\n`;
  }

  #broadcast(type: string, payload: unknown): void {
    if (this.#clients.size === 0) return;
    const frame = this.#frame(type, payload);
    for (const res of this.#clients) this.#write(res, frame);
  }

  /** Writes without waiting; a client whose queue would pass the bound is dropped instead. */
  #write(res: ServerResponse, chunk: string): void {
    if (res.destroyed || res.writableEnded) return this.#remove(res);
    if (res.writableLength + Buffer.byteLength(chunk) > this.#maxQueue) {
      this.#dropped++;
      this.#log.warn({ queued: res.writableLength, limit: this.#maxQueue }, 'event stream client too slow: disconnected');
      this.#remove(res);
      res.destroy();
      return;
    }
    res.write(chunk);
  }

  /** Ends every stream (the server is stopping) and stops listening to the service. */
  close(): void {
    for (const u of this.#unsubscribe.splice(0)) u();
    for (const res of [...this.#clients]) {
      this.#remove(res);
      res.end();
    }
  }
}
