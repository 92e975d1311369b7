/**
 * The portable engine for one-shot sends, on node:dgram: what every tier
 * falls back to when it has no engine of its own. It keeps the same
 * semantics as a native engine (transmission order, drop rule, outcomes,
 * counters) and is slower and coarser: it paces with Node timers (about
 * 1 ms granularity) on the application's thread, sends one datagram per
 * call, and never spins (a spin would stall the application).
 */
import dgram from 'node:dgram';
import { formatEndpoint, isWildcard, type Endpoint } from '../wire/endpoint.js';
import type { SendableAggregate, SegmentSpec, TierName } from '../policy/schema.js';
import type { SendEngine } from './send-engine.js';
import { planSchedule } from '../policy/schedule.js';
import { planSegments } from '../policy/segment-plan.js';
import { DestinationTable } from './destination-table.js';
import { Interleaver } from './interleave.js';
import { aggregateResult, ReasonCodes, type AggregateResult, type SendLabel, type WriteDestination, type WriteResult } from './results.js';

type Family = 4 | 6;

/** One socket per address family, the one of `from` bound to it. */
class Sockets {
  readonly #socks = new Map<Family, Promise<dgram.Socket>>();
  readonly #from: Endpoint | undefined;

  constructor(from: Endpoint | undefined) {
    this.#from = from;
  }

  get(family: Family): Promise<dgram.Socket> {
    let p = this.#socks.get(family);
    if (!p) {
      p = new Promise<dgram.Socket>((resolve, reject) => {
        const s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6' });
        s.once('error', reject);
        const own = this.#from?.family === family ? this.#from : undefined;
        const address = own && !isWildcard(own) ? own.address : undefined;
        s.bind({ port: own?.port ?? 0, ...(address ? { address } : {}) }, () => {
          s.off('error', reject);
          s.on('error', () => undefined); // per-send errors arrive in send callbacks
          resolve(s);
        });
      });
      this.#socks.set(family, p);
    }
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.#socks.values()) {
      const s = await p.catch(() => undefined);
      s?.close();
    }
  }
}

function send(sock: dgram.Socket, data: Uint8Array, to: Endpoint): Promise<string | undefined> {
  return new Promise((resolve) => {
    sock.send(data, to.port, to.address, (err) => resolve(err ? ((err as NodeJS.ErrnoException).code ?? err.message) : undefined));
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** Sends an aggregate on its schedule. The promise settles once, after the last message. */
export async function sendAggregatePortable(spec: SendableAggregate, label: SendLabel): Promise<AggregateResult> {
  const plan = planSchedule(spec.schedule, spec.messages.length);
  const n = plan.order.length;
  const table = new DestinationTable(spec.remap);
  const dest = new Int32Array(n);
  const length = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const m = spec.messages[plan.order[k]!]!;
    dest[k] = table.indexOf(spec.to[plan.order[k]!]!);
    length[k] = m.data.byteLength;
  }
  const sentAtMs = new Float64Array(n);
  const reason = new Uint16Array(n);
  const reasons = new ReasonCodes();
  const sockets = new Sockets(spec.from);
  const pending: Promise<void>[] = [];
  try {
    // Sockets first, so that binding does not make the first messages late.
    for (const f of new Set(table.endpoints.map((e) => e.family))) await sockets.get(f);
    const startsAt =
      spec.schedule.kind === 'range' && spec.schedule.startAt !== undefined ? performance.now() + (spec.schedule.startAt - Date.now()) : performance.now();
    // Messages due at the same time leave together, destinations taking
    // turns of at most spec.burst (the batched engine's order: interleave.ts).
    const interleaver = new Interleaver(table.endpoints.length);
    const group = new Int32Array(n);
    const turns = new Int32Array(n);
    for (let i = 0; i < n;) {
      const dueMs = plan.atMs[i]!;
      let j = i;
      while (j < n && plan.atMs[j] === dueMs) j++;
      // Timers may fire a fraction of a ms early against performance.now(): never send early.
      for (let wait = startsAt + dueMs - performance.now(); wait > 0; wait = startsAt + dueMs - performance.now()) await sleep(wait);
      for (let k = i; k < j; k++) group[k - i] = k;
      interleaver.order(group, j - i, dest, spec.burst, turns);
      for (let t = 0; t < j - i; t++) {
        const k = turns[t]!;
        const m = spec.messages[plan.order[k]!]!;
        const to = table.endpoints[dest[k]!]!;
        sentAtMs[k] = performance.now() - startsAt;
        if (sentAtMs[k]! - dueMs > spec.maxLatenessMs) {
          reason[k] = reasons.code('late');
          continue;
        }
        pending.push(
          sockets.get(to.family).then(async (sock) => {
            const err = await send(sock, m.data, to);
            if (err) reason[k] = reasons.code(err);
          }),
        );
      }
      i = j;
    }
    await Promise.all(pending);
    const elapsedMs = performance.now() - startsAt;
    return aggregateResult(label, spec, { plan, sentAtMs, reason, reasons: reasons.list, dest, length, destNames: table.names() }, elapsedMs, {
      sendCalls: pending.length,
    });
  } finally {
    await sockets.close();
  }
}

/**
 * A segmented write: each entry's data cut into packets of at most
 * packetSize (views into the caller's buffer, no copy here), destinations
 * interleaved `burst` packets at a time, sent as fast as the socket takes
 * them. The promise settles once, after the last packet.
 */
export async function writePortable(spec: SegmentSpec, label: SendLabel): Promise<WriteResult> {
  const t0 = performance.now();
  const plan = planSegments(
    spec.entries.map((e) => e.data.byteLength),
    spec.packetSize,
    spec.burst,
  );
  const dests: WriteDestination[] = spec.entries.map((e) => ({ to: formatEndpoint(e.to), packets: 0, bytes: 0, errors: 0 }));
  const sockets = new Sockets(spec.from);
  let sent = 0;
  let bytes = 0;
  let errors = 0;
  try {
    const pending: Promise<void>[] = [];
    for (const seg of plan) {
      const e = spec.entries[seg.entry]!;
      const d = dests[seg.entry]!;
      const view = e.data.subarray(seg.offset, seg.offset + seg.length);
      pending.push(
        sockets.get(e.to.family).then(async (sock) => {
          const err = await send(sock, view, e.to);
          if (err) {
            d.errors++;
            d.lastError = err;
            errors++;
          } else {
            d.packets++;
            d.bytes += seg.length;
            sent++;
            bytes += seg.length;
          }
        }),
      );
    }
    await Promise.all(pending);
  } finally {
    await sockets.close();
  }
  return { ...label, packets: plan.length, sent, bytes, errors, destinations: dests, elapsedMs: performance.now() - t0, sendCalls: plan.length };
}

/**
 * The portable engine: node:dgram on the application's thread. It holds
 * nothing between sends (each opens and closes its own sockets), so close()
 * has nothing to release and sends already started complete.
 */
export class PortableSender implements SendEngine {
  readonly name = 'portable';
  readonly #tier: TierName;
  constructor(tier: TierName) {
    this.#tier = tier;
  }
  sendAggregate(spec: SendableAggregate): Promise<AggregateResult> {
    return sendAggregatePortable(spec, { engine: this.name, tier: this.#tier });
  }
  write(spec: SegmentSpec): Promise<WriteResult> {
    return writePortable(spec, { engine: this.name, tier: this.#tier });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
