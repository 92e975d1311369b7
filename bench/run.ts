/* eslint-disable max-lines -- the bench entry: every option, the machine header and the suites in run order; each suite itself lives in bench/lib */
/**
 * Sluice benchmark harness: `npm run bench [-- options]`, as root.
 * See bench/README.md for what it measures and how.
 */
import { Command, InvalidArgumentError } from 'commander';
import { execFileSync } from 'node:child_process';
import { machineInfo } from './lib/machine.js';
import { hostname } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rootSkipReason } from '../harness/netns/netns.js';
import { REALISTIC_PPS, allCases, type BenchCase } from './lib/cases.js';
import { ensureInstalled, type Requirement } from './lib/install.js';
import { ALL_PEERS, DEFAULT_PEERS, type Peer, type RunningRelay } from './lib/peers.js';
import { writeResults, type CaseRecord, type PeerInfo, type RunInfo } from './lib/report.js';
import { searchMaxLossless, type SearchResult } from './lib/search.js';
import { Sink } from './lib/sink.js';
import { CoreClock } from './lib/irq-clock.js';
import { SENDER_WAYS, runSenderTrial, setOutputSegmentation, type SenderTrial } from './lib/sender-suite.js';
import { PACING_ENGINES, PACING_RATES, runPacingTrial, type PacingTrial } from './lib/pacing-suite.js';
import { TPO_IOS, TPO_LOSSES, runTpoBulk, runTpoChatty, runTpoCompression, type TpoResults } from './lib/tpo-suite.js';
import { TPO_WAN_VARIANTS, planTpoWan, runTpoWanSuite } from './lib/tpo-wan-suite.js';
import { profileIds } from './lib/tpo-wan-profiles.js';
import { runWorkersSuite } from './lib/workers-suite.js';
import { runMediaSuite } from './lib/media-suite.js';
import { runTcpSuite } from './lib/tcp-suite.js';
import { runXdpBench } from './lib/xdp-report.js';
import { runFanoutSuite } from './lib/fanout-suite.js';
import { runClusterSuite } from './cluster.js';
import { SERVICE_TIERS, emptyServiceResults, runScrapeCapacity, runScrapeTimes, runSubscribeLatency } from './lib/service-suite.js';

/** Sender suite: datagram size and destinations (small datagrams: per-packet costs dominate). */
/** Suites that build their own setup and write their own result files (not in the default set). */
const STANDALONE_SUITES = new Set(['media', 'tcp', 'workers', 'xdp', 'fanout']);
const SENDER_DESTS = 10;
import { runTrial, type Pattern, type TrialContext, type TrialResult } from './lib/trial.js';
import { BENCH_BACKLOG, GEN_CPU, createBenchTopology, raiseBacklog, type BenchTopology } from './lib/topology.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const LISTEN_PORT = 30000;
const FIRST_SUBSCRIBER_PORT = 40000;

const posInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
};
const posNum = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
};

interface Options {
  quick?: boolean;
  only?: string;
  peers: string;
  repeats?: number;
  trialSeconds?: number;
  wanSeconds?: number;
  wanVariants?: string;
  profiles?: string;
  cpuSeconds?: number;
  cpuBursty?: boolean;
  burst: number;
  maxDelivered: number;
  generator: string;
  out: string;
  install: boolean;
  inputGso?: boolean;
  segmentOutput?: boolean;
  steer?: boolean;
  suites?: string;
  backlog?: number;
}

