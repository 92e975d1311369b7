/**
 * The cluster suite (issue 21), in the multi-host lab of harness/cluster/lab.ts
 * (root: network namespaces; a real etcd; four `sluice serve --cluster`):
 *  1. flow written to the store -> first datagram at its subscribers (~10 writes);
 *  2. kill -9 of an edge -> lease expiry -> first datagram at each moved
 *     subscriber (10 kills, restart and rejoin between), and what the
 *     subscribers that did not move lost (must be 0);
 *  3. kill -9 of the active ingest (a few), the same from the other ingest;
 *  4. control-plane traffic of every change above: etcd writes and watch
 *     events from etcd's /metrics (bench/lib/cluster-cp.ts).
 * Results: bench/results/<UTC time>-cluster.{md,json}.
 *
 *   npm run bench -- --suites cluster [--quick]          (from the bench runner)
 *   node --import tsx bench/cluster.ts [--kills 10] [--ingest-kills 3] [--flow-writes 10]
 *        [--lease-ttl 2] [--max-minutes 6] [--quick] [--out bench/results]
 * Skips with a printed reason (exit 0) when not root or etcd is missing.
 */
import { execFileSync } from 'node:child_process';
import { machineInfo } from './lib/machine.js';
import { loadavg } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { etcdSkipReason } from '../harness/etcd/etcd-server.js';
import { rootSkipReason, type NsProcess } from '../harness/netns/netns.js';
import { ClusterLab, type LabReceivers } from '../harness/cluster/lab.js';
import { RATE, SUB_PORTS, ingestTargets, labFlow, settled, sleep, startAllNodes, wall } from '../harness/cluster/lab-flow.js';
import { LAB_NODES, leafAddress, type LabNodeName } from '../harness/cluster/lab-topology.js';
import { cpDelta, cpSnapshot, cpSources } from './lib/cluster-cp.js';
import { BENCH_INGEST_PORT, BENCH_PORTS, edgeKill, flowWrite, ingestKill, type Ctx } from './lib/cluster-phases.js';
import { writeClusterResults, type ClusterRun } from './lib/cluster-report.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The lab source's datagram size (its default). */
const SIZE = 200;

export interface ClusterSuiteOptions {
  quick: boolean;
  outDir: string;
  log: (line: string) => void;
  kills?: number;
  ingestKills?: number;
  flowWrites?: number;
  leaseTtlS?: number;
  /** No new kill or write starts after this (the run then reports what it has). */
  maxMinutes?: number;
}

