/**
 * The service suite (issue 19): what the daemon's metrics cost.
 *
 *   (a) scrape time: `render()` of src/server/metrics.ts over a Sluice with
 *       100 flows x 100 subscribers, on each tier that runs here, in the
 *       relay namespace on the relay's CPU (bench/tools/metrics-relay.ts
 *       --mode scrape): median and p99 of repeated scrapes, and how much of
 *       it is reading the counters (every flow's stats()). Tiers take turns
 *       within each repeat.
 *   (b) lossless capacity with a scrape every second vs none: the relay
 *       suite's max-rate search (search.ts, trial.ts: generator, eBPF sink,
 *       0.1 % loss limit) on the 1->100, 1316 B, smooth case, against one
 *       relay process per tier and repeat that also holds 99 idle flows of
 *       100 subscribers (so each scrape is as large as in (a)) and serves
 *       GET /metrics on a unix socket (--mode serve). The harness scrapes it
 *       from CPU 1 once a second during the trials of one search and not
 *       during the other's; the two searches run in lockstep, their trials
 *       taking turns (none first in odd repeats), so drift hits both alike.
 *       The search's precision is 2 % here (the goal is "within 2 %"), not
 *       the relay suite's 5 %.
 *
 *   (c) time from POST /v1/flows/{name}/subscribers to the first packet at
 *       the new subscriber, against the real `sluice serve` with traffic
 *       flowing: service-subscribe.ts.
 */
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from './cpu.js';
import { searchMaxLossless } from './search.js';
import { pairedRatio, spread, type Spread } from './stats.js';
import { GEN_ADDR, RELAY_CPU, SINK_ADDR, spawnPinned, waitForUdpPort } from './topology.js';
import { runTrial, type TrialContext } from './trial.js';
import { SUBSCRIBE_EXISTING, SUBSCRIBE_INPUT_PPS, SUBSCRIBE_SIZE } from './service-subscribe.js';
import type { CapacityTrial, ScrapeTimeTrial, ServiceContext, ServiceResults } from './service-types.js';

export { SERVICE_TIERS, emptyServiceResults, type ServiceResults } from './service-types.js';
export { runSubscribeLatency } from './service-subscribe.js';

const TOOL = fileURLToPath(new URL('../tools/metrics-relay.ts', import.meta.url));
const FLOWS = 100;
const SUBSCRIBERS = 100;
const CAPACITY_SIZE = 1316;
const SCRAPE_EVERY_MS = 1000;

const q = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

/** bench/tools/metrics-relay.ts on the relay's core: `idleFlows` flows of SUBSCRIBERS idle subscribers each, then `args`. */
function startMetricsRelay(ctx: ServiceContext, tier: string, idleFlows: number, args: readonly string[]) {
  const common = ['--import', 'tsx', TOOL, '--tier', tier, '--idle-flows', String(idleFlows), '--idle-subscribers', String(SUBSCRIBERS)];
  return spawnPinned(ctx.topo, 'relay', RELAY_CPU, process.execPath, [...common, ...args]);
}

/** (a): one scrape-time run per tier per repeat, tiers in turn. */
export async function runScrapeTimes(ctx: ServiceContext, out: ServiceResults): Promise<void> {
  const scrapes = ctx.quick ? 30 : 100;
  for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
    for (const tier of ctx.tiers) {
      if (out.unavailable[tier]) continue;
      const proc = startMetricsRelay(ctx, tier, FLOWS, ['--mode', 'scrape', '--scrapes', String(scrapes), '--gap-ms', '20']);
      const exit = await proc.waitExit(180_000).catch(async (err: unknown) => {
        await proc.stop(1_000);
        throw err;
      });
      if (exit.code === 3) {
        out.unavailable[tier] = proc.stderr().trim().split('\n').slice(-1)[0] ?? 'unavailable';
        ctx.log(`  service scrape ${tier}: unavailable (${out.unavailable[tier]})`);
        continue;
      }
      const line = [...proc.stdoutLines].reverse().find((l) => l.includes('"event":"result"'));
      if (exit.code !== 0 || !line) {
        ctx.log(`  service scrape ${tier}: ERROR (code ${exit.code}) ${proc.stderr().slice(-300)}`);
        continue;
      }
      const r = JSON.parse(line) as Omit<ScrapeTimeTrial, 'repeat' | 'flows' | 'subscribers'>;
      out.scrape.push({ ...r, repeat, tier, flows: FLOWS, subscribers: SUBSCRIBERS });
      ctx.log(
        `  service scrape ${tier} (${FLOWS} x ${SUBSCRIBERS}): render p50 ${q(r.renderMs, 0.5).toFixed(1)} ms, p99 ${q(r.renderMs, 0.99).toFixed(1)} ms, stats() p50 ${q(r.readMs, 0.5).toFixed(1)} ms, ${(r.bytes / 1e6).toFixed(2)} MB, ${r.series} series`,
      );
    }
    ctx.onProgress();
  }
}

