/**
 * The service suite's part (c): time from `POST /v1/flows/{name}/subscribers`
 * to the first datagram at the new subscriber, on each tier, with traffic
 * flowing.
 *
 * Per repeat and tier: the real daemon (`sluice serve`, run from source,
 * in the relay namespace on the relay's CPU) with one replicate flow
 * listening on the relay address, allowing the generator, with 10
 * subscribers on the sink (their copies cross the relay's veth and are
 * counted and dropped by the eBPF sink, as in the relay suite); the
 * generator sends a realistic stream into it (2,000 datagrams/s of
 * 1316 B, a ~21 Mbit/s MPEG-TS stream) from CPU 1; the probe
 * (bench/tools/subscribe-probe.ts, relay namespace, CPU 1) adds a
 * subscriber on 127.0.0.1 through the API, waits for its first datagram,
 * removes it, again and again. The measure includes the wait for the next
 * input datagram once the subscriber is in place: up to 0.5 ms at 2,000/s.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GEN_ADDR, GEN_CPU, RELAY_CPU, SINK_ADDR, spawnPinned } from './topology.js';
import type { ServiceContext, ServiceResults, SubscribeTrial } from './service-types.js';
import { spawnGenerator } from './trial.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const PROBE = fileURLToPath(new URL('../tools/subscribe-probe.ts', import.meta.url));
const API_PORT = 19180;
export const SUBSCRIBE_INPUT_PPS = 2000;
export const SUBSCRIBE_SIZE = 1316;
export const SUBSCRIBE_EXISTING = 10;

const q = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

export async function runSubscribeLatency(ctx: ServiceContext & { generator: string }, out: ServiceResults): Promise<void> {
  const count = ctx.quick ? 40 : 150;
  for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
    for (const tier of ctx.tiers) {
      if (out.unavailable[tier]) continue;
      const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-serve-'));
      const config = join(dir, 'serve.json');
      const tokenFile = join(dir, 'api.token');
      writeFileSync(
        config,
        JSON.stringify({
          tier,
          flows: [
            {
              name: 'relay',
              type: 'replicate',
              listen: `udp://0.0.0.0:${ctx.listenPort}`,
              allow: GEN_ADDR,
              to: Array.from({ length: SUBSCRIBE_EXISTING }, (_, i) => `udp://${SINK_ADDR}:${ctx.firstSubscriberPort + i}`),
            },
          ],
          // The probe makes two requests per sample: well above the default per-token limit.
          api: { listen: `127.0.0.1:${API_PORT}`, tokenFile, rateLimit: { perSecond: 10_000, burst: 10_000 } },
          state: join(dir, 'serve.state.json'),
          log: { level: 'info' },
        }),
      );
      const serve = spawnPinned(ctx.topo, 'relay', RELAY_CPU, process.execPath, ['--import', 'tsx', CLI, 'serve', '--config', config]);
      let gen: ReturnType<typeof spawnPinned> | undefined;
      try {
        try {
          await serve.waitForLine(/"msg":"ready"/, { stream: 'stderr', timeoutMs: 60_000 });
        } catch (err) {
          const info = await serve.waitExit(5_000).catch(() => undefined);
          if (info?.code === 3) {
            out.unavailable[tier] = serve.stderr().trim().split('\n').slice(-1)[0] ?? 'unavailable';
            ctx.log(`  service subscribe ${tier}: unavailable`);
            continue;
          }
          throw new Error(`sluice serve did not start: ${(err as Error).message}; ${serve.stderr().slice(-400)}`);
        }
        gen = spawnGenerator(ctx, { size: SUBSCRIBE_SIZE, rate: SUBSCRIBE_INPUT_PPS, seconds: Math.ceil(count * 0.2 + 30), pattern: 'smooth', burst: 16 });
        await new Promise((r) => setTimeout(r, 1_000));
        const probe = spawnPinned(ctx.topo, 'relay', GEN_CPU, process.execPath, [
          '--import',
          'tsx',
          PROBE,
          '--api',
          `http://127.0.0.1:${API_PORT}`,
          '--token-file',
          tokenFile,
          '--flow',
          'relay',
          '--count',
          String(count),
          '--gap-ms',
          '20',
        ]);
        const exit = await probe.waitExit(count * 5_000 + 30_000);
        const line = [...probe.stdoutLines].reverse().find((l) => l.includes('"event":"result"'));
        if (exit.code !== 0 || !line) throw new Error(`probe failed (code ${exit.code}): ${probe.stderr().slice(-400)}`);
        const r = JSON.parse(line) as Omit<SubscribeTrial, 'repeat' | 'tier'>;
        out.subscribe.push({ repeat, tier, ...r });
        ctx.log(
          `  service subscribe ${tier}: POST → first packet p50 ${q(r.firstPacketMs, 0.5).toFixed(2)} ms, p99 ${q(r.firstPacketMs, 0.99).toFixed(2)} ms; POST answered p50 ${q(r.postMs, 0.5).toFixed(2)} ms; ${r.timeouts} timeouts of ${count}`,
        );
      } catch (err) {
        ctx.log(`  service subscribe ${tier}: ERROR ${(err as Error).message.split('\n')[0]}`);
      } finally {
        await gen?.stop(1_000);
        await serve.stop(5_000);
        rmSync(dir, { recursive: true, force: true });
      }
      ctx.onProgress();
    }
  }
}