function etcdVersion(): string {
  try {
    return /etcd Version: (\S+)/.exec(execFileSync('etcd', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** After a failed cycle: every node that is not running is started again; throws if that fails. */
async function recover(lab: ClusterLab, rx: LabReceivers, leaseTtlS: number): Promise<void> {
  for (const name of LAB_NODES) {
    const n = lab.nodes.get(name);
    if (!n || n.proc.exitStatus) await lab.startNode(name, { leaseTtlS });
  }
  await settled(rx, SUB_PORTS, 30_000);
}

export async function runClusterSuite(o: ClusterSuiteOptions): Promise<{ md: string; json: string; complete: boolean } | { skipped: string }> {
  const skip = rootSkipReason() ?? etcdSkipReason();
  if (skip) {
    o.log(`cluster: skipped: ${skip}`);
    return { skipped: skip };
  }
  const t0 = Date.now();
  const leaseTtlS = o.leaseTtlS ?? 2;
  const options = {
    leaseTtlS,
    rate: RATE,
    size: SIZE,
    kills: o.kills ?? (o.quick ? 3 : 10),
    ingestKills: o.ingestKills ?? (o.quick ? 1 : 3),
    flowWrites: o.flowWrites ?? (o.quick ? 3 : 10),
    maxMinutes: o.maxMinutes ?? (o.quick ? 3 : 6),
  };
  const run: ClusterRun = {
    startedAt: new Date(t0).toISOString(),
    finishedAt: '',
    durationS: 0,
    complete: false,
    machine: {
      ...machineInfo(),
      loadStart: loadavg()
        .map((x) => x.toFixed(2))
        .join(' '),
    },
    etcd: etcdVersion(),
    options,
    cpSources: '',
    flowWrites: [],
    edgeKills: [],
    ingestKills: [],
    errors: [],
    notes: [],
  };
  const timeLeft = (): boolean => Date.now() - t0 < options.maxMinutes * 60_000;
  const log = (line: string): void => o.log(`cluster: ${line}`);
  log(
    `lab: etcd ${run.etcd}, 4 nodes, lease TTL ${leaseTtlS} s; ${options.flowWrites} flow writes, ${options.kills} edge kills, ${options.ingestKills} ingest kills`,
  );

  let lab: ClusterLab | undefined;
  let source: NsProcess | undefined;
  try {
    lab = await ClusterLab.create();
    const rx = await lab.startReceivers([...SUB_PORTS, ...BENCH_PORTS]);
    const tNodes = wall();
    await startAllNodes(lab, Object.fromEntries(LAB_NODES.map((n) => [n, leaseTtlS])));
    log(`4 nodes joined in ${((wall() - tNodes) / 1000).toFixed(1)} s`);
    const sApply = await cpSnapshot(lab.ctl);
    run.cpSources = cpSources(sApply.metrics);
    await lab.applyFlows([labFlow()]);
    const bounded = Math.ceil(options.maxMinutes * 60 + 120);
    const targets = [...ingestTargets(), `${leafAddress('n1')}:${BENCH_INGEST_PORT}`, `${leafAddress('n2')}:${BENCH_INGEST_PORT}`];
    // Bounded by count and time even if the suite hangs before its finally.
    source = await lab.startSource({ targets, rate: RATE, count: RATE * bounded, maxSeconds: bounded, size: SIZE });
    await settled(rx, SUB_PORTS, 60_000);
    run.cliApply = cpDelta(lab.ctl, sApply, await cpSnapshot(lab.ctl));
    const sIdle = await cpSnapshot(lab.ctl);
    await sleep(5000);
    run.idle = cpDelta(lab.ctl, sIdle, await cpSnapshot(lab.ctl));
    log(`ch1 placed; idle: ${run.idle.puts} puts, ${run.idle.keepAlives} keepalives in ${run.idle.seconds.toFixed(1)} s`);

    const ctx: Ctx = { lab, rx, leaseTtlS, log };
    for (let i = 1; i <= options.flowWrites && timeLeft(); i++) {
      try {
        const w = await flowWrite(ctx, i);
        run.flowWrites.push(w);
        const first = Object.values(w.firstMs);
        log(
          `flow write ${i}: subscribers fed after ${Math.min(...first).toFixed(0)}–${Math.max(...first).toFixed(0)} ms; ${w.apply.puts} put, ${w.apply.watchEvents} watch events`,
        );
      } catch (err) {
        run.errors.push(`flow write ${i}: ${(err as Error).message}`);
        log(`flow write ${i}: ERROR ${(err as Error).message}`);
      }
    }
    let lastVictim: LabNodeName | undefined;
    for (let i = 1; i <= options.kills && timeLeft(); i++) {
      try {
        const feeding = await settled(rx, SUB_PORTS, 30_000);
        const k = await edgeKill(ctx, i, feeding, lastVictim);
        lastVictim = k.node;
        run.edgeKills.push(k);
        const f = Object.values(k.failoverMs);
        log(
          `edge kill ${i} (${k.node}): expiry ${k.killToExpiryMs.toFixed(0)} ms after kill; ${f.length} moved, fed ${f.map((x) => x.toFixed(0)).join('/')} ms after expiry; others lost ${k.stayed.reduce((a, s) => a + s.missing, 0)}; rejoined in ${(k.restartToJoinedMs / 1000).toFixed(1)} s, ${k.rejoinMoved.length} moved back`,
        );
      } catch (err) {
        run.errors.push(`edge kill ${i}: ${(err as Error).message}`);
        log(`edge kill ${i}: ERROR ${(err as Error).message}`);
        await recover(lab, rx, leaseTtlS);
      }
    }
    for (let i = 1; i <= options.ingestKills && timeLeft(); i++) {
      try {
        await settled(rx, SUB_PORTS, 30_000);
        const k = await ingestKill(ctx, i);
        run.ingestKills.push(k);
        const f = Object.values(k.failoverMs);
        log(
          `ingest kill ${i} (${k.node}): expiry ${k.killToExpiryMs.toFixed(0)} ms after kill; subscribers fed ${f.map((x) => x.toFixed(0)).join('/')} ms after expiry`,
        );
      } catch (err) {
        run.errors.push(`ingest kill ${i}: ${(err as Error).message}`);
        log(`ingest kill ${i}: ERROR ${(err as Error).message}`);
        await recover(lab, rx, leaseTtlS);
      }
    }
    const short = [
      run.flowWrites.length < options.flowWrites ? `${run.flowWrites.length}/${options.flowWrites} flow writes` : '',
      run.edgeKills.length < options.kills ? `${run.edgeKills.length}/${options.kills} edge kills` : '',
      run.ingestKills.length < options.ingestKills ? `${run.ingestKills.length}/${options.ingestKills} ingest kills` : '',
    ].filter(Boolean);
    if (short.length) run.notes.push(`done: ${short.join(', ')} (errors below, or the ${options.maxMinutes}-minute bound)`);
    run.complete = run.errors.length === 0 && short.length === 0;
  } catch (err) {
    run.errors.push(`lab: ${(err as Error).message}`);
    log(`ERROR ${(err as Error).message}`);
  } finally {
    source?.signal('SIGTERM');
    await lab?.destroy();
  }
  run.machine.loadEnd = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  run.finishedAt = new Date().toISOString();
  run.durationS = (Date.now() - t0) / 1000;
  const stamp = new Date(t0).toISOString().slice(0, 16).replace(/:/g, '');
  const files = writeClusterResults(o.outDir, stamp, run);
  log(`done in ${(run.durationS / 60).toFixed(1)} min: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
  return { ...files, complete: run.complete };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      kills: { type: 'string' },
      'ingest-kills': { type: 'string' },
      'flow-writes': { type: 'string' },
      'lease-ttl': { type: 'string' },
      'max-minutes': { type: 'string' },
      out: { type: 'string', default: 'bench/results' },
    },
  });
  const num = (v: string | undefined, name: string, minimum: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < minimum) throw new Error(`--${name} must be a number >= ${minimum}`);
    return n;
  };
  const t0 = Date.now();
  const log = (line: string): void => {
    const s = Math.round((Date.now() - t0) / 1000);
    process.stdout.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}\n`);
  };
  const opt = (k: string, v: number | undefined): Record<string, number> => (v === undefined ? {} : { [k]: v });
  const r = await runClusterSuite({
    quick: values.quick,
    outDir: isAbsolute(values.out) ? values.out : join(REPO_ROOT, values.out),
    log,
    ...opt('kills', num(values.kills, 'kills', 0)),
    ...opt('ingestKills', num(values['ingest-kills'], 'ingest-kills', 0)),
    ...opt('flowWrites', num(values['flow-writes'], 'flow-writes', 0)),
    ...opt('leaseTtlS', num(values['lease-ttl'], 'lease-ttl', 1)),
    ...opt('maxMinutes', num(values['max-minutes'], 'max-minutes', 0.5)),
  });
  // A skip is not a failure; an incomplete run (errors, time bound) is.
  return 'skipped' in r || r.complete ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bench/cluster: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
