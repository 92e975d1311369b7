/**
 * One trial: the generator sends at a fixed rate for a fixed time to the
 * relay; the sink counts what arrives. Counters are read before the
 * generator starts and DRAIN_MS after it exits.
 *
 *   loss      = 1 - delivered / (sent x fanout)
 *   cpuPct    = relay process CPU seconds in the sending window / its length
 *   cpuUsPerPkt = the same CPU microseconds / delivered packets
 *   corePct, coreUsPerPkt = the same for the busy time of the relay's
 *               CPU (/proc/stat, softirq included) over the whole trial:
 *               the relay host's cost, in-kernel work included (the
 *               primary CPU figure; see bench/README.md)
 *
 * (Counted datagrams include the drain; CPU is taken over the sending window
 * only, so a relay that burns CPU while idle is not charged for the
 * generator's start-up. An overloaded relay that drains a backlog after the
 * window is under-charged slightly; such trials fail anyway.)
 *
 * A trial whose generator reached less than GEN_LIMIT of the requested rate
 * is generator-limited: it is reported, and never counted as relay loss.
 */
import { CpuSampler, coreBusy, sampleCpu, softnet, type CpuSample } from './cpu.js';
import { datagrams, type Sink, type SinkCounts } from './sink.js';
import type { CoreClock } from './irq-clock.js';

type CoreSource = 'tracepoints' | 'cpuidle' | 'stat';

function coreNow(ctx: TrialContext): { busyS: number; softirqS: number; source: CoreSource } {
  if (!ctx.coreClock) return coreBusy(RELAY_CPU);
  const c = ctx.coreClock.busyS(RELAY_CPU);
  return { busyS: c.busyS, softirqS: c.idleSoftirqS, source: 'tracepoints' };
}
import { GEN_ADDR, GEN_CPU, RELAY_ADDR, RELAY_CPU, boundUdpPortsOf, spawnPinned, udpSnmpOf, type BenchTopology } from './topology.js';

export const LOSS_LIMIT = 0.001;
export const GEN_LIMIT = 0.97;
const DRAIN_MS = 200;

export type Pattern = 'smooth' | 'bursty';

export interface TrialSpec {
  size: number;
  /** Input datagrams per second. */
  rate: number;
  seconds: number;
  pattern: Pattern;
  burst: number;
  fanout: number;
  /** Source ports the generator sends from, taking turns (default 1; the workers suite). */
  sources?: number;
}

export interface TrialResult {
  rate: number;
  sent: number;
  genErrors: number;
  genElapsedS: number;
  achievedPps: number;
  genLimited: boolean;
  /** Datagrams counted at the sink (from bytes: see sink.ts). */
  delivered: number;
  /** Packets the sink rule saw: fewer than delivered when the relay sends GSO buffers. */
  sinkPackets: number;
  expected: number;
  loss: number;
  /** Delivered datagrams per second of sending time. */
  deliveredPps: number;
  /** UDP datagrams at the sink outside the subscriber ports. */
  stray: number;
  /** Relay CPU seconds during the generator's sending window (schedstat, sampled every 25 ms). */
  relayCpuS: number;
  /** Relay CPU seconds over the whole trial window (start-up and drain included), schedstat and utime+stime. */
  relayCpuWindowS: number;
  relayCpuStatS: number;
  cpuPct: number;
  cpuUsPerPkt: number;
  /** Everything the relay's core did (incl. softirq), per delivered packet. */
  coreUsPerPkt: number;
  /** The relay core's busy time over the trial / the sending time, %. */
  corePct: number;
  /** How core busy time was measured (see cpu.ts coreBusy). */
  coreSource: CoreSource;
  coreSoftirqS: number;
  /** Relay namespace UDP counters (deltas). */
  relayRcvbufErrors: number;
  relaySndbufErrors: number;
  relayInErrors: number;
  /** Host-wide backlog-queue drops and softirq budget squeezes (deltas). */
  backlogDrops: number;
  /** The same per CPU (which CPU's queue overflowed). */
  backlogDropsByCpu: number[];
  softirqSqueezes: number;
  wallS: number;
  pass: boolean;
}

export interface TrialContext {
  topo: BenchTopology;
  sink: Sink;
  generator: string;
  listenPort: number;
  relayPids: readonly number[];
  /** Exact busy time of the relay's core (irq-clock.ts); coreBusy()'s estimate when absent. */
  coreClock?: CoreClock | undefined;
}

interface Snapshot {
  sink: SinkCounts;
  snmp: Record<string, number>;
  cpu: CpuSample;
  core: { busyS: number; softirqS: number; source: CoreSource };
  softnet: { dropped: number; squeezed: number; droppedByCpu: number[] };
  t: number;
}

/**
 * CPU is sampled at the inner edges of the trial (last before the generator
 * starts, first after the drain), so the helper processes that
 * read the other counters fall outside the CPU window.
 */
async function snapshot(ctx: TrialContext, edge: 'start' | 'end'): Promise<Snapshot> {
  const cpuNow = (): Pick<Snapshot, 'cpu' | 'core' | 'softnet' | 't'> => ({
    cpu: sampleCpu(ctx.relayPids),
    core: coreNow(ctx),
    softnet: softnet(),
    t: performance.now(),
  });
  const early = edge === 'end' ? cpuNow() : undefined;
  const sink = await ctx.sink.read();
  const snmp = udpSnmpOf(ctx.relayPids[0]!);
  return { sink, snmp, ...(early ?? cpuNow()) };
}