const program = new Command('bench')
  .description('Relay benchmarks in network namespaces: Sluice tiers against socat, nginx and GStreamer (run as root)')
  .option(
    '--quick',
    'smoke run (~6 min): 1 repeat, 1 s trials, 20 % search precision, no bursty 200 B max-rate case; tpo-wan: shorter transfers, fewer losses (~7 min)',
  )
  .option('--only <regex>', 'run only cases whose id matches, e.g. "max-1to100" or "1316B-smooth" (ids: cpu|max-1to{1,10,100}-{1316,200}B-{smooth,bursty})')
  .option('--peers <list>', `comma list of peers (${ALL_PEERS.map((p) => p.name).join(', ')})`, DEFAULT_PEERS.join(','))
  .option('--repeats <n>', 'repeats of every case, peers interleaved (default 3, quick 1)', posInt)
  .option('--trial-seconds <s>', 'sending time of one max-rate search trial (default 1.5, quick 1)', posNum)
  .option('--cpu-seconds <s>', 'sending time of one realistic-stream trial (default 3, quick 1)', posNum)
  .option('--cpu-bursty', 'also run the realistic-stream cases with bursty input (default: smooth only)')
  .option('--burst <n>', 'datagrams per burst for bursty input', posInt, 16)
  .option('--max-delivered <pps>', 'cap of a search: input x subscribers <= this', posNum, 1_500_000)
  .option('--generator <path>', 'generator script (same CLI as bench/tools/udp-gen.ts)', 'bench/tools/udp-gen.ts')
  .option('--out <dir>', 'output directory', 'bench/results')
  .option('--input-gso', "let the generator's GSO buffers reach the relay unsegmented (default: one packet per datagram, as from a wire)")
  .option(
    '--no-segment-output',
    "let the relay's GSO sends cross the veth whole (like a NIC with UDP segmentation offload); default: segmented on the relay's CPU, the conservative case",
  )
  .option('--no-steer', "no receive packet steering: a veth's receive work then runs on the sending CPU (see bench/README.md, topology)")
  .option(
    '--suites <list>',
    'relay, sender (one-shot sends, issue #5), tpo (the TPO data mover, issue #6), tpo-wan (TCP across the IP-level WAN emulator: direct CUBIC/BBR, kcptun, Sluice; issue #7), service (the metrics scrape: its time, and capacity with a scrape a second; issue 19), media (monitoring cost, playout accuracy, late-join first picture; issue 20, not in the default), cluster (failover, flow write -> first packet, etcd traffic per change in the cluster lab; issue 21, not in the default, also `node --import tsx bench/cluster.ts`), tcp (tcp-redirect vs nginx stream, HAProxy, socat: throughput per core, added latency; issue 22, not in the default), workers (batched tier replicate 1->100 lossless capacity with 1 and 2 workers, one source and 8 sources; issue 22, not in the default), xdp (kernel tier redirect at XDP vs tcx, and the backlog case; issue 22, not in the default), fanout (a live stream to N TCP clients: sluice fanout vs GStreamer tcpserversink vs naive Node; issue 22, not in the default); default the first five, or relay alone with --only',
  )
  .option('--wan-seconds <s>', 'tpo-wan: bulk transfer time per trial on every emulated profile (default per profile: 20 and 10 s, quick 10 and 6 s)', posNum)
  .option('--profiles <list>', `tpo-wan: which paths (${profileIds().join(', ')}); default all`)
  .option('--wan-variants <list>', `tpo-wan: which paths (${TPO_WAN_VARIANTS.join(', ')}); default all`)
  .option(
    '--backlog <n>',
    `net.core.netdev_max_backlog while the bench runs, restored after (default: at least ${BENCH_BACKLOG}); e.g. 1000, the kernel default, with --peers kernel,kernel-tuned (issue 22 part 4)`,
    posInt,
  )
  .option('--no-install', 'do not apt-get install missing peers (they are reported unavailable)')
  .parse();

const o = program.opts<Options>();
const quick = !!o.quick;
const repeats = o.repeats ?? (quick ? 1 : 3);
const trialSeconds = o.trialSeconds ?? (quick ? 1 : 1.5);
const cpuSeconds = o.cpuSeconds ?? (quick ? 1 : 3);
const precision = quick ? 0.2 : 0.05;
const only = o.only ? new RegExp(o.only) : undefined;
const outDir = isAbsolute(o.out) ? o.out : join(REPO_ROOT, o.out);
const generator = isAbsolute(o.generator) ? o.generator : join(REPO_ROOT, o.generator);

