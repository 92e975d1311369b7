/**
 * The TPO gateways a daemon runs (the config's `tpo:` list), through the
 * library facade TpoGateway ('sluice/tpo'): started from their config
 * files, their status read on demand (no message per request: status()
 * reads the gateway's own counters), their events turned into the
 * service's (peer up/down, alarms, engine failures) and log lines on the
 * gateway's child logger. Flow failures are what strangers and busy
 * applications cause at will: at most one alarm per second per (gateway,
 * reason), with a count, so the event stream cannot be flooded.
 */
import { TpoGateway, type TpoFlowFailure, type TpoGatewayStatus, type TpoHandshakeFailure } from '../tpo/index.js';
import type { Logger } from './log.js';
import { ServiceError } from './service-error.js';
import type { AlarmEvent } from './service-events.js';

export interface GatewayEventSink {
  peerup(gateway: string, peer: string): void;
  peerdown(gateway: string, peer: string): void;
  alarm(alarm: AlarmEvent): void;
  failed(engine: string, message: string): void;
}

interface Running {
  readonly path: string;
  readonly gateway: TpoGateway;
}

const ALARM_WINDOW_MS = 1000;

export class Gateways {
  readonly #log: Logger;
  readonly #sink: GatewayEventSink;
  readonly #running = new Map<string, Running>();
  /** (gateway|reason) → when its last alarm went out, and how many failures since. */
  readonly #alarms = new Map<string, { last: number; count: number }>();

  constructor(log: Logger, sink: GatewayEventSink) {
    this.#log = log;
    this.#sink = sink;
  }

  /** Starts one gateway from its config file. A gateway whose name is taken is refused. */
  async start(path: string): Promise<TpoGateway> {
    const gateway = await TpoGateway.start({ config: path });
    if (this.#running.has(gateway.name)) {
      await gateway.close().catch(() => undefined);
      throw new ServiceError('invalid_request', `TPO config ${path}: a gateway named '${gateway.name}' runs already`);
    }
    this.#watch(gateway);
    this.#running.set(gateway.name, { path, gateway });
    this.#log.child({ gateway: gateway.name }).info({ config: path, listen: gateway.status().listen, control: gateway.controlPath }, 'gateway started');
    return gateway;
  }

  #watch(gw: TpoGateway): void {
    const name = gw.name;
    const log = this.#log.child({ gateway: name });
    gw.on('peerup', (peer) => {
      log.info({ peer }, 'peer up');
      this.#sink.peerup(name, peer);
    });
    gw.on('peerdown', (peer) => {
      log.warn({ peer }, 'peer down');
      this.#sink.peerdown(name, peer);
    });
    gw.on('handshakefailure', (f: TpoHandshakeFailure) => {
      const message = `handshake ${f.reason} from ${f.from}${f.peer ? ` (peer ${f.peer})` : ''}${f.count > 1 ? `, ${f.count} times` : ''}`;
      log.warn({ peer: f.peer, from: f.from, reason: f.reason, count: f.count }, 'handshake failed');
      this.#sink.alarm({ source: name, kind: 'handshake', message, reason: f.reason, from: f.from, count: f.count, ...(f.peer ? { peer: f.peer } : {}) });
    });
    gw.on('flowfail', (f: TpoFlowFailure) => this.#flowFailed(name, log, f));
    gw.on('fault', (err) => {
      log.error({ err }, 'gateway failed');
      this.#sink.failed(`tpo ${name}`, err.message);
    });
  }

  #flowFailed(name: string, log: Logger, f: TpoFlowFailure): void {
    const key = `${name}|${f.reason}`;
    const now = performance.now();
    let a = this.#alarms.get(key);
    if (!a) this.#alarms.set(key, (a = { last: -Infinity, count: 0 }));
    a.count++;
    if (now - a.last < ALARM_WINDOW_MS) return;
    a.last = now;
    const count = a.count;
    a.count = 0;
    const error = f.error instanceof Error ? f.error.message : f.error === undefined ? undefined : String(f.error);
    const message = `flow ${f.tuple ?? ''} failed: ${f.reason}${f.peer ? ` (peer ${f.peer})` : ''}${error ? `: ${error}` : ''}${count > 1 ? `, ${count} flows` : ''}`;
    log.warn({ reason: f.reason, role: f.role, tuple: f.tuple, peer: f.peer, count, ...(error ? { error } : {}) }, 'flow failed');
    this.#sink.alarm({ source: name, kind: 'flowfail', message, reason: f.reason, count, ...(f.peer ? { peer: f.peer } : {}) });
  }

  /** Gateway names. */
  names(): string[] {
    return [...this.#running.keys()];
  }

  /** The config file each gateway was started from. */
  paths(): string[] {
    return [...this.#running.values()].map((r) => r.path);
  }

  get size(): number {
    return this.#running.size;
  }

  gateway(name: string): TpoGateway {
    const r = this.#running.get(name);
    if (!r) throw new ServiceError('gateway_not_found', `no TPO gateway '${name}'`);
    return r.gateway;
  }

  statuses(): TpoGatewayStatus[] {
    return [...this.#running.values()].map((r) => r.gateway.status());
  }

  /** Closes the gateway started from `path`. */
  async stop(path: string): Promise<string | undefined> {
    for (const [name, r] of this.#running) {
      if (r.path !== path) continue;
      this.#running.delete(name);
      await r.gateway.close();
      this.#log.child({ gateway: name }).info('gateway stopped');
      return name;
    }
    return undefined;
  }

  /** Closes every gateway; the first error is rethrown after all were tried. */
  async close(): Promise<void> {
    const all = [...this.#running.values()];
    this.#running.clear();
    const results = await Promise.allSettled(all.map((r) => r.gateway.close()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