/** GET /metrics over the unix socket: resolves with the client time, the daemon's render time and the size. */
function scrapeOnce(socketPath: string): Promise<{ clientMs: number; renderMs: number; bytes: number }> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics', timeout: 5_000 }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`GET /metrics: ${res.statusCode}`));
        else resolve({ clientMs: performance.now() - t, renderMs: Number(res.headers['x-render-ms']), bytes });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('GET /metrics timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Scrapes at once and then every SCRAPE_EVERY_MS until stopped (one at a time: a slow scrape delays the next, as Prometheus does). */
function startScraper(socketPath: string): { stop: () => Promise<NonNullable<CapacityTrial['scrapes']>> } {
  const s = { count: 0, failed: 0, renderMs: [] as number[], clientMs: [] as number[], bytes: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const r = await scrapeOnce(socketPath);
        s.count++;
        s.renderMs.push(r.renderMs);
        s.clientMs.push(r.clientMs);
        s.bytes = r.bytes;
      } catch {
        s.failed++;
      }
      const wait = SCRAPE_EVERY_MS - (performance.now() - started);
      if (running && wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return s;
    },
  };
}

/** Runs tasks one at a time in the order they were handed in. */
class Turns {
  #last: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const r = this.#last.then(task);
    this.#last = r.catch(() => undefined);
    return r;
  }
}

/** (b): per repeat and tier, one relay process, two searches in lockstep (scrape off/on, which goes first alternating). */
export async function runScrapeCapacity(ctx: ServiceContext, out: ServiceResults): Promise<void> {
  const fanout = SUBSCRIBERS;
  for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
    for (const tier of ctx.tiers) {
      if (out.unavailable[tier]) continue;
      const socket = join(tmpdir(), `sluice-bench-metrics-${process.pid}-${tier}.sock`);
      const proc = startMetricsRelay(ctx, tier, FLOWS - 1, [
        '--relay-port',
        String(ctx.listenPort),
        '--relay-to',
        SINK_ADDR,
        '--relay-first-port',
        String(ctx.firstSubscriberPort),
        '--relay-fanout',
        String(fanout),
        '--allow',
        GEN_ADDR,
        '--mode',
        'serve',
        '--socket',
        socket,
      ]);
      try {
        try {
          await proc.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 120_000 });
        } catch (err) {
          const info = await proc.waitExit(5_000).catch(() => undefined);
          if (info?.code === 3) {
            out.unavailable[tier] = proc.stderr().trim().split('\n').slice(-1)[0] ?? 'unavailable';
            ctx.log(`  service capacity ${tier}: unavailable (${out.unavailable[tier]})`);
            continue;
          }
          throw err;
        }
        await waitForUdpPort(ctx.topo, 'relay', ctx.listenPort, proc);
        await new Promise((r) => setTimeout(r, 300));
        const trialCtx: TrialContext = { ...ctx.trial, relayPids: processTree(proc.pid!) };
        // Both searches run in lockstep, their trials taking turns (off, on, off, on, ... or the other way round in
        // even repeats), so load that comes and goes on this host hits both alike; the scraper runs during the
        // scraping search's trials only.
        const order = repeat % 2 === 1 ? [false, true] : [true, false];
        const turns = new Turns();
        const hint = [...out.capacity].reverse().find((c) => c.tier === tier && c.search.maxInputPps > 0)?.search.maxInputPps;
        const scrapes: NonNullable<CapacityTrial['scrapes']> = { count: 0, failed: 0, renderMs: [], clientMs: [], bytes: 0 };
        const searches = order.map((scraping) =>
          searchMaxLossless(
            {
              fanout,
              start: Math.round(50_000 / fanout),
              ...(hint ? { hint } : {}),
              precision: ctx.quick ? 0.05 : 0.02,
              maxDeliveredPps: 1_500_000,
              minRate: 100,
              maxTrials: ctx.quick ? 10 : 16,
            },
            (rate) =>
              turns.run(async () => {
                const scraper = scraping ? startScraper(socket) : undefined;
                try {
                  return await runTrial(trialCtx, { size: CAPACITY_SIZE, pattern: 'smooth', burst: 16, fanout, rate, seconds: ctx.trialSeconds });
                } finally {
                  const sc = await scraper?.stop();
                  if (sc) {
                    scrapes.count += sc.count;
                    scrapes.failed += sc.failed;
                    scrapes.renderMs.push(...sc.renderMs);
                    scrapes.clientMs.push(...sc.clientMs);
                    scrapes.bytes = sc.bytes;
                  }
                }
              }),
          ).then((search) => ({ scraping, search })),
        );
        for (const { scraping, search } of await Promise.all(searches)) {
          out.capacity.push({ repeat, tier, scraping, search, ...(scraping ? { scrapes } : {}) });
          ctx.log(
            `  service capacity ${tier} 1→${fanout} ${CAPACITY_SIZE} B, ${scraping ? 'scrape every 1 s' : 'no scrape'}: ${(search.deliveredPps / 1e3).toFixed(1)}k pps delivered at ${search.maxInputPps} in${search.generatorLimited ? ' (generator-limited)' : ''} (${search.trials.length} trials)` +
              (scraping
                ? `; ${scrapes.count} scrapes (${scrapes.failed} failed), render p50 ${q(scrapes.renderMs, 0.5).toFixed(1)} ms, client p50 ${q(scrapes.clientMs, 0.5).toFixed(1)} ms`
                : ''),
          );
        }
        ctx.onProgress();
      } catch (err) {
        ctx.log(`  service capacity ${tier}: ERROR ${(err as Error).message.split('\n')[0]}`);
      } finally {
        await proc.stop(3_000);
      }
    }
  }
}