/**
 * Wait (bounded) until the previous trial's datagrams are gone from the
 * relay's listen socket. (Datagrams inside a relay's own queues had the
 * previous trial's drain time to leave.)
 */
async function settle(ctx: TrialContext): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (Date.now() < deadline && (boundUdpPortsOf(ctx.relayPids[0]!).get(ctx.listenPort)?.rxQueue ?? 0) > 0) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface GenOutput {
  sent: number;
  errors: number;
  elapsedS: number;
  achievedPps: number;
}

/** The bench's generator on its core, sending from GEN_ADDR to the relay's listen port. */
export function spawnGenerator(
  ctx: { topo: TrialContext['topo']; generator: string; listenPort: number },
  o: { size: number; rate: number; seconds: number; pattern: string; burst: number; sources?: number },
) {
  return spawnPinned(ctx.topo, 'gen', GEN_CPU, process.execPath, [
    ...['--import', 'tsx', ctx.generator, '--to', `${RELAY_ADDR}:${ctx.listenPort}`],
    ...['--size', String(o.size), '--rate', String(o.rate), '--duration', String(o.seconds)],
    ...['--pattern', o.pattern, '--burst', String(o.burst), '--bind', GEN_ADDR],
    ...(o.sources && o.sources > 1 ? ['--sources', String(o.sources)] : []),
  ]);
}

export async function runTrial(ctx: TrialContext, spec: TrialSpec): Promise<TrialResult> {
  await settle(ctx);
  const before = await snapshot(ctx, 'start');
  const gen = spawnGenerator(ctx, {
    size: spec.size,
    rate: Math.round(spec.rate),
    seconds: spec.seconds,
    pattern: spec.pattern,
    burst: spec.burst,
    sources: spec.sources,
  });
  const sampler = new CpuSampler(ctx.relayPids);
  sampler.start();
  let info;
  let genExit: number;
  try {
    info = await gen.waitExit(spec.seconds * 1000 + 20_000);
    genExit = performance.now();
  } catch (err) {
    sampler.stop();
    await gen.stop(1_000);
    throw err;
  }
  const line = [...gen.stdoutLines].reverse().find((l) => l.trim().startsWith('{'));
  if (info.code !== 0 || !line) throw new Error(`generator failed (code ${info.code}, signal ${info.signal}): ${gen.stderr().slice(-800)}`);
  const out = JSON.parse(line) as GenOutput;
  await new Promise((r) => setTimeout(r, DRAIN_MS));
  sampler.stop();
  const after = await snapshot(ctx, 'end');

  const delivered = datagrams(before.sink, after.sink, spec.size);
  const sinkPackets = after.sink.subscribers - before.sink.subscribers;
  const expected = out.sent * spec.fanout;
  const loss = expected > 0 ? 1 - delivered / expected : 1;
  const windowCpuS =
    after.cpu.schedS !== undefined && before.cpu.schedS !== undefined ? after.cpu.schedS - before.cpu.schedS : after.cpu.statS - before.cpu.statS;
  const sendS = Math.max(out.elapsedS, 1e-3);
  // The sending window ends when the generator exits (it exits right after its last send).
  const cpuS = sampler.between(genExit - sendS * 1000, genExit) ?? windowCpuS;
  const genLimited = out.achievedPps < GEN_LIMIT * spec.rate;
  return {
    rate: Math.round(spec.rate),
    sent: out.sent,
    genErrors: out.errors,
    genElapsedS: out.elapsedS,
    achievedPps: out.achievedPps,
    genLimited,
    delivered,
    sinkPackets,
    expected,
    loss,
    deliveredPps: delivered / sendS,
    stray: after.sink.other - before.sink.other,
    relayCpuS: cpuS,
    relayCpuWindowS: windowCpuS,
    relayCpuStatS: after.cpu.statS - before.cpu.statS,
    cpuPct: (100 * cpuS) / sendS,
    cpuUsPerPkt: delivered > 0 ? (cpuS * 1e6) / delivered : NaN,
    coreUsPerPkt: delivered > 0 ? ((after.core.busyS - before.core.busyS) * 1e6) / delivered : NaN,
    corePct: (100 * (after.core.busyS - before.core.busyS)) / sendS,
    coreSource: after.core.source,
    coreSoftirqS: after.core.softirqS - before.core.softirqS,
    relayRcvbufErrors: (after.snmp.RcvbufErrors ?? 0) - (before.snmp.RcvbufErrors ?? 0),
    relaySndbufErrors: (after.snmp.SndbufErrors ?? 0) - (before.snmp.SndbufErrors ?? 0),
    relayInErrors: (after.snmp.InErrors ?? 0) - (before.snmp.InErrors ?? 0),
    backlogDrops: after.softnet.dropped - before.softnet.dropped,
    backlogDropsByCpu: after.softnet.droppedByCpu.map((d, i) => d - (before.softnet.droppedByCpu[i] ?? 0)),
    softirqSqueezes: after.softnet.squeezed - before.softnet.squeezed,
    wallS: (after.t - before.t) / 1000,
    pass: !genLimited && loss <= LOSS_LIMIT,
  };
}
