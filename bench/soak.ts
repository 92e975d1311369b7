/**
 * `npm run soak [-- --minutes 30]` (issue 16; not part of CI): relays on
 * every tier and a TPO gateway pair, all real `sluice` processes, carry
 * checked real traffic while fuzz traffic hits every socket they listen
 * on. Reports each process's RSS over time, crashes, exits, and whether
 * the real traffic stayed byte-exact; writes bench/results/soak-*.md and
 * .json. Exit code 0 when the soak passed (bench/lib/soak-report.ts).
 *
 * As root, everything runs inside a network namespace this script creates
 * (and always deletes), so the kernel tier attaches to that namespace's lo
 * only; otherwise on the host's loopback, without the kernel tier.
 */
import { Command, InvalidArgumentError } from 'commander';
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { rootSkipReason, withTopology } from '../harness/netns/netns.js';
import { REPO_ROOT, rssKb, type SoakProcess } from './lib/soak-procs.js';
import { RelayTarget, type RelayResult } from './lib/soak-relay.js';
import { TpoTarget, type TpoResult } from './lib/soak-tpo.js';
import { memorySummary, verdict, writeSoakReport, type ProcessRecord, type SoakReport } from './lib/soak-report.js';

const posNum = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
};

interface Options {
  minutes: number;
  out: string;
  seed: number;
  tiers: string;
  tpo: boolean;
  realPps: number;
  fuzzPps: number;
  inner?: string;
}

const program = new Command()
  .name('soak')
  .description('relays on every tier and a TPO gateway pair under real and fuzz traffic; RSS, crashes, byte-exactness')
  .option('--minutes <n>', 'how long to run', posNum, 30)
  .option('--out <dir>', 'where the report goes', join(REPO_ROOT, 'bench/results'))
  .option('--seed <n>', 'fuzz seed', (v) => Number(v), 16_016)
  .option('--tiers <list>', 'relay tiers to soak', 'portable,batched,kernel')
  .option('--no-tpo', 'leave out the TPO gateway pair')
  .option('--real-pps <n>', 'real datagrams per second per relay', posNum, 1000)
  .option('--fuzz-pps <n>', 'hostile datagrams per second per relay', posNum, 300)
  .option('--inner <netns>', '(internal) run here: the namespace has been made (the outer netns id follows)');

async function main(): Promise<number> {
  program.parse(process.argv);
  const o = program.opts<Options>();
  if (!o.inner && !rootSkipReason()) {
    // As root: run the soak itself inside a namespace of its own.
    return withTopology({ namespaces: ['soak'] }, async (topo) => {
      const inner = topo.runNode('soak', 'bench/soak.ts', [...process.argv.slice(2), '--inner', readlinkSync('/proc/self/ns/net')]);
      inner.child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
      // On a signal the inner run stops its traffic and processes and writes what it measured;
      // the namespace goes when it has exited (the netns helper's own handlers would delete it at once).
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.removeAllListeners(sig);
        process.once(sig, () => inner.signal('SIGTERM'));
      }
      const e = await inner.waitExit((o.minutes * 60 + 600) * 1000);
      process.stdout.write(inner.stdout());
      return e.code ?? 1;
    });
  }
  return runSoak(o, o.inner !== undefined && inOtherNetns(o.inner));
}

/** Whether this process runs in another network namespace than `outer` (the kernel tier must never attach to the host's interfaces). */
function inOtherNetns(outer: string): boolean {
  try {
    return readlinkSync('/proc/self/ns/net') !== outer;
  } catch {
    return false;
  }
}