const f1 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1));
const f3 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));
const range = (s: Spread | undefined, f: (v: number) => string): string => (s ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : '–');

export function serviceMarkdown(r: ServiceResults): string {
  if (!r.scrape.length && !r.capacity.length && !r.subscribe.length && !Object.keys(r.unavailable).length) return '';
  const out: string[] = ['## Service: metrics scrape cost (issue 19)', ''];
  for (const [tier, why] of Object.entries(r.unavailable)) out.push(`- ${tier}: unavailable (${why})`);
  if (r.scrape.length) {
    const s0 = r.scrape[0]!;
    out.push(
      '',
      `### (a) render() with ${s0.flows} flows × ${s0.subscribers} subscribers (${s0.series} series, ${(s0.bytes / 1e6).toFixed(2)} MB)`,
      '',
      'Per repeat: the median and p99 of its scrapes; the table gives the median over repeats (min–max). Ratios: this tier ÷ portable, per repeat.',
      '',
      '| tier | repeats | render p50 ms | render p99 ms | of which stats() p50 ms | p50 ÷ portable |',
      '|---|---|---|---|---|---|',
    );
    const tiers = [...new Set(r.scrape.map((t) => t.tier))];
    const perRepeat = (tier: string, pick: (t: ScrapeTimeTrial) => number) =>
      [...new Set(r.scrape.map((t) => t.repeat))].map((rep) => {
        const t = r.scrape.find((x) => x.tier === tier && x.repeat === rep);
        return t ? pick(t) : NaN;
      });
    for (const tier of tiers) {
      const p50 = perRepeat(tier, (t) => q(t.renderMs, 0.5));
      out.push(
        `| ${tier} | ${r.scrape.filter((t) => t.tier === tier).length} | ${range(spread(p50), f1)} | ${range(spread(perRepeat(tier, (t) => q(t.renderMs, 0.99))), f1)} | ${range(spread(perRepeat(tier, (t) => q(t.readMs, 0.5))), f1)} | ${
          tier === 'portable'
            ? '1'
            : range(
                pairedRatio(
                  p50,
                  perRepeat('portable', (t) => q(t.renderMs, 0.5)),
                ),
                f3,
              )
        } |`,
      );
    }
  }
  if (r.capacity.length) {
    out.push(
      '',
      `### (b) lossless capacity, 1→${SUBSCRIBERS}, ${CAPACITY_SIZE} B smooth, with GET /metrics every ${SCRAPE_EVERY_MS / 1000} s vs none`,
      '',
      `Same relay process for both (it also holds ${FLOWS - 1} idle flows × ${SUBSCRIBERS} subscribers: each scrape is as large as in (a)); the two searches in lockstep, trials taking turns. Delivered datagrams/s at the highest rate with ≤ 0.1 % loss: median over repeats (min–max); ratio = with scrape ÷ without, per repeat. Goal: within 2 % (ratio ≥ 0.98).`,
      '',
      '| tier | repeats | no scrape, pps | scrape every 1 s, pps | ratio (min–max) | goal met (median) | scrapes: render p50 / p99 ms, client p50 ms |',
      '|---|---|---|---|---|---|---|',
    );
    const tiers = [...new Set(r.capacity.map((t) => t.tier))];
    for (const tier of tiers) {
      const reps = [...new Set(r.capacity.filter((t) => t.tier === tier).map((t) => t.repeat))];
      const v = (scraping: boolean) =>
        reps.map((rep) => r.capacity.find((t) => t.tier === tier && t.repeat === rep && t.scraping === scraping)?.search?.deliveredPps ?? NaN);
      const on = v(true);
      const off = v(false);
      const ratio = pairedRatio(on, off);
      const sc = r.capacity.filter((t) => t.tier === tier && t.scrapes).flatMap((t) => t.scrapes!.renderMs);
      const cl = r.capacity.filter((t) => t.tier === tier && t.scrapes).flatMap((t) => t.scrapes!.clientMs);
      const limited =
        (r.capacity.some((t) => t.tier === tier && t.search?.generatorLimited) ? ' (generator-limited: lower bound)' : '') +
        (r.capacity.some((t) => t.tier === tier && t.search?.capped) ? ' (a search reached the 1.5 M/s cap)' : '');
      out.push(
        `| ${tier} | ${reps.length} | ${range(spread(off), (x) => (x / 1e3).toFixed(1) + 'k')} | ${range(spread(on), (x) => (x / 1e3).toFixed(1) + 'k')}${limited} | ${range(ratio, f3)} | ${ratio ? (ratio.median >= 0.98 ? 'yes' : 'no') : '–'} | ${f1(q(sc, 0.5))} / ${f1(q(sc, 0.99))}, ${f1(q(cl, 0.5))} |`,
      );
    }
  }
  if (r.subscribe.length) {
    out.push(
      '',
      `### (c) POST /v1/flows/{name}/subscribers → first datagram at the new subscriber (sluice serve, ${SUBSCRIBE_INPUT_PPS} datagrams/s of ${SUBSCRIBE_SIZE} B flowing to ${SUBSCRIBE_EXISTING} subscribers)`,
      '',
      'Per repeat: p50 and p99 of its samples; the table gives the median over repeats (min–max) and, last, the p50/p99 of all samples pooled. Includes the wait for the next input datagram (up to 0.5 ms at this rate). Ratio: this tier ÷ portable, p50 per repeat.',
      '',
      '| tier | samples (timeouts) | first packet p50 ms | first packet p99 ms | pooled p50 / p99 ms | POST answered p50 ms | p50 ÷ portable |',
      '|---|---|---|---|---|---|---|',
    );
    const tiers = [...new Set(r.subscribe.map((t) => t.tier))];
    const reps = [...new Set(r.subscribe.map((t) => t.repeat))];
    const per = (tier: string, pick: (t: (typeof r.subscribe)[number]) => number) =>
      reps.map((rep) => {
        const t = r.subscribe.find((x) => x.tier === tier && x.repeat === rep);
        return t ? pick(t) : NaN;
      });
    const f2 = (v: number) => v.toFixed(2);
    for (const tier of tiers) {
      const mine = r.subscribe.filter((t) => t.tier === tier);
      const pooled = mine.flatMap((t) => t.firstPacketMs);
      const p50 = per(tier, (t) => q(t.firstPacketMs, 0.5));
      out.push(
        `| ${tier} | ${pooled.length} (${mine.reduce((n, t) => n + t.timeouts, 0)}) | ${range(spread(p50), f2)} | ${range(spread(per(tier, (t) => q(t.firstPacketMs, 0.99))), f2)} | ${f2(q(pooled, 0.5))} / ${f2(q(pooled, 0.99))} | ${range(spread(per(tier, (t) => q(t.postMs, 0.5))), f2)} | ${
          tier === 'portable'
            ? '1'
            : range(
                pairedRatio(
                  p50,
                  per('portable', (t) => q(t.firstPacketMs, 0.5)),
                ),
                f3,
              )
        } |`,
      );
    }
  }
  out.push('');
  return out.join('\n');
}
