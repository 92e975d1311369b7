/**
 * The TPO gateways a daemon runs (the config's `tpo:` list), through the
 * library facade TpoGateway ('sluice/tpo'): started from their config
 * files, their status read on demand (status() reads the gateway's own
 * counters), peers and table entries changed at run time, and those
 * changes recorded (TpoRuntimeState) so that the state file can replay
 * them on the next start. Their events become the service's: peer up and
 * down, alarms (failed handshakes, unreachable peers, flows reset, flow
 * failures — at most one alarm per second per gateway and reason, with a
 * count: clients can cause flow failures at will), run-time changes,
 * engine failures. The log records are the caller's (`watch`: what
 * `sluice tpo` logs, src/cli/tpo-log.ts), so both commands say the same.
 */
import {
  TpoGateway,
  type TpoFlowFailure,
  type TpoGatewayStatus,
  type TpoPeerRemoval,
  type TpoPeerView,
  type TpoTableEntryRemoval,
  type TpoTableEntryView,
} from '../tpo/index.js';
import { createHash } from 'node:crypto';
import { ConflictError } from '../index.js';
import { readRegularFile } from '../fs/regular-file.js';
import { MAX_CONFIG_BYTES } from '../policy/config.js';
import type { Logger } from './log.js';
import { ServiceError } from './service-error.js';
import type { AlarmEvent, TpoChangeEvent } from './service-events.js';
import type { TpoRuntimeState } from './state-file.js';

export interface GatewayEventSink {
  peerup(gateway: string, peer: string): void;
  peerdown(gateway: string, peer: string): void;
  alarm(alarm: AlarmEvent): void;
  changed(change: TpoChangeEvent): void;
  failed(engine: string, message: string): void;
}

/** Subscribes a logger to a gateway's events; returns the unsubscribe. */
export type GatewayWatcher = (gateway: TpoGateway, log: Logger) => () => void;

interface Running {
  readonly path: string;
  /** The config file's bytes, hashed, as started: a reload restarts a gateway whose file changed. */
  readonly hash: string;
  readonly gateway: TpoGateway;
  readonly unwatch: () => void;
  /** What the API changed, in the state file's form. */
  state: { peers: Record<string, unknown>[]; removedPeers: string[]; table: Record<string, unknown>[]; removedTable: string[] };
}

const ALARM_WINDOW_MS = 1000;

function fileHash(path: string): string {
  try {
    return createHash('sha256')
      .update(readRegularFile(path, { maxBytes: MAX_CONFIG_BYTES }).data)
      .digest('hex');
  } catch {
    return '';
  }
}
const nameOf = (x: Record<string, unknown>) => (typeof x.name === 'string' ? x.name : '');

/** A conflict with what the gateway has (a name or key id taken, an entry naming the peer): 409 `conflict`. */
function conflicts<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    if (err instanceof ConflictError) throw new ServiceError('conflict', err.message);
    throw err;
  });
}

export class Gateways {
  readonly #log: Logger;
  readonly #sink: GatewayEventSink;
  readonly #watch: GatewayWatcher | undefined;
  readonly #running = new Map<string, Running>();
  /** (gateway|reason) → when its last alarm went out, and how many failures since. */
  readonly #alarms = new Map<string, { last: number; count: number }>();

  constructor(log: Logger, sink: GatewayEventSink, watch?: GatewayWatcher) {
    this.#log = log;
    this.#sink = sink;
    this.#watch = watch;
  }

