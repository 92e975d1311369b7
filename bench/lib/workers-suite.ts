/**
 * `--suites workers`: the batched tier's replicate 1→100 lossless capacity
 * with 1 and 2 workers (issue 22, part 4), in the relay suite's namespaces
 * with its eBPF sink, generator and lossless-rate search.
 *
 * Two scenarios, each with 1 and 2 workers, interleaved (the order of the
 * worker counts alternates per repeat):
 *   - one source: every datagram comes from one source port, so the
 *     steering program sends all of them to one worker; the second worker
 *     idles. This is the issue's "replicate 1→100" as stated.
 *   - 8 sources: the same input rate from 8 source ports of the generator
 *     (udp-gen --sources), spread over the workers by the steering hash.
 *
 * The relay is not pinned (taskset 0,1: both cores) for either worker
 * count; the generator stays on CPU 1 as in the relay suite, so a second
 * worker shares its core with the generator. Load average is recorded at
 * the start and end of every search, since other work may share the host.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { processTree } from './cpu.js';
import { searchMaxLossless, type SearchResult } from './search.js';
import { Sink } from './sink.js';
import { pairedRatio, spread, type Spread } from './stats.js';
import { BENCH_BACKLOG, GEN_ADDR, SINK_ADDR, createBenchTopology, raiseBacklog, waitForUdpPort, type BenchTopology } from './topology.js';
import { runTrial, type TrialContext } from './trial.js';
import { machineInfo } from './machine.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LISTEN_PORT = 30000;
const FIRST_PORT = 40000;
const FANOUT = 100;
const SIZE = 1316;
const WORKER_COUNTS = [1, 2] as const;
const SCENARIOS = [
  { name: 'one source', sources: 1 },
  { name: '8 sources', sources: 8 },
] as const;

type Log = (line: string) => void;

export interface WorkersRun {
  repeat: number;
  scenario: string;
  sources: number;
  workers: number;
  maxInputPps: number;
  deliveredPps: number;
  generatorLimited: boolean;
  capped: boolean;
  /** The relay's core-0 busy % and process CPU % in the trial at the lossless rate. */
  corePct?: number;
  cpuPct?: number;
  trials: string;
  loadavgStart: number;
  loadavgEnd: number;
  error?: string;
}

export interface WorkersSummary {
  scenario: string;
  workers: number;
  maxInputPps?: Spread;
}

async function startRelay(topo: BenchTopology, workers: number): Promise<{ pids: readonly number[]; stop: () => Promise<void> }> {
  const args = [
    join(REPO_ROOT, 'bin/sluice.js'),
    'relay',
    ...['--tier', 'batched', '--workers', String(workers), '--listen', `udp://0.0.0.0:${LISTEN_PORT}`],
    ...Array.from({ length: FANOUT }, (_, i) => ['--to', `udp://${SINK_ADDR}:${FIRST_PORT + i}`]).flat(),
    ...['--allow', GEN_ADDR, '--json', '--stats-interval', '0'],
  ];
  const proc = topo.spawn('relay', '/usr/bin/taskset', ['-c', '0,1', process.execPath, ...args]);
  try {
    await proc.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 20_000 });
    await waitForUdpPort(topo, 'relay', LISTEN_PORT, proc);
    await new Promise((r) => setTimeout(r, 300));
  } catch (err) {
    await proc.stop(3_000);
    throw new Error(`sluice relay --workers ${workers} did not start: ${proc.stderr().slice(-400)} (${(err as Error).message.slice(-300)})`);
  }
  return { pids: processTree(proc.pid!), stop: () => proc.stop(3_000).then(() => undefined) };
}

const mark = (t: { rate: number; pass: boolean; genLimited: boolean }) => `${t.rate}${t.genLimited ? 'g' : t.pass ? '+' : '-'}`;

