/**
 * A running live fan-out (issue 22, part 3): an HTTP listener answering
 * udpxy's `GET /udp/GROUP:PORT` (and `/rtp/…`, `/NAME`, `/status`) and
 * plain TCP listeners each bound to one input, in the application thread;
 * the bytes move in the fan-out thread (loop.ts) with tee(2) and
 * splice(2). This side reads only request heads, bounded: at most
 * `maxPending` connections still sending one, each within
 * `headerTimeoutMs` and `maxHeaderBytes`; at most `maxClients` streams.
 * Every refusal is an HTTP error (or a reset for plain TCP) and a counter.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { Waker } from '../../sys/poller.js';
import { spliceUnavailable } from '../../sys/splice.js';
import { spawnWorker, workerEntry } from '../../worker/spawn.js';
import { EngineFailedError, NotSupportedError, fromNodeError } from '../../errors.js';
import { unmapAddress, type Endpoint } from '../../wire/endpoint.js';
import { socketFd } from '../tcp/splice-joiner.js';
import { stopReading } from '../common/socket-reading.js';
import { checkLimits, createInputMatcher, parsePath, type AllowRule, type FanoutInput, type FanoutLimits } from './config.js';
import { headEnd, inputFailureHead, parseHead, response, streamHead } from './http.js';
import type { FanoutNotice, FanoutRequest, LoopStats } from './loop.js';
import { resetTcpSocket } from '../../sys/tcp-reset.js';

export interface FanoutSpec {
  /** Where the HTTP front listens (host:port; port 0: any). */
  readonly http?: Endpoint | undefined;
  /** Plain TCP listeners: every connection gets `input` at once, no request. */
  readonly tcp: readonly { readonly listen: Endpoint; readonly input: FanoutInput }[];
  /** Inputs always allowed (and by name: `GET /NAME`). */
  readonly inputs: readonly FanoutInput[];
  /** Further address:port ranges a request may name. */
  readonly allow: readonly AllowRule[];
  /** Interface groups are joined on (name or address); default: by route. */
  readonly interface?: string | undefined;
  readonly limits: FanoutLimits;
}

export interface FrontCounters {
  /** Streams handed to the fan-out thread. */
  accepted: number;
  /** /status answers. */
  status: number;
  refused: {
    badRequest: number;
    notFound: number;
    notAllowed: number;
    method: number;
    tooLarge: number;
    timeout: number;
    overLimit: number;
    pendingLimit: number;
  };
}

export interface FanoutStats extends LoopStats {
  readonly http: string | undefined;
  readonly tcp: readonly string[];
  readonly front: FrontCounters;
}