  /**
   * Starts one gateway from its config file, then replays the run-time
   * changes of `replay` (a state file's): what cannot be replayed any more
   * (the config changed) is logged and skipped.
   */
  async start(path: string, replay?: Readonly<Record<string, TpoRuntimeState>>): Promise<TpoGateway> {
    const hash = fileHash(path);
    const gateway = await TpoGateway.start({ config: path });
    if (this.#running.has(gateway.name)) {
      await gateway.close().catch(() => undefined);
      throw new ServiceError('invalid_request', `TPO config ${path}: a gateway named '${gateway.name}' runs already`);
    }
    const unwatch = this.#watch?.(gateway, this.#log) ?? (() => undefined);
    this.#forward(gateway);
    const r: Running = { path, hash, gateway, unwatch, state: { peers: [], removedPeers: [], table: [], removedTable: [] } };
    this.#running.set(gateway.name, r);
    this.#log.info({ gateway: gateway.name, config: path, listen: gateway.status().listen, control: gateway.controlPath }, 'gateway started');
    const saved = replay?.[gateway.name];
    if (saved) await this.#replay(r, saved);
    return gateway;
  }

  async #replay(r: Running, s: TpoRuntimeState): Promise<void> {
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        this.#log.warn({ gateway: r.gateway.name, err }, `state file: cannot replay ${what}: ${(err as Error).message}`);
      }
    };
    for (const name of s.removedTable) await step(`the removal of table entry '${name}'`, () => this.removeTableEntry(r.gateway.name, name));
    for (const name of s.removedPeers) await step(`the removal of peer '${name}'`, () => this.removePeer(r.gateway.name, name));
    for (const p of s.peers) await step(`peer '${nameOf(p)}'`, () => this.addPeer(r.gateway.name, p));
    for (const e of s.table) await step(`table entry '${nameOf(e)}'`, () => this.addTableEntry(r.gateway.name, e));
  }

  #forward(gw: TpoGateway): void {
    const name = gw.name;
    gw.on('peerup', (peer) => this.#sink.peerup(name, peer));
    gw.on('peerdown', (peer) => this.#sink.peerdown(name, peer));
    gw.on('handshakefailure', (f) =>
      this.#sink.alarm({
        source: name,
        kind: 'handshake',
        message: f.message,
        reason: f.reason,
        from: f.from,
        count: f.count,
        ...(f.peer ? { peer: f.peer } : {}),
      }),
    );
    gw.on('peerunreachable', (u) =>
      this.#sink.alarm({ source: name, kind: 'unreachable', message: u.message, peer: u.peer, address: u.address, attempts: u.attempts }),
    );
    gw.on('peerflowsreset', (f) => this.#sink.alarm({ source: name, kind: 'flowsreset', message: f.message, peer: f.peer, flows: f.flows, cause: f.cause }));
    gw.on('flowfail', (f) => this.#flowFailed(name, f));
    gw.on('peeradded', (peer) => this.#sink.changed({ gateway: name, change: 'peeradded', peer }));
    gw.on('peerremoved', (removal) => this.#sink.changed({ gateway: name, change: 'peerremoved', ...removal }));
    gw.on('tableentryadded', (entry) => this.#sink.changed({ gateway: name, change: 'tableentryadded', entry }));
    gw.on('tableentryremoved', (removal) => this.#sink.changed({ gateway: name, change: 'tableentryremoved', ...removal }));
    gw.on('fault', (err) => {
      this.#log.error({ gateway: name, err }, 'gateway failed');
      this.#sink.failed(`tpo ${name}`, err.message);
    });
  }

  #flowFailed(name: string, f: TpoFlowFailure): void {
    const key = `${name}|${f.reason}`;
    const now = performance.now();
    let a = this.#alarms.get(key);
    if (!a) this.#alarms.set(key, (a = { last: -Infinity, count: 0 }));
    a.count++;
    if (now - a.last < ALARM_WINDOW_MS) return;
    a.last = now;
    const count = a.count;
    a.count = 0;
    const message = count > 1 ? `${f.message} (${count} flow failures for ${f.reason} in the last second)` : f.message;
    this.#sink.alarm({ source: name, kind: 'flowfail', message, reason: f.reason, count, ...(f.peer ? { peer: f.peer } : {}) });
  }

  #running1(name: string): Running {
    const r = this.#running.get(name);
    if (!r) throw new ServiceError('gateway_not_found', `no TPO gateway '${name}'`);
    return r;
  }

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
    return this.#running1(name).gateway;
  }

  statuses(): TpoGatewayStatus[] {
    return [...this.#running.values()].map((r) => r.gateway.status());
  }

  /** Every gateway's run-time changes, for the state file. */
  state(): Record<string, TpoRuntimeState> {
    return Object.fromEntries([...this.#running].map(([name, r]) => [name, r.state]));
  }

  async addPeer(gateway: string, input: unknown): Promise<TpoPeerView> {
    const r = this.#running1(gateway);
    const view = await conflicts(r.gateway.addPeer(input));
    r.state.peers.push(input as Record<string, unknown>);
    return view;
  }

  async removePeer(gateway: string, peer: string): Promise<TpoPeerRemoval> {
    const r = this.#running1(gateway);
    const removal = await conflicts(r.gateway.removePeer(peer));
    if (!removal) throw new ServiceError('peer_not_found', `gateway '${gateway}' has no peer '${peer}'`);
    const added = r.state.peers.findIndex((p) => nameOf(p) === peer);
    if (added >= 0) r.state.peers.splice(added, 1);
    else if (!r.state.removedPeers.includes(peer)) r.state.removedPeers.push(peer);
    return removal;
  }

  async addTableEntry(gateway: string, input: unknown): Promise<TpoTableEntryView> {
    const r = this.#running1(gateway);
    const view = await conflicts(r.gateway.addTableEntry(input));
    r.state.table.push(input as Record<string, unknown>);
    return view;
  }

  async removeTableEntry(gateway: string, entry: string, options: { resetFlows?: boolean } = {}): Promise<TpoTableEntryRemoval> {
    const r = this.#running1(gateway);
    const removal = await conflicts(r.gateway.removeTableEntry(entry, options));
    if (!removal) throw new ServiceError('entry_not_found', `gateway '${gateway}' has no table entry '${entry}'`);
    const added = r.state.table.findIndex((e) => nameOf(e) === entry);
    if (added >= 0) r.state.table.splice(added, 1);
    else if (!r.state.removedTable.includes(entry)) r.state.removedTable.push(entry);
    return removal;
  }

  /** Closes the gateway started from `path`. */
  async stop(path: string): Promise<string | undefined> {
    for (const [name, r] of this.#running) {
      if (r.path !== path) continue;
      this.#running.delete(name);
      try {
        await r.gateway.close();
      } finally {
        r.unwatch();
      }
      this.#log.info({ gateway: name }, 'gateway stopped');
      return name;
    }
    return undefined;
  }

  /**
   * SIGHUP: the config files win. Gateways no longer listed stop, new ones
   * start, and a running one restarts from its file when the file changed
   * or the API changed it (its flows are reset: the file is the operator's
   * explicit word); the others are left alone.
   */
  async reload(wanted: readonly string[]): Promise<{ started: string[]; stopped: string[]; restarted: string[] }> {
    const out = { started: [] as string[], stopped: [] as string[], restarted: [] as string[] };
    for (const r of [...this.#running.values()]) {
      const changed = r.hash !== fileHash(r.path) || Object.values(r.state).some((list) => list.length > 0);
      if (wanted.includes(r.path) && !changed) continue;
      const name = await this.stop(r.path);
      if (!name) continue;
      if (wanted.includes(r.path)) {
        await this.start(r.path);
        out.restarted.push(name);
      } else out.stopped.push(name);
    }
    for (const p of wanted) if (!this.paths().includes(p)) out.started.push((await this.start(p)).name);
    return out;
  }

  /** Closes every gateway; the first error is rethrown after all were tried. */
  async close(): Promise<void> {
    const all = [...this.#running.values()];
    this.#running.clear();
    const results = await Promise.allSettled(all.map((r) => r.gateway.close()));
    for (const r of all) r.unwatch();
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
