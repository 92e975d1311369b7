/**
 * The demo's engine: an origin streams MPEG-TS into one replicate flow
 * per tier; each flow fans it out to N loopback subscribers that check TS
 * continuity (plus, with `watch`, one more destination a person's player
 * listens on). The origin is either the real H.264/AAC clip of
 * media/demo-clip.m2t, looped and paced by its own PCRs (demo-clip.ts),
 * or, given a bitrate, a synthetic stream at that rate (a load test).
 * Everything runs in this process, so what the demo measures is the relay
 * sharing one Node thread with origin and subscribers — a floor, not a
 * ceiling.
 */
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice } from '../control/sluice.js';
import type { Flow } from '../control/flow.js';
import type { TierName } from '../policy/schema.js';
import type { FlowStats } from '../dataplane/common/counters.js';
import { SyntheticTsStream } from '../media/ts-synth.js';
import { TsContinuityChecker } from '../media/ts-checker.js';
import { runClipOrigin } from './demo-clip.js';

export interface DemoOptions {
  subscribers: number;
  /** A synthetic stream at this rate; undefined: the clip, paced by its PCRs. */
  bitrateBps?: number;
  /** One more destination of the first tier's flow, for a player (e.g. udp://127.0.0.1:5000); not checked. */
  watch?: string;
  durationMs: number;
  tiers: readonly TierName[];
  /** Ends the stream early when it resolves (a stop signal); the subscribers still drain and are counted. */
  stop?: Promise<unknown>;
}

/** Running totals for one tier, as shown on the live line and in the summary. */
export interface DemoTierReport {
  tier: TierName;
  subscribers: number;
  /** Datagrams the origin sent into this tier's flow. */
  sent: number;
  /** Datagrams received, summed over subscribers. */
  received: number;
  /** sent × subscribers − received (final), or gaps seen so far (live). */
  lost: number;
  ccErrors: number;
  syncErrors: number;
  relay: FlowStats;
}

export interface DemoProgress {
  elapsedMs: number;
  /** Origin rate over the last interval, bits/s of UDP payload. */
  rateBps: number;
  /** Origin datagrams per second over the last interval. */
  packetsPerSecond: number;
  tiers: DemoTierReport[];
}

export interface DemoResult extends DemoProgress {
  ok: boolean;
  /** The stream ended early (opts.stop). */
  interrupted: boolean;
}

interface Subscriber {
  socket: dgram.Socket;
  checker: TsContinuityChecker;
  received: number;
}

interface TierRun {
  tier: TierName;
  sluice: Sluice;
  flow: Flow;
  subscribers: Subscriber[];
  sent: number;
  final?: FlowStats;
}

/** Most datagrams sent in one pacing tick: after a stall we catch up gradually, not in one burst. */
const MAX_CATCH_UP = 64;

async function openSubscriber(): Promise<Subscriber> {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const sub: Subscriber = { socket, checker: new TsContinuityChecker(), received: 0 };
  socket.on('message', (msg) => {
    sub.received++;
    sub.checker.push(msg);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      // A later receive error must not become an unhandled 'error' (a crash); loss shows in the report.
      socket.on('error', () => undefined);
      resolve();
    });
  });
  return sub;
}

function report(run: TierRun, final: boolean): DemoTierReport {
  let received = 0;
  let ccErrors = 0;
  let syncErrors = 0;
  let gaps = 0;
  for (const s of run.subscribers) {
    const c = s.checker.stats();
    received += s.received;
    ccErrors += c.ccErrors;
    syncErrors += c.syncErrors;
    gaps += c.missingPackets;
  }
  const expected = run.sent * run.subscribers.length;
  return {
    tier: run.tier,
    subscribers: run.subscribers.length,
    sent: run.sent,
    received,
    // Live, datagrams in flight are not lost, so count only what the
    // continuity counters prove missing (in TS packets, /7 per datagram).
    lost: final ? expected - received : Math.ceil(gaps / 7),
    ccErrors,
    syncErrors,
    relay: run.final ?? run.flow.stats(),
  };
}

/**
 * Runs the demo; `onProgress` is called about once a second. Resolves when
 * the stream has ended and the subscribers have drained (bounded wait).
 */
