/**
 * The service suite's daemon stand-in (bench/lib/service-suite.ts): a
 * Sluice on one tier with `--idle-flows` replicate flows of
 * `--idle-subscribers` subscribers each (listening on 127.0.0.1, nothing
 * sent to them: they make the scrape as large as a busy daemon's) and,
 * optionally, the bench's traffic flow (`--relay-*`), with the metrics of
 * src/server/metrics.ts over them, as `sluice serve` builds them.
 *
 *   --mode scrape   renders the metrics `--scrapes` times, `--gap-ms` apart
 *                   (after WARMUP scrapes), and prints one JSON line:
 *                   {"event":"result","renderMs":[...],"readMs":[...],"bytes","series","applyS"}
 *                   readMs: the source's flows() alone (every flow's stats()).
 *   --mode serve    serves GET /metrics over HTTP on the unix socket
 *                   `--socket` (a path: reachable from the harness in
 *                   another network namespace), prints {"event":"ready"},
 *                   and runs until SIGTERM; each response carries the
 *                   render time in x-render-ms.
 *
 *   --tier T --idle-flows N --idle-subscribers M
 *   [--relay-port P --relay-to HOST --relay-first-port F --relay-fanout K --allow ADDR]
 */
import { createServer } from 'node:http';
import { rmSync } from 'node:fs';
import { Sluice, type FlowStats, type TierName } from '../../src/index.js';
import { createMetrics } from '../../src/server/metrics.js';
import { flag } from './load-common.js';

const WARMUP = 10;
/** Idle subscribers: ports on 127.0.0.1 that nothing sends to (the flows get no input). */
const IDLE_FIRST_PORT = 20_000;

const tier = flag('tier') as TierName;
const idleFlows = Number(flag('idle-flows', '0'));
const idleSubs = Number(flag('idle-subscribers', '0'));
const mode = flag('mode');

async function main(): Promise<void> {
  const s = await Sluice.open({ tier });
  const t0 = performance.now();
  const relayPort = process.argv.includes('--relay-port') ? Number(flag('relay-port')) : undefined;
  if (relayPort !== undefined) {
    const first = Number(flag('relay-first-port'));
    const to = Array.from({ length: Number(flag('relay-fanout')) }, (_, i) => `udp://${flag('relay-to')}:${first + i}`);
    await s.apply({ name: 'relay', type: 'replicate', listen: `udp://0.0.0.0:${relayPort}`, to, allow: flag('allow') });
  }
  const idleTo = Array.from({ length: idleSubs }, (_, j) => `udp://127.0.0.1:${IDLE_FIRST_PORT + j}`);
  for (let i = 0; i < idleFlows; i++) {
    await s.apply({ name: `idle-${String(i).padStart(3, '0')}`, type: 'replicate', listen: 'udp://127.0.0.1:0', to: idleTo, allow: '127.0.0.1' });
  }
  const applyS = (performance.now() - t0) / 1000;

  const readMs: number[] = [];
  const metrics = createMetrics({
    flows: (): FlowStats[] => {
      const t = performance.now();
      const st = s.stats();
      readMs.push(performance.now() - t);
      return st;
    },
    gateways: () => [],
  });

  if (mode === 'scrape') {
    const scrapes = Number(flag('scrapes'));
    const gapMs = Number(flag('gap-ms', '20'));
    const renderMs: number[] = [];
    let text = '';
    for (let i = 0; i < WARMUP + scrapes; i++) {
      const t = performance.now();
      text = await metrics.render();
      if (i >= WARMUP) renderMs.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, gapMs));
    }
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
    process.stdout.write(
      `${JSON.stringify({ event: 'result', tier, renderMs, readMs: readMs.slice(WARMUP), bytes: Buffer.byteLength(text), series, applyS })}\n`,
    );
    await s.close();
    return;
  }

  const socket = flag('socket');
  rmSync(socket, { force: true });
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    const t = performance.now();
    metrics.render().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'x-render-ms': (performance.now() - t).toFixed(3) });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500).end(String(err));
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  process.stdout.write(`${JSON.stringify({ event: 'ready', tier, applyS })}\n`);
  const stop = (): void => {
    server.close();
    rmSync(socket, { force: true });
    void s.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  const code = (err as { code?: string }).code;
  process.stderr.write(`metrics-relay: ${(err as Error).stack ?? String(err)}\n`);
  // 3: the tier cannot run here (as sluice relay's exit code for an unavailable tier).
  process.exit(code === 'not_supported' ? 3 : 1);
});
