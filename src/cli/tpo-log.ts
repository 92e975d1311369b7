/**
 * What `sluice tpo` logs (src/server/log.ts: pino, JSON lines on stderr or
 * readable on a terminal; `--log-level`): a gateway's events, one record
 * each, through a child logger per gateway and per peer. Peers up and
 * down, handshakes that fail (already coalesced by the gateway), a peer
 * that does not answer (reported with backoff), flows that failed with
 * their tuple and reason, run-time changes, faults. Nothing per packet;
 * flow failures, which clients can cause at will, are held to
 * FLOW_LOG_PER_SECOND records a second, the rest summed in one record.
 */
import type { Logger } from '../server/log.js';
import type { TpoGateway, TpoGatewayEvents, TpoHandshakeFailureReason } from '../tpo/index.js';

/** Flow failure records per second; beyond it they are counted and said in one record at the end of the second. */
export const FLOW_LOG_PER_SECOND = 10;

/** Handshake failures that are harmless (duplicates, replays): info, not warn. */
const HARMLESS: ReadonlySet<TpoHandshakeFailureReason> = new Set(['replayed', 'unexpected']);

/** Subscribes `log` to the gateway's events; returns the unsubscribe. */
export function logTpoGateway(gw: TpoGateway, root: Logger): () => void {
  const log = root.child({ gateway: gw.name });
  const peers = new Map<string, Logger>();
  const peerLog = (peer: string | undefined): Logger => {
    if (peer === undefined) return log;
    let l = peers.get(peer);
    if (!l) peers.set(peer, (l = log.child({ peer })));
    return l;
  };
  const flowLimit = new RecordLimit(FLOW_LOG_PER_SECOND, (skipped) =>
    log.warn({ skipped }, `${Object.values(skipped).reduce((a, b) => a + b, 0)} more flow failures in the last second, not logged one by one`),
  );
  const off: (() => void)[] = [];
  const on = <K extends keyof TpoGatewayEvents & string>(event: K, handler: (...args: TpoGatewayEvents[K]) => void) => {
    // The generic K does not narrow the emitter's conditional listener type; each call site is checked against the map.
    gw.on(event, handler as never);
    off.push(() => gw.off(event, handler as never));
  };

  on('peerup', (peer) => peerLog(peer).info('peer up'));
  on('peerdown', (peer) =>
    peerLog(peer).warn('peer down: nothing heard from it, or it said goodbye (its flows are reset after limits.peerDeadMs unless it comes back)'),
  );
  on('peerunreachable', (u) => peerLog(u.peer).warn({ address: u.address, attempts: u.attempts, sinceMs: u.sinceMs }, u.message));
  on('handshakefailure', (h) => {
    const fields = { from: h.from, reason: h.reason, count: h.count };
    if (HARMLESS.has(h.reason)) peerLog(h.peer).info(fields, h.message);
    else peerLog(h.peer).warn(fields, h.message);
  });
  on('flowfail', (f) => {
    if (!flowLimit.take(f.reason)) return;
    // The peer is the child logger's binding already.
    const { message, error, peer: _peer, ...fields } = f;
    if (f.reason === 'error') peerLog(f.peer).error({ err: error }, message);
    else peerLog(f.peer).warn(fields, message);
  });
  on('peerflowsreset', (r) => peerLog(r.peer).warn({ flows: r.flows, cause: r.cause }, r.message));
  on('peeradded', (p) => peerLog(p.name).info({ ...(p.address ? { address: p.address } : {}) }, 'peer added'));
  on('peerremoved', (r) => peerLog(r.name).info({ flowsReset: r.flowsReset }, 'peer removed'));
  on('tableentryadded', (e) => log.info({ entry: e }, `table entry ${e.name} added`));
  on('tableentryremoved', (r) => log.info({ entry: r.name, flowsEnded: r.flowsEnded }, `table entry ${r.name} removed`));
  on('fault', (err) => log.error({ err }, `gateway fault: ${err.message}`));
  // Each new flow only at debug: listening costs an object per flow.
  if (log.isLevelEnabled('debug')) on('flowopen', (f) => log.debug({ role: f.role, tuple: f.tuple, peers: f.peers }, 'flow open'));
  return () => {
    for (const f of off.splice(0)) f();
    flowLimit.close();
  };
}

/** At most `perSecond` records a second; the skipped ones, by key, are handed to `summary` once the second is over. */
class RecordLimit {
  readonly #perSecond: number;
  readonly #summary: (skipped: Record<string, number>) => void;
  #windowStart = -Infinity;
  #taken = 0;
  #skipped: Record<string, number> = {};
  #timer: NodeJS.Timeout | undefined;

  constructor(perSecond: number, summary: (skipped: Record<string, number>) => void) {
    this.#perSecond = perSecond;
    this.#summary = summary;
  }

  take(key: string, now = performance.now()): boolean {
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#taken = 0;
    }
    if (this.#taken < this.#perSecond) {
      this.#taken++;
      return true;
    }
    this.#skipped[key] = (this.#skipped[key] ?? 0) + 1;
    if (!this.#timer) {
      this.#timer = setTimeout(() => this.#flush(), 1000 - (now - this.#windowStart));
      this.#timer.unref();
    }
    return false;
  }

  #flush(): void {
    this.#timer = undefined;
    const skipped = this.#skipped;
    this.#skipped = {};
    if (Object.keys(skipped).length) this.#summary(skipped);
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#flush();
  }
}