async function runSoak(o: Options, namespace: boolean): Promise<number> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const durationS = o.minutes * 60;
  // Node's heap and JIT settle in the first minutes; memory is judged from there on.
  const warmupSeconds = Math.round(Math.max(30, durationS * 0.2));
  const sampleEvery = Math.max(5, Math.round(durationS / 180));
  const capacity = Math.ceil(durationS * o.realPps * 1.2) + 100_000;
  const say = (s: string) => process.stderr.write(`soak ${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s: ${s}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-soak-'));
  const skipped: { what: string; why: string }[] = [];
  const relays: RelayTarget[] = [];
  let tpo: TpoTarget | undefined;
  let interrupted = false;
  let wake: () => void = () => {};
  const onSignal = () => {
    interrupted = true;
    // A Ctrl-C reaches the sluice processes too: their exits from now on are not crashes.
    for (const r of relays) r.proc.expectExit();
    if (tpo) for (const p of [tpo.a, tpo.b]) p.expectExit();
    say('interrupted: stopping and writing what was measured');
    wake();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  say(
    `${o.minutes} min; warm-up ${warmupSeconds} s; RSS every ${sampleEvery} s; ${namespace ? 'in a network namespace' : 'on the host loopback (not root: no kernel tier)'}`,
  );
  for (const tier of o.tiers
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (tier === 'kernel' && !namespace) {
      skipped.push({ what: 'relay kernel', why: 'needs root: it runs only in a network namespace the soak creates' });
      continue;
    }
    try {
      relays.push(await RelayTarget.start(tier, t0, { seed: o.seed + relays.length * 100, capacity }));
      say(`relay ${tier} up`);
    } catch (err) {
      skipped.push({ what: `relay ${tier}`, why: (err as Error).message.slice(0, 300) });
      say(`relay ${tier} not run: ${(err as Error).message.slice(0, 200)}`);
    }
  }
  if (o.tpo) {
    try {
      tpo = await TpoTarget.start(t0, dir, { seed: o.seed + 7000, capacity: Math.ceil(durationS * 300 * 1.2) + 100_000 });
      say('tpo pair up');
    } catch (err) {
      skipped.push({ what: 'tpo pair', why: (err as Error).message.slice(0, 300) });
      say(`tpo pair not run: ${(err as Error).message.slice(0, 200)}`);
    }
  }
  const procs: SoakProcess[] = [...relays.map((r) => r.proc), ...(tpo ? [tpo.a, tpo.b] : [])];
  for (const r of relays) r.run({ realPps: o.realPps, fuzzPps: o.fuzzPps });
  tpo?.run({ transferBytes: 4 << 20, udpPps: 300, fuzzEverySeconds: 15 });

  const self: ProcessRecord = { name: 'soak driver (not judged)', pid: process.pid, rss: [], stderrTail: [] };
  let lastProgress = 0;
  while (!interrupted && (performance.now() - t0) / 1000 < durationS) {
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, sampleEvery * 1000);
    });
    const t = (performance.now() - t0) / 1000;
    for (const p of procs) {
      const wasAlive = p.alive;
      p.sample();
      if (wasAlive && p.exit && !p.exit.expected) say(`${p.name} CRASHED: exit ${p.exit.code ?? p.exit.signal}: ${p.stderrTail.slice(-3).join(' | ')}`);
    }
    const kb = rssKb(process.pid);
    if (kb) self.rss.push({ t, kb });
    if (t - lastProgress >= 60) {
      lastProgress = t;
      say(procs.map((p) => `${p.name} ${p.alive ? `${((p.rss.at(-1)?.kb ?? 0) / 1024).toFixed(0)} MB` : 'DEAD'}`).join(', '));
    }
  }

  say('stopping: traffic first, then drain, then SIGTERM to every process');
  for (const r of relays) r.halt();
  await tpo?.halt();
  const relayResults: RelayResult[] = [];
  for (const r of relays) relayResults.push(await r.stop(3000, 20_000));
  let tpoResult: TpoResult | undefined;
  if (tpo) tpoResult = await tpo.stop(3000, 20_000);
  rmSync(dir, { recursive: true, force: true });

  const processes: ProcessRecord[] = procs.map((p) => ({
    name: p.name,
    pid: p.pid,
    rss: p.rss,
    ...(p.exit ? { exit: p.exit } : {}),
    stderrTail: p.stderrTail.slice(-20),
  }));
  const memory = processes.map((p) => memorySummary(p, warmupSeconds)).filter((m) => m !== undefined);
  const base = {
    startedAt,
    finishedAt: new Date().toISOString(),
    plannedMinutes: o.minutes,
    ranSeconds: Math.round((performance.now() - t0) / 1000),
    warmupSeconds,
    seed: o.seed,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, kernel: release(), node: process.version, namespace, driverRss: self.rss },
    interrupted,
    skipped,
    processes,
    memory,
    relays: relayResults,
    ...(tpoResult ? { tpo: tpoResult } : {}),
  };
  const report: SoakReport = { ...base, verdict: verdict(base) };
  const files = writeSoakReport(o.out, report);
  say(`${report.verdict.pass ? 'PASS' : 'FAIL'}; report: ${relative(process.cwd(), files.md)} (and .json)`);
  for (const f of report.verdict.failures) say(`  ${f}`);
  return report.verdict.pass ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