const t0 = Date.now();
function log(msg: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stdout.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

function stampOf(d: Date): string {
  const host =
    hostname()
      .split('.')[0]!
      .replace(/[^a-zA-Z0-9-]/g, '')
      .slice(0, 24) || 'run';
  return `${d.toISOString().slice(0, 16).replace(/:/g, '')}-${host}`;
}

function fmtPps(v: number): string {
  return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : v.toFixed(0);
}

function trialMark(t: TrialResult): string {
  return `${fmtPps(t.rate)}${t.genLimited ? '~' : t.pass ? '✓' : '✗'}`;
}

/** Hint for a search: this peer's earlier result in the same scenario, nearest case first. */
function hintFor(results: readonly CaseRecord[], peer: string, c: BenchCase): number | undefined {
  const mine = results.filter((r) => r.peer === peer && r.mode === 'max' && r.fanout === c.fanout && r.search && r.search.maxInputPps > 0);
  const pick =
    [...mine].reverse().find((r) => r.size === c.size && r.pattern === c.pattern) ??
    [...mine].reverse().find((r) => r.size === c.size) ??
    [...mine].reverse()[0];
  return pick?.search?.maxInputPps;
}

async function runCase(ctx: TrialContext, c: BenchCase, peer: string, hint: number | undefined): Promise<{ search?: SearchResult; trial?: TrialResult }> {
  const spec = { size: c.size, pattern: c.pattern as Pattern, burst: o.burst, fanout: c.fanout };
  if (c.mode === 'cpu') {
    const trial = await runTrial(ctx, { ...spec, rate: REALISTIC_PPS, seconds: cpuSeconds });
    log(
      `  ${c.id} ${peer}: host ${trial.coreUsPerPkt.toFixed(2)} µs/pkt (CPU 0 ${trial.corePct.toFixed(1)} %), process ${trial.cpuUsPerPkt.toFixed(2)} µs/pkt, loss ${(trial.loss * 100).toFixed(3)} %${trial.genLimited ? ' (generator-limited)' : ''}`,
    );
    return { trial };
  }
  const search = await searchMaxLossless(
    {
      fanout: c.fanout,
      start: Math.max(250, Math.round(50_000 / c.fanout)),
      ...(hint ? { hint } : {}),
      precision,
      maxDeliveredPps: o.maxDelivered,
      minRate: 100,
      maxTrials: quick ? 10 : 16,
    },
    (rate) => runTrial(ctx, { ...spec, rate, seconds: trialSeconds }),
  );
  const flags = `${search.generatorLimited ? ' GENERATOR-LIMITED (lower bound)' : ''}${search.capped ? ' (cap)' : ''}`;
  log(
    `  ${c.id} ${peer}: ${fmtPps(search.deliveredPps)} pps delivered at ${fmtPps(search.maxInputPps)} in${flags} [${search.trials.map(trialMark).join(' ')}]`,
  );
  return { search };
}

async function main(): Promise<number> {
  const skip = rootSkipReason();
  if (skip) {
    process.stderr.write(`bench: cannot run: ${skip}\n`);
    return 2;
  }
  const wanted = o.peers
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((w) => !ALL_PEERS.some((p) => p.name === w));
  if (unknown.length) {
    process.stderr.write(`bench: unknown peer(s) ${unknown.join(', ')} (have ${ALL_PEERS.map((p) => p.name).join(', ')})\n`);
    return 2;
  }
  const peers = ALL_PEERS.filter((p) => wanted.includes(p.name));
  const suites = new Set((o.suites ?? (o.only ? 'relay' : 'relay,sender,tpo,tpo-wan,service')).split(',').map((x) => x.trim()));
  const cases = (suites.has('relay') ? allCases(o.cpuBursty ? ['smooth', 'bursty'] : ['smooth']) : [])
    .filter((c) => !only || only.test(c.id))
    .filter((c) => !quick || o.only || c.id !== `max-1to${c.fanout}-200B-bursty`);
  if (suites.has('relay') && cases.length === 0) {
    process.stderr.write(`bench: --only ${o.only} matches no case\n`);
    return 2;
  }

  // Tools: each external peer needs its packages (the sink needs none: it is eBPF, see lib/sink.ts).
  const reqs: Requirement[] = peers.flatMap((p) => (p.requirement ? [p.requirement] : []));
  const missing = o.install ? ensureInstalled(reqs, log) : new Map(reqs.filter((r) => !r.present()).map((r) => [r.what, 'not installed (--no-install)']));
  const peerInfo = new Map<string, PeerInfo>(
    peers.map((p) => {
      const why = p.requirement && missing.get(p.requirement.what);
      return [p.name, { name: p.name, description: p.description, version: why ? '' : p.version(), ...(why ? { unavailable: why } : {}) }];
    }),
  );

  const started = new Date();
  const stamp = stampOf(started);
  const records: CaseRecord[] = [];
  const senderTrials: SenderTrial[] = [];
  const pacingTrials: PacingTrial[] = [];
  const tpo: TpoResults = { bulk: [], chatty: [], compression: [] };
  const service = emptyServiceResults();
  const wan = planTpoWan({ ...o, quick });
  if ('error' in wan) {
    process.stderr.write(`bench: ${wan.error}\n`);
    return 2;
  }
  const tpoWan = wan.results;
  const machine = machineInfo();
  const options = {
    quick,
    repeats,
    trialSeconds,
    cpuSeconds,
    precision,
    burst: o.burst,
    maxDelivered: o.maxDelivered,
    generator: relative(REPO_ROOT, generator),
    inputGso: !!o.inputGso,
    segmentOutput: !!o.segmentOutput,
    steer: o.steer !== false,
    only: o.only ?? '',
    peers: peers.map((p) => p.name),
    /** How the relay core's busy time was measured (bench/lib/irq-clock.ts). */
    coreClock: 'estimate' as 'tracepoints' | 'estimate',
    /** net.core.netdev_max_backlog during the relay suite (--backlog). */
    netdevMaxBacklog: 0,
  };
  let complete = false;
  const save = (): { json: string; md: string } => {
    const info: RunInfo = {
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      durationS: (Date.now() - t0) / 1000,
      complete,
      options,
      machine,
      peers: [...peerInfo.values()],
    };
    return writeResults(
      outDir,
      stamp,
      info,
      records,
      peers.map((p) => p.name),
      senderTrials,
      pacingTrials,
      tpo,
      tpoWan,
      service,
    );
  };
  process.once('SIGINT', () => {
    log('interrupted: writing partial results, removing namespaces');
    try {
      save();
    } finally {
      process.exit(130);
    }
  });

  if (suites.has('media')) {
    // Loopback only, no namespaces: before the harness pins itself to one CPU. At least 2 repeats (ratios need a spread).
    const files = await runMediaSuite({ quick, repeats: Math.max(2, repeats), outDir, log });
    log(`media: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
  }
  if (suites.has('tcp')) {
    // Loopback, its own CPU pinning (proxy on one CPU, load on the other): before the harness pins itself. At least 2 repeats.
    const files = await runTcpSuite({ quick, repeats: Math.max(2, repeats), install: o.install, outDir, log });
    log(`tcp: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
  }
  if (suites.has('workers')) {
    // Its own namespaces, before the harness pins itself to one CPU: the relay's workers use both cores (lib/workers-suite.ts).
    const files = await runWorkersSuite({ quick, repeats: Math.max(2, repeats), outDir, generator, maxDeliveredPps: o.maxDelivered, log });
    log(`workers: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
  }
  if (suites.has('xdp')) {
    // Its own namespaces and CPU placement (bench/lib/xdp-suite.ts), before the harness pins itself.
    const files = await runXdpBench({ quick, repeats, outDir, log, install: o.install });
    if (files.md) log(`xdp: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json!)}`);
  }
  if (suites.has('fanout')) {
    // Loopback only, like media: before the harness pins itself to one CPU.
    const files = await runFanoutSuite({ quick, repeats: Math.max(2, repeats), outDir, log, install: o.install });
    log(`fanout: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
  }
  // The suites above write their own result files; asked for alone (or with cluster), nothing else runs.
  if ([...suites].every((x) => STANDALONE_SUITES.has(x))) return 0;
  if (suites.has('cluster')) {
    // Its own lab of namespaces, before the harness pins itself (and so every node of the lab) to one CPU.
    const r = await runClusterSuite({ quick, outDir, log });
    if ([...suites].every((x) => x === 'cluster' || STANDALONE_SUITES.has(x))) return 'complete' in r && !r.complete ? 1 : 0;
  }
  if (suites.has('tpo-wan')) {
    // First, before the harness pins itself (and so every child) to one
    // CPU: the emulator, the endpoints and the tunnels share both cores as
    // they would on a gateway host, and nothing else of the bench exists yet.
    await runTpoWanSuite({ ...wan, repeats, install: o.install, log, onTrial: () => save() }, tpoWan);
    save();
    if (![...suites].some((x) => x !== 'tpo-wan')) {
      complete = true;
      const files = save();
      log(`done in ${((Date.now() - t0) / 60000).toFixed(1)} min: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}`);
      return 0;
    }
  }

  // The harness and the helpers it runs (ip, the sink's counter) stay off the relay's CPU.
  execFileSync('taskset', ['-a', '-p', '-c', String(GEN_CPU), String(process.pid)], { stdio: 'ignore' });
  log(`${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, node ${machine.node}`);
  log(`${cases.length} case(s) x ${peers.length} peer(s), ${repeats} repeat(s); generator ${relative(REPO_ROOT, generator)}`);
  const backlog = raiseBacklog(o.backlog);
  const backlogNow = o.backlog ?? Math.max(backlog.before, BENCH_BACKLOG);
  if (backlog.before !== backlogNow) log(`net.core.netdev_max_backlog ${backlog.before} -> ${backlogNow} while the bench runs (see bench/README.md)`);
  options.netdevMaxBacklog = backlogNow;
  const topo: BenchTopology = await createBenchTopology({ inputGso: !!o.inputGso, segmentOutput: !!o.segmentOutput, steer: o.steer !== false });
  let sink: Sink | undefined;
  let coreClock: CoreClock | undefined;
  try {
    coreClock = CoreClock.open();
  } catch (err) {
    log(
      `exact core clock unavailable (${(err as Error).message.split('\n')[0]}); relay host CPU falls back to cpuidle or /proc/stat, which miss softirq work in idle (see bench/README.md)`,
    );
  }
  options.coreClock = coreClock ? 'tracepoints' : 'estimate';
  try {
    sink = await Sink.create(topo);
    for (let repeat = 1; repeat <= repeats; repeat++) {
      for (const fanout of [...new Set(cases.map((c) => c.fanout))]) {
        const mine = cases.filter((c) => c.fanout === fanout);
        for (const peer of peers) {
          if (!peer.supports(fanout) || peerInfo.get(peer.name)!.unavailable) continue;
          log(`repeat ${repeat}/${repeats}, 1→${fanout}, ${peer.name}`);
          const relay = await startRelay(topo, peer, fanout, peerInfo);
          if (typeof relay === 'string') {
            for (const c of mine) {
              records.push({
                repeat,
                peer: peer.name,
                caseId: c.id,
                mode: c.mode,
                fanout: c.fanout,
                size: c.size,
                pattern: c.pattern,
                error: `relay did not start: ${relay}`,
              });
            }
            continue;
          }
          if (!relay) continue;
          try {
            await sink.setPorts(FIRST_SUBSCRIBER_PORT, fanout);
            const ctx: TrialContext = { topo, sink, generator, listenPort: LISTEN_PORT, relayPids: relay.pids, coreClock };
            for (const c of mine) {
              const base = { repeat, peer: peer.name, caseId: c.id, mode: c.mode, fanout: c.fanout, size: c.size, pattern: c.pattern };
              try {
                records.push({ ...base, ...(await runCase(ctx, c, peer.name, hintFor(records, peer.name, c))) });
              } catch (err) {
                log(`  ${c.id} ${peer.name}: ERROR ${(err as Error).message.split('\n')[0]}`);
                records.push({ ...base, error: (err as Error).message.slice(0, 2000) });
              }
            }
          } finally {
            await relay.stop();
          }
        }
      }
      save();
    }
    if (suites.has('sender')) {
      const count = quick ? 200_000 : 400_000;
      await sink.setPorts(FIRST_SUBSCRIBER_PORT, SENDER_DESTS);
      // With --no-segment-output every GSO buffer crosses whole anyway: the NIC variants would repeat the others.
      const ways = SENDER_WAYS.filter((w) => !w.nicSegments || options.segmentOutput);
      for (let repeat = 1; repeat <= repeats; repeat++) {
        for (const way of ways) {
          try {
            if (way.nicSegments) await setOutputSegmentation(topo, true);
            const t = await runSenderTrial(
              { topo, sink, coreClock },
              {
                way: way.id,
                mode: way.mode,
                nicSegments: way.nicSegments,
                repeat,
                count,
                size: way.size,
                dests: SENDER_DESTS,
                firstPort: FIRST_SUBSCRIBER_PORT,
              },
            );
            senderTrials.push(t);
            log(
              `  sender ${way.id}: ${(t.packetsPerCpuS / 1e3).toFixed(0)} k packets per CPU-second, ${t.syscallsPerPacket.toFixed(3)} send syscalls per packet, longest run ${t.longestRun}, ${t.delivered}/${t.count} delivered`,
            );
          } catch (err) {
            log(`  sender ${way.id}: ERROR ${(err as Error).message.split('\n')[0]}`);
          } finally {
            if (way.nicSegments) await setOutputSegmentation(topo, false);
          }
        }
        for (const rate of PACING_RATES) {
          for (const engine of PACING_ENGINES) {
            try {
              const t = await runPacingTrial(topo, { engine, rate, repeat, durationS: 1, size: 200, dests: SENDER_DESTS, firstPort: FIRST_SUBSCRIBER_PORT });
              pacingTrials.push(t);
              log(
                `  pacing ${engine} at ${rate}/s: lateness p50 ${(t.lateness.p50 * 1000).toFixed(1)} µs, p99 ${(t.lateness.p99 * 1000).toFixed(1)} µs, ${t.sent}/${t.count} sent`,
              );
            } catch (err) {
              log(`  pacing ${engine} at ${rate}/s: ERROR ${(err as Error).message.split('\n')[0]}`);
            }
          }
        }
        save();
      }
    }
    if (suites.has('tpo')) {
      tpo.compression = runTpoCompression();
      for (const c of tpo.compression) log(`  tpo compression ${c.corpus}: ${c.ratio.toFixed(4)} of raw`);
      for (let repeat = 1; repeat <= repeats; repeat++) {
        // Both I/O kinds in the same run, interleaved, so the CPU ratio is not a comparison across runs.
        for (const loss of TPO_LOSSES)
          for (const io of TPO_IOS) {
            try {
              const t = runTpoBulk(repeat, loss, 100, io);
              tpo.bulk.push(t);
              log(
                `  tpo bulk (${io} I/O) at ${loss * 100} % loss: ${t.goodputMbit.toFixed(1)} Mbit/s (${(t.ofLink * 100).toFixed(0)} % of 50; ${(t.steadyOfLink * 100).toFixed(0)} % after 2 s; established session ${t.established ? (t.established.ofLink * 100).toFixed(0) : '–'} %), wire ${t.wirePerDelivered.toFixed(3)}x delivered, ${t.cpuSPerMB.toFixed(4)} CPU s/MB`,
              );
            } catch (err) {
              log(`  tpo bulk (${io} I/O) at ${loss * 100} % loss: ERROR ${(err as Error).message.split('\n')[0]}`);
            }
          }
        for (const compression of ['auto', 'none'] as const) {
          try {
            const c = runTpoChatty(repeat, compression);
            tpo.chatty.push(c);
            log(`  tpo chatty, compression ${compression}: ${c.datagramsPerMessage.toFixed(4)} datagrams per 100-byte message`);
          } catch (err) {
            log(`  tpo chatty, compression ${compression}: ERROR ${(err as Error).message.split('\n')[0]}`);
          }
        }
        save();
      }
    }
    if (suites.has('service')) {
      await sink.setPorts(FIRST_SUBSCRIBER_PORT, 100);
      const ctx = {
        topo,
        trial: { topo, sink, generator, listenPort: LISTEN_PORT, coreClock },
        repeats,
        quick,
        trialSeconds,
        listenPort: LISTEN_PORT,
        firstSubscriberPort: FIRST_SUBSCRIBER_PORT,
        tiers: SERVICE_TIERS.filter((t) => peers.some((p) => p.name === t)),
        log,
        onProgress: () => void save(),
      };
      await runScrapeTimes(ctx, service);
      await runScrapeCapacity(ctx, service);
      await runSubscribeLatency({ ...ctx, generator }, service);
      save();
    }
    complete = true;
  } finally {
    coreClock?.close();
    await sink?.close();
    await topo.destroy();
  }
  const files = save();
  log(
    `done in ${((Date.now() - t0) / 60000).toFixed(1)} min: ${relative(process.cwd(), files.md)}, ${relative(process.cwd(), files.json)}, ${relative(process.cwd(), join(outDir, 'latest.md'))}`,
  );
  return 0;
}

/** The running relay; undefined if the peer is unavailable here; the error message if it failed to start. */
async function startRelay(topo: BenchTopology, peer: Peer, fanout: number, info: Map<string, PeerInfo>): Promise<RunningRelay | string | undefined> {
  const ports = Array.from({ length: fanout }, (_, i) => FIRST_SUBSCRIBER_PORT + i);
  try {
    const r = await peer.start({ topo, listenPort: LISTEN_PORT, ports });
    if ('unavailable' in r) {
      log(`  ${peer.name} unavailable: ${r.unavailable}`);
      info.get(peer.name)!.unavailable = r.unavailable;
      return undefined;
    }
    return r.running;
  } catch (err) {
    log(`  ${peer.name} failed to start: ${(err as Error).message.split('\n')[0]}`);
    return (err as Error).message.slice(0, 2000);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