export async function runStreamDemo(opts: DemoOptions, onProgress: (p: DemoProgress) => void): Promise<DemoResult> {
  const runs: TierRun[] = [];
  const origin = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
  // Send errors arrive in callbacks; an 'error' event without a listener would crash the demo.
  origin.on('error', () => undefined);
  try {
    for (const tier of opts.tiers) {
      const sluice = await Sluice.open({ tier });
      const subscribers = await Promise.all(Array.from({ length: opts.subscribers }, openSubscriber));
      const flow = await sluice.apply({
        name: `demo-${tier}`,
        type: 'replicate',
        listen: 'udp://127.0.0.1:0',
        to: [...subscribers.map((s) => `udp://127.0.0.1:${s.socket.address().port}`), ...(opts.watch && runs.length === 0 ? [opts.watch] : [])],
        allow: '127.0.0.1',
        payload: 'mpegts',
      });
      runs.push({ tier, sluice, flow, subscribers, sent: 0 });
    }
    await new Promise<void>((resolve) => origin.bind(0, '127.0.0.1', () => resolve()));
    let stopped = false;
    void opts.stop?.then(() => (stopped = true));
    let totalMs: number;
    let sent = 0;
    if (opts.bitrateBps === undefined) {
      const clip = await runClipOrigin({
        runs,
        durationMs: opts.durationMs,
        stopped: () => stopped,
        onProgress: (elapsedMs, rateBps, pps) => onProgress({ elapsedMs, rateBps, packetsPerSecond: pps, tiers: runs.map((r) => report(r, false)) }),
      });
      totalMs = clip.elapsedMs;
      sent = clip.datagrams;
    } else ({ totalMs, sent } = await runSynthetic(origin, runs, { ...opts, bitrateBps: opts.bitrateBps }, () => stopped, onProgress));

    // Drain: wait until every subscriber has everything, or nothing moves for 500 ms (max 3 s).
    const expected = () => runs.every((r) => r.subscribers.every((s) => s.received >= r.sent));
    const total = () => runs.reduce((n, r) => n + r.subscribers.reduce((m, s) => m + s.received, 0), 0);
    const drainEnd = Date.now() + 3000;
    let last = total();
    let lastChange = Date.now();
    while (!expected() && Date.now() < drainEnd && Date.now() - lastChange < 500) {
      await sleep(20);
      const now = total();
      if (now !== last) {
        last = now;
        lastChange = Date.now();
      }
    }
    for (const r of runs) r.final = (await r.flow.remove()) ?? r.flow.stats();
    const tiers = runs.map((r) => report(r, true));
    const seconds = totalMs / 1000;
    return {
      // Stopped before the first datagram: nothing sent, nothing lost.
      ok: tiers.every((t) => t.lost === 0 && t.ccErrors === 0 && t.syncErrors === 0 && (t.sent > 0 || stopped)),
      interrupted: stopped,
      elapsedMs: totalMs,
      packetsPerSecond: sent / seconds,
      rateBps: (sent * 1316 * 8) / seconds,
      tiers,
    };
  } finally {
    origin.close();
    for (const r of runs) {
      await r.sluice.close();
      for (const s of r.subscribers) s.socket.close();
    }
  }
}

/** The synthetic origin: datagrams of a SyntheticTsStream at the bitrate, paced by 1 ms timers, into every run's flow. */
async function runSynthetic(
  origin: dgram.Socket,
  runs: TierRun[],
  opts: DemoOptions & { bitrateBps: number },
  stopped: () => boolean,
  onProgress: (p: DemoProgress) => void,
): Promise<{ totalMs: number; sent: number }> {
  const stream = new SyntheticTsStream({ bitrateBps: opts.bitrateBps });
  const intervalNs = stream.datagramIntervalNs;
  const start = process.hrtime.bigint();
  const endNs = BigInt(Math.round(opts.durationMs * 1e6));
  let sent = 0;
  let lastReport = { t: 0, sent: 0 };
  for (;;) {
    const elapsed = process.hrtime.bigint() - start;
    if (elapsed >= endNs || stopped()) break;
    const due = Math.min(Math.floor(Number(elapsed) / intervalNs) + 1 - sent, MAX_CATCH_UP);
    for (let i = 0; i < due; i++) {
      const datagram = stream.nextDatagram();
      for (const run of runs) {
        origin.send(datagram, run.flow.listen.port, '127.0.0.1');
        run.sent++;
      }
      sent++;
    }
    const ms = Number(elapsed / 1_000_000n);
    if (ms - lastReport.t >= 1000) {
      const dt = (ms - lastReport.t) / 1000;
      const pps = (sent - lastReport.sent) / dt;
      onProgress({ elapsedMs: ms, packetsPerSecond: pps, rateBps: pps * 1316 * 8, tiers: runs.map((r) => report(r, false)) });
      lastReport = { t: ms, sent };
    }
    // Node timers fire at 1 ms granularity at best: each tick sends what is due.
    await sleep(1);
  }
  return { totalMs: Number((process.hrtime.bigint() - start) / 1_000_000n), sent };
}