export async function runWorkersSuite(o: {
  quick: boolean;
  repeats: number;
  outDir: string;
  generator: string;
  maxDeliveredPps: number;
  log: Log;
}): Promise<{ md: string; json: string }> {
  const { log } = o;
  const seconds = o.quick ? 1 : 1.5;
  const precision = o.quick ? 0.2 : 0.1;
  const runs: WorkersRun[] = [];
  const started = new Date();
  const backlog = raiseBacklog();
  if (backlog.before < BENCH_BACKLOG) log(`workers: net.core.netdev_max_backlog ${backlog.before} -> ${BENCH_BACKLOG} while it runs`);
  const topo = await createBenchTopology({ inputGso: false, segmentOutput: false, steer: true });
  let sink: Sink | undefined;
  try {
    sink = await Sink.create(topo);
    await sink.setPorts(FIRST_PORT, FANOUT);
    for (let repeat = 1; repeat <= o.repeats; repeat++) {
      for (const sc of SCENARIOS) {
        const order = repeat % 2 ? WORKER_COUNTS : [...WORKER_COUNTS].reverse();
        for (const workers of order) {
          // A hint only from a search the relay (not the generator) ended.
          const hint = runs.find((r) => r.scenario === sc.name && r.workers === workers && !r.error && !r.generatorLimited)?.maxInputPps;
          const la0 = loadavg()[0]!;
          const base = { repeat, scenario: sc.name, sources: sc.sources, workers, loadavgStart: la0 };
          let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
          try {
            relay = await startRelay(topo, workers);
            const ctx: TrialContext = { topo, sink, generator: o.generator, listenPort: LISTEN_PORT, relayPids: relay.pids };
            const search: SearchResult = await searchMaxLossless(
              {
                fanout: FANOUT,
                start: 2000,
                ...(hint ? { hint } : {}),
                precision,
                maxDeliveredPps: o.maxDeliveredPps,
                minRate: 100,
                maxTrials: o.quick ? 8 : 12,
              },
              (rate) => runTrial(ctx, { size: SIZE, rate, seconds, pattern: 'smooth', burst: 16, fanout: FANOUT, sources: sc.sources }),
            );
            const at = search.trials.find((t) => t.rate === search.maxInputPps && t.pass);
            const run: WorkersRun = {
              ...base,
              maxInputPps: search.maxInputPps,
              deliveredPps: search.deliveredPps,
              generatorLimited: search.generatorLimited,
              capped: search.capped,
              ...(at ? { corePct: at.corePct, cpuPct: at.cpuPct } : {}),
              trials: search.trials.map(mark).join(' '),
              loadavgEnd: loadavg()[0]!,
            };
            runs.push(run);
            log(
              `workers: repeat ${repeat} ${sc.name}, ${workers} worker(s): ${run.maxInputPps} in/s lossless (${run.deliveredPps} out/s) [${run.trials}] load ${la0.toFixed(2)}`,
            );
          } catch (err) {
            const msg = (err as Error).message.slice(0, 1000);
            log(`workers: repeat ${repeat} ${sc.name}, ${workers} worker(s): ERROR ${msg.split('\n')[0]}`);
            runs.push({
              ...base,
              maxInputPps: NaN,
              deliveredPps: NaN,
              generatorLimited: false,
              capped: false,
              trials: '',
              loadavgEnd: loadavg()[0]!,
              error: msg,
            });
          } finally {
            await relay?.stop();
          }
        }
      }
    }
  } finally {
    await sink?.close();
    await topo.destroy();
    backlog.restore();
  }
  return writeWorkersResults(o.outDir, started, { quick: o.quick, repeats: o.repeats, seconds, precision }, runs);
}

function writeWorkersResults(outDir: string, started: Date, options: object, runs: WorkersRun[]): { md: string; json: string } {
  const stamp = started.toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const of = (sc: string, w: number) => runs.filter((r) => r.scenario === sc && r.workers === w && !r.error).sort((a, b) => a.repeat - b.repeat);
  const summary = SCENARIOS.map((sc) => {
    const one = of(sc.name, 1);
    const two = of(sc.name, 2);
    // Paired by repeat: the two runs of one repeat ran back to back.
    const pairs = one.flatMap((a) => {
      const b = two.find((x) => x.repeat === a.repeat);
      return b ? [[b.maxInputPps, a.maxInputPps] as const] : [];
    });
    return {
      scenario: sc.name,
      sources: sc.sources,
      oneWorker: spread(one.map((r) => r.maxInputPps)),
      twoWorkers: spread(two.map((r) => r.maxInputPps)),
      ratio: pairedRatio(
        pairs.map((p) => p[0]),
        pairs.map((p) => p[1]),
      ),
    };
  });
  const json = join(outDir, `workers-${stamp}.json`);
  const md = join(outDir, `workers-${stamp}.md`);
  writeFileSync(
    json,
    `${JSON.stringify({ startedAt: started.toISOString(), finishedAt: new Date().toISOString(), machine: machineInfo(), options, summary, runs }, null, 2)}\n`,
  );
  const f = (s: Spread | undefined) => (s ? `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)}, n=${s.n})` : '—');
  const r = (s: Spread | undefined) => (s ? `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '—');
  const lines = [
    `# Batched tier workers: replicate 1→${FANOUT} lossless capacity (${started.toISOString()})`,
    '',
    `${SIZE}-byte datagrams, smooth, loss ≤ 0.1 %, sink = eBPF counter in its own namespace. Input datagrams/s (median, min–max over repeats); ratio = 2 workers / 1 worker, paired per repeat.`,
    '',
    '| scenario | 1 worker | 2 workers | ratio |',
    '|---|---|---|---|',
    ...summary.map((s) => `| ${s.scenario} | ${f(s.oneWorker)} | ${f(s.twoWorkers)} | ${r(s.ratio)} |`),
    '',
    '| repeat | scenario | workers | lossless in/s | delivered/s | load avg (start→end) | trials (rate, + pass, - loss, g generator-limited) |',
    '|---|---|---|---|---|---|---|',
    ...runs.map(
      (x) =>
        `| ${x.repeat} | ${x.scenario} | ${x.workers} | ${x.error ? `ERROR ${x.error.split('\n')[0]}` : x.maxInputPps}${x.generatorLimited ? ' (gen-limited)' : ''} | ${Number.isFinite(x.deliveredPps) ? Math.round(x.deliveredPps) : ''} | ${x.loadavgStart.toFixed(2)}→${x.loadavgEnd.toFixed(2)} | ${x.trials} |`,
    ),
    '',
  ];
  writeFileSync(md, lines.join('\n'));
  return { md, json };
}