function listenText(s: Server): string {
  const a = s.address();
  if (!a || typeof a !== 'object') return '';
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export class FanoutEngine {
  #spec: FanoutSpec;
  readonly #servers: Server[] = [];
  #http: Server | undefined;
  readonly #worker: Worker;
  readonly #waker = new Waker();
  #allowed: (input: FanoutInput) => boolean;
  #byName: Map<string, FanoutInput>;
  readonly #open = new Map<number, Socket>();
  /** Each open stream's input, to end those an update takes away. */
  readonly #inputOf = new Map<number, FanoutInput>();
  readonly #pending = new Set<Socket>();
  readonly #statsWaiters = new Map<number, (s: LoopStats) => void>();
  readonly #front: FrontCounters = {
    accepted: 0,
    status: 0,
    refused: { badRequest: 0, notFound: 0, notAllowed: 0, method: 0, tooLarge: 0, timeout: 0, overLimit: 0, pendingLimit: 0 },
  };
  #next = 1;
  #stopped: Promise<void>;
  readonly #ready: Promise<void>;
  #closing = false;
  failure: Error | undefined;

  private constructor(spec: FanoutSpec) {
    this.#spec = spec;
    this.#allowed = createInputMatcher(spec.inputs, spec.allow);
    this.#byName = new Map(spec.inputs.filter((i) => i.name).map((i) => [i.name!, i]));
    this.#worker = spawnWorker({
      entry: workerEntry(import.meta.url, './worker'),
      name: 'sluice-fanout',
      workerData: { wakeFd: this.#waker.fd, limits: spec.limits, ...(spec.interface ? { interface: spec.interface } : {}) },
    });
    let ready: () => void = () => {};
    this.#ready = new Promise<void>((resolve) => (ready = resolve));
    this.#stopped = new Promise((resolve) => {
      this.#worker.on('message', (n: FanoutNotice) => {
        if (n.op === 'ready') ready();
        else if (n.op === 'stopped') resolve();
        else if (n.op === 'stats') {
          this.#statsWaiters.get(n.req)?.(n.stats);
          this.#statsWaiters.delete(n.req);
        } else this.#ended(n.id);
      });
      this.#worker.on('exit', () => {
        ready();
        resolve();
      });
    });
    this.#worker.on('error', (err) => {
      this.failure = new EngineFailedError('the fan-out thread', err.message, { cause: err });
      for (const s of this.#open.values()) s.destroy();
      this.#open.clear();
      this.#inputOf.clear();
    });
  }

  /** Validates the limits, starts the thread and the listeners. */
  static async start(spec: FanoutSpec): Promise<FanoutEngine> {
    checkLimits(spec.limits);
    const why = spliceUnavailable();
    if (why) throw new NotSupportedError('the live fan-out (tee and splice) is unavailable', why);
    const engine = new FanoutEngine(spec);
    try {
      await engine.#ready;
      if (engine.failure) throw engine.failure;
      if (spec.http) engine.#http = await engine.#listen(spec.http, { pauseOnConnect: false }, (s) => engine.#onHttp(s));
      for (const t of spec.tcp) await engine.#listen(t.listen, { pauseOnConnect: true }, (s) => engine.#onTcp(s, t.input));
    } catch (err) {
      await engine.close();
      throw err;
    }
    return engine;
  }

  get spec(): FanoutSpec {
    return this.#spec;
  }

  /**
   * Replaces the inputs and allow rules while everything runs (the
   * listeners, the thread and the streams of inputs still allowed stay as
   * they are). Streams of inputs no longer allowed end (`removed`); the
   * TCP listeners' inputs stay allowed whatever the list says. Returns how
   * many streams were told to end.
   */
  setInputs(inputs: readonly FanoutInput[], allow: readonly AllowRule[]): number {
    const all = [...inputs];
    for (const t of this.#spec.tcp) if (!all.some((i) => i.key === t.input.key)) all.push(t.input);
    this.#spec = { ...this.#spec, inputs: all, allow };
    this.#allowed = createInputMatcher(all, allow);
    this.#byName = new Map(all.filter((i) => i.name).map((i) => [i.name!, i]));
    const gone = [...this.#inputOf].filter(([, input]) => !this.#allowed(input)).map(([id]) => id);
    if (gone.length > 0 && !this.failure && !this.#closing) {
      this.#post({ op: 'end', ids: gone, reason: 'removed', error: 'the input was removed from the configuration' });
    }
    return gone.length;
  }

  /** `HOST:PORT` of the HTTP front, and of each TCP listener (in spec order). */
  get httpAddress(): string | undefined {
    return this.#http ? listenText(this.#http) : undefined;
  }

  get tcpAddresses(): string[] {
    return this.#servers.filter((s) => s !== this.#http).map(listenText);
  }

  async #listen(ep: Endpoint, o: { pauseOnConnect: boolean }, onConnection: (s: Socket) => void): Promise<Server> {
    const server = createServer({ pauseOnConnect: o.pauseOnConnect });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(fromNodeError('listen', err, `tcp ${ep.address}:${ep.port}`)));
      server.listen({ host: ep.address, port: ep.port, ipv6Only: ep.family === 6, backlog: 128 }, resolve);
    });
    server.on('connection', (s: Socket) => {
      s.on('error', () => {});
      if (this.#closing || this.failure) s.destroy();
      else onConnection(s);
    });
    this.#servers.push(server);
    return server;
  }

  #onTcp(s: Socket, input: FanoutInput): void {
    if (this.#open.size >= this.#spec.limits.maxClients) {
      this.#front.refused.overLimit++;
      resetTcpSocket(s);
      return;
    }
    this.#handover(s, input, 'tcp');
  }

  #onHttp(s: Socket): void {
    const l = this.#spec.limits;
    if (this.#pending.size >= l.maxPending) {
      this.#front.refused.pendingLimit++;
      resetTcpSocket(s);
      return;
    }
    this.#pending.add(s);
    let buf = Buffer.alloc(0);
    const finish = () => {
      this.#pending.delete(s);
      clearTimeout(timer);
      s.off('data', onData);
    };
    const timer = setTimeout(() => {
      finish();
      this.#front.refused.timeout++;
      this.#reply(s, 408, 'the request did not arrive in time\n');
    }, l.headerTimeoutMs);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = headEnd(buf);
      if (end < 0 && buf.byteLength <= l.maxHeaderBytes) return;
      finish();
      stopStream(s);
      if (end < 0 || end > l.maxHeaderBytes) {
        this.#front.refused.tooLarge++;
        this.#reply(s, 431, `request head over ${l.maxHeaderBytes} bytes\n`);
        return;
      }
      void this.#route(s, buf.subarray(0, end));
    };
    s.on('data', onData);
    s.once('close', finish);
  }

  async #route(s: Socket, head: Buffer): Promise<void> {
    const h = parseHead(head);
    const refused = this.#front.refused;
    if (!h.ok) {
      refused.badRequest++;
      return this.#reply(s, h.status, `${h.reason}\n`);
    }
    if (h.method !== 'GET' && h.method !== 'HEAD') {
      refused.method++;
      return this.#reply(s, 405, 'only GET and HEAD\n', 'text/plain; charset=utf-8', 'Allow: GET, HEAD\r\n');
    }
    const p = parsePath(h.path);
    if (p.kind === 'status') {
      this.#front.status++;
      return this.#reply(s, 200, `${JSON.stringify(await this.stats(), null, 1)}\n`, 'application/json');
    }
    if (p.kind === 'bad') {
      const inputPath = /^\/(udp|rtp)\//i.test(h.path);
      if (inputPath) refused.badRequest++;
      else refused.notFound++;
      return this.#reply(s, inputPath ? 400 : 404, `${p.reason}\n`);
    }
    const input = p.kind === 'name' ? this.#byName.get(p.name) : p.input;
    if (!input) {
      refused.notFound++;
      return this.#reply(s, 404, 'no such input\n');
    }
    if (!this.#allowed(input)) {
      refused.notAllowed++;
      return this.#reply(s, 403, `${input.key} is not an input this server may join (configure it or allow it)\n`);
    }
    if (h.method === 'HEAD') return this.#reply(s, 200, '', 'application/octet-stream');
    if (this.#open.size >= this.#spec.limits.maxClients) {
      refused.overLimit++;
      return this.#reply(s, 503, `at most ${this.#spec.limits.maxClients} clients\n`);
    }
    this.#handover(s, input, 'http');
  }

  /** Answers and closes; a client that will not take the answer is cut off after a second. */
  #reply(s: Socket, status: number, body: string, type?: string, extra?: string): void {
    if (s.destroyed) return;
    s.end(response(status, body, type, extra));
    // Read what else it sends so the close is a FIN, not a reset that could discard the answer.
    s.resume();
    const t = setTimeout(() => s.destroy(), 1000);
    s.once('close', () => clearTimeout(t));
  }

  #handover(s: Socket, input: FanoutInput, via: 'http' | 'tcp'): void {
    const fd = socketFd(s);
    if (fd === undefined || s.destroyed) {
      s.destroy();
      return;
    }
    const id = this.#next++;
    this.#open.set(id, s);
    this.#inputOf.set(id, input);
    this.#front.accepted++;
    const peer = `${unmapAddress(s.remoteAddress ?? '')}:${s.remotePort ?? 0}`;
    this.#post({
      op: 'add',
      id,
      fd,
      peer,
      via,
      input,
      greeting: via === 'http' ? streamHead() : '',
      failure: via === 'http' ? inputFailureHead() : '',
    });
  }

  #ended(id: number): void {
    const s = this.#open.get(id);
    if (!s) return;
    this.#open.delete(id);
    this.#inputOf.delete(id);
    s.destroy();
  }

  #post(r: FanoutRequest): void {
    this.#worker.postMessage(r);
    this.#waker.signal();
  }

  /** Counters of the front, the thread's inputs and every client. */
  async stats(): Promise<FanoutStats> {
    const base = { http: this.httpAddress, tcp: this.tcpAddresses, front: structuredClone(this.#front) };
    if (this.failure || this.#closing) return { ...base, ...emptyLoop() };
    const req = this.#next++;
    const loop = await new Promise<LoopStats>((resolve) => {
      this.#statsWaiters.set(req, resolve);
      this.#post({ op: 'stats', req });
    });
    return { ...base, ...loop };
  }

  /** Stops listening, ends every stream, stops the thread; resolves with the last counters. */
  async close(): Promise<FanoutStats> {
    const last = this.failure ? undefined : await this.stats().catch(() => undefined);
    this.#closing = true;
    const listening = Promise.all(this.#servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
    for (const s of this.#pending) s.destroy();
    this.#pending.clear();
    if (!this.failure) this.#post({ op: 'stop' });
    await this.#stopped;
    for (const s of this.#open.values()) s.destroy();
    this.#open.clear();
    this.#inputOf.clear();
    await this.#worker.terminate();
    this.#waker.close();
    await listening;
    return last ?? { http: this.httpAddress, tcp: this.tcpAddresses, front: this.#front, ...emptyLoop() };
  }
}

/**
 * Stops Node reading the socket, as a stream and at the libuv level: an
 * end of file Node read would end and close the socket (its descriptor)
 * under the fan-out thread. From here the thread alone touches the
 * descriptor until it says the client has ended.
 */
function stopStream(s: Socket): void {
  s.pause();
  stopReading(s);
}

function emptyLoop(): LoopStats {
  return {
    totals: {
      clients: 0,
      inputs: 0,
      bytesSent: 0,
      skippedChunks: 0,
      skippedBytes: 0,
      ended: { closed: 0, dropped: 0, error: 0, 'input-failed': 0, removed: 0, stopped: 0 },
      datagrams: 0,
    },
    inputs: [],
    clients: [],
  };
}
