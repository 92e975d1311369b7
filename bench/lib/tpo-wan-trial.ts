/**
 * One tpo-wan trial: a bulk transfer client → server across one profile's
 * path by one variant, with 100-byte request/response exchanges on a
 * second connection at the same time, and the CPU the transfer cost.
 *
 * Emulated WAN: a fresh emulator (its counters are the trial's), a bulk
 * transfer for the profile's seconds (bounded in bytes too), goodput from
 * the server's 1 s bins. Loopback: no emulator; a fixed-size transfer,
 * ended in order and timed until the server closed (bounded in time),
 * request/response counted only while it runs.
 *
 * CPU (user + system from /proc/<pid>/stat, from just before the measured
 * transfer until the server saw it close): the tunnel's processes (kcptun
 * client and server, or both Sluice gateways; none for direct TCP, which
 * the kernel forwards), and the endpoints (the sender's own count and the
 * server's sink). Softirq work outside these processes' system calls (the
 * veths' receive paths, forwarding) is in nobody's count; the host's busy
 * share is recorded beside it.
 */
import type { IpWanStats } from '../../harness/wan/ip-emulator.js';
import { diffLane, lateFraction } from '../../harness/wan/ip-emulator.js';
import type { NsProcess } from '../../harness/netns/netns.js';
import type { WanEmulatorProcess, WanTopology } from '../../harness/wan/topology.js';
import { hostJiffies, processSeconds, threadDiff, threadSeconds } from './cpu.js';
import { SINK_PORT, ccOf, setupPath, type PathSetup, type Place, type TpoWanVariant } from './tpo-wan-paths.js';
import type { TpoWanProfile } from './tpo-wan-profiles.js';

const LOAD = 'harness/traffic/wan-load.ts';
/** sluice-cubic-established: the transfer the session carries before the measured one. */
const WARMUP_S = 3;

export interface TpoWanTrial {
  profile: string;
  repeat: number;
  loss: number;
  variant: TpoWanVariant;
  /** Congestion control of the bulk connection as the kernel reported it (the client's leg for tunnels). */
  cc?: string;
  goodputMbit?: number;
  /** Goodput after the profile's first seconds (emulated WAN only). */
  steadyMbit?: number;
  deliveredBytes?: number;
  /** Loopback: the fixed transfer's time, and whether all of it arrived within the bound. */
  seconds?: number;
  completed?: boolean;
  /** Request/response latency under the bulk load, ms. */
  rr?: { n: number; p50: number; p90: number; p99: number; max: number };
  /** IP bytes offered to the WAN client→server per delivered byte; and both directions together. */
  wirePerDelivered?: number;
  wireBothPerDelivered?: number;
  cpu?: TrialCpu;
  emulator?: {
    dropLoss: number;
    dropQueue: number;
    kernelDrops: number;
    oversize: number;
    latenessMeanMs: number;
    latenessMaxMs: number;
    /** How the emulator's forwarding thread was scheduled (SCHED_FIFO when allowed). */
    scheduling?: string;
    /** Share of frames released more than 1 ms after their due time (both directions). */
    lateOver1ms: number;
  };
  /** The variant could not run here (tool missing, hook absent): no numbers, not an error. */
  unavailable?: string;
  error?: string;
}

export interface TrialCpu {
  /** CPU seconds of the tunnel's processes; undefined for direct TCP (the kernel forwards). */
  tunnelS?: number;
  /** CPU seconds of the sender and the server's sink. */
  endpointsS: number;
  /** Share of all the host's CPUs busy meanwhile (0..1). */
  hostBusy: number;
  /** The tunnel's busiest thread and its share of one CPU over the measured time. */
  busiest?: { thread: string; share: number };
  /** CPU seconds per thread of each tunnel process (`name/tid`). */
  threads?: Record<string, Record<string, number>>;
}

interface Measured {
  profile: TpoWanProfile;
  place: Place;
  path: PathSetup;
  cc: string;
  procs: NsProcess[];
}

const pidOf = (p: NsProcess): number | undefined => p.child.pid;

/** CPU readings of the tunnel, the sink and the host now; `end()` gives what was used since. */
function cpuMeter(path: PathSetup, sink: NsProcess): { end(senderS: number): TrialCpu } {
  const t0 = performance.now();
  const host0 = hostJiffies();
  const sink0 = processSeconds(pidOf(sink));
  const tunnel0 = path.procs.map((p) => processSeconds(pidOf(p)));
  const threads0 = path.procs.map((p) => threadSeconds(pidOf(p)));
  return {
    end(senderS) {
      const wall = (performance.now() - t0) / 1000;
      const host1 = hostJiffies();
      const cpu: TrialCpu = {
        endpointsS: senderS + processSeconds(pidOf(sink)) - sink0,
        hostBusy: (host1.busy - host0.busy) / Math.max(1, host1.total - host0.total),
      };
      if (path.procs.length === 0) return cpu;
      cpu.tunnelS = path.procs.reduce((s, p, i) => s + processSeconds(pidOf(p)) - tunnel0[i]!, 0);
      cpu.threads = Object.fromEntries(
        path.procs.map((p, i) => [p.description.split(' ').slice(0, 3).join(' '), threadDiff(threads0[i]!, threadSeconds(pidOf(p)))]),
      );
      const all = Object.values(cpu.threads).flatMap((t) => Object.entries(t));
      const top = all.sort((a, b) => b[1] - a[1])[0];
      if (top && wall > 0) cpu.busiest = { thread: top[0], share: top[1] / wall };
      return cpu;
    },
  };
}

function bulkArgs(target: string, seconds: number, maxBytes: number, cc: string, drain = false): string[] {
  return ['tcp-send', '--to', target, '--seconds', String(seconds), '--max-bytes', String(Math.ceil(maxBytes)), '--cc', cc, ...(drain ? ['--drain'] : [])];
}

/** The session's warm-up transfer (established variant); its connection is the sink's first. */
async function warmUp(m: Measured, sink: NsProcess): Promise<void> {
  const maxBytes = m.profile.kind === 'wan' ? ((m.profile.rateMbit * 1e6) / 8) * WARMUP_S * 1.5 : 200e6;
  const warm = m.place.topo.runNode(m.place.clientNs, LOAD, bulkArgs(m.path.target, WARMUP_S, maxBytes, m.cc));
  m.procs.push(warm);
  await warm.waitExit((WARMUP_S + 30) * 1000);
  await waitConns(sink, 1, 30_000);
  await new Promise((r) => setTimeout(r, 1000));
}

interface SendDone {
  event: string;
  cc: string;
  written: number;
  seconds: number;
  drained?: boolean;
  cpuS?: number;
}
interface RrDone {
  event: string;
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * The measured bulk transfer and request/response beside it; `onStart` runs
 * when the sender has connected (so CPU is counted from there, not from
 * its Node start-up). Resolves with both processes' last lines.
 */
async function transfer(m: Measured, quick: boolean, onStart: () => void): Promise<{ sent: SendDone; rr: RrDone | undefined }> {
  const { place, path, cc, profile } = m;
  let send: NsProcess;
  let rr: NsProcess;
  if (profile.kind === 'wan') {
    const seconds = quick ? profile.quickSeconds : profile.seconds;
    // Bounded by time and bytes: at most the link's worth of the window, with margin.
    send = place.topo.runNode(place.clientNs, LOAD, bulkArgs(path.target, seconds, ((profile.rateMbit * 1e6) / 8) * seconds * 1.5, cc));
    const rrArgs = ['--seconds', String(seconds - 1), '--interval-ms', '50', '--warmup-s', String(Math.min(2, profile.steadyFromS)), '--cc', cc];
    rr = place.topo.runNode(place.clientNs, LOAD, ['rr-client', '--to', path.target, ...rrArgs]);
    m.procs.push(send, rr);
    await send.waitForLine(/"event":"started"/, { timeoutMs: 30_000 });
    onStart();
    await Promise.all([send.waitExit((seconds + 30) * 1000), rr.waitExit((seconds + 30) * 1000)]);
  } else {
    // A fixed size, timed to the server's close; exchanges count from the sender's first byte to its end.
    const mb = quick ? profile.quickMb : profile.mb;
    rr = place.topo.runNode(
      place.clientNs,
      LOAD,
      ['rr-client', '--to', path.target, '--seconds', String(profile.maxS), '--interval-ms', '10', '--stdin-window', '--cc', cc],
      {
        stdin: 'pipe',
      },
    );
    send = place.topo.runNode(place.clientNs, LOAD, bulkArgs(path.target, profile.maxS, mb * 1e6, cc, true));
    m.procs.push(send, rr);
    await send.waitForLine(/"event":"started"/, { timeoutMs: 30_000 });
    onStart();
    rr.writeLine('start');
    await send.waitExit((profile.maxS + 30) * 1000);
    rr.endInput();
    await rr.waitExit(10_000);
  }
  const sent = send.jsonLines<SendDone>().find((l) => l.event === 'done');
  if (!sent) throw new Error(`tcp-send failed: ${send.stderr().slice(-500)}`);
  return { sent, rr: rr.jsonLines<RrDone>().find((l) => l.event === 'done') };
}

function emulatorSummary(final: IpWanStats, emu: WanEmulatorProcess): NonNullable<TpoWanTrial['emulator']> {
  const a = final.aToB;
  const b = final.bToA;
  const frames = a.txFrames + b.txFrames;
  return {
    dropLoss: a.dropLoss + b.dropLoss,
    dropQueue: a.dropQueue + b.dropQueue,
    kernelDrops: a.kernelDrops + b.kernelDrops,
    oversize: a.oversize + b.oversize,
    latenessMeanMs: frames > 0 ? (a.latenessMeanMs * a.txFrames + b.latenessMeanMs * b.txFrames) / frames : 0,
    latenessMaxMs: Math.max(a.latenessMaxMs, b.latenessMaxMs),
    scheduling: emu.proc.jsonLines<{ event: string; scheduling?: string }>().find((l) => l.event === 'ready')?.scheduling ?? 'unknown',
    lateOver1ms: frames > 0 ? (lateFraction(a, 1) * a.txFrames + lateFraction(b, 1) * b.txFrames) / frames : 0,
  };
}

export interface TrialSpec {
  profile: TpoWanProfile;
  /** The WAN topology (emulated profiles) whose emulator the trial starts. */
  wt?: WanTopology;
  place: Place;
  repeat: number;
  loss: number;
  variant: TpoWanVariant;
  quick: boolean;
  seed: number;
}

export async function runTrial(s: TrialSpec): Promise<TpoWanTrial> {
  const { profile, place, variant } = s;
  const base: TpoWanTrial = { profile: profile.id, repeat: s.repeat, loss: s.loss, variant };
  let emu: WanEmulatorProcess | undefined;
  if (profile.kind === 'wan') {
    if (!s.wt) throw new Error('an emulated profile needs the WAN topology');
    emu = await s.wt.startEmulator({ common: { delayMs: profile.rttMs / 2, rateBps: profile.rateMbit * 1e6, loss: s.loss }, seed: s.seed });
  }
  let final: IpWanStats | undefined;
  const procs: NsProcess[] = [];
  let path: PathSetup | undefined;
  try {
    const sink = place.topo.runNode(place.serverNs, LOAD, ['tcp-sink', '--port', String(SINK_PORT)], { stdin: 'pipe' });
    procs.push(sink);
    await sink.waitForLine(/"event":"ready"/, { timeoutMs: 15_000 });
    const p = await setupPath(place, variant);
    if ('unavailable' in p) return { ...base, unavailable: p.unavailable };
    path = p;
    const m: Measured = { profile, place, path, cc: ccOf(variant), procs };
    // Emulator counters before the measured transfer (an established session's warm-up is not counted).
    let before: IpWanStats | undefined;
    const warmups = variant === 'sluice-cubic-established' ? 1 : 0;
    if (warmups) {
      await warmUp(m, sink);
      before = await emu?.stats();
    }
    let meter: ReturnType<typeof cpuMeter> | undefined;
    const { sent, rr } = await transfer(m, s.quick, () => (meter = cpuMeter(path!, sink)));
    // A tunnel may still be delivering what it buffered: wait until the server's side closes.
    await waitConns(sink, warmups + 1, 30_000).catch(() => undefined);
    const cpu = meter?.end(sent.cpuS ?? NaN);
    const conn = sink.jsonLines<{ event: string; bytes: number; bins: number[]; binMs: number }>().filter((l) => l.event === 'conn')[warmups];
    final = await emu?.stop();
    if (final && before) final = { ...final, aToB: diffLane(final.aToB, before.aToB), bToA: diffLane(final.bToA, before.bToA) };
    if (!conn) throw new Error('the server saw no bulk connection close');
    const t: TpoWanTrial = { ...base, cc: sent.cc, deliveredBytes: conn.bytes, ...(cpu ? { cpu } : {}) };
    if (rr && rr.n > 0) t.rr = { n: rr.n, p50: rr.p50, p90: rr.p90, p99: rr.p99, max: rr.max };
    if (profile.kind === 'wan') {
      const seconds = s.quick ? profile.quickSeconds : profile.seconds;
      const inWindow = conn.bins.slice(0, seconds).reduce((a, b) => a + b, 0);
      const steady = conn.bins.slice(profile.steadyFromS, seconds).reduce((a, b) => a + b, 0);
      t.goodputMbit = (inWindow * 8) / seconds / 1e6;
      t.steadyMbit = (steady * 8) / (seconds - profile.steadyFromS) / 1e6;
    } else {
      t.seconds = sent.seconds;
      t.completed = !!sent.drained && conn.bytes >= sent.written;
      t.goodputMbit = (conn.bytes * 8) / sent.seconds / 1e6;
    }
    if (final && emu) {
      t.wirePerDelivered = conn.bytes > 0 ? final.aToB.rxBytes / conn.bytes : NaN;
      t.wireBothPerDelivered = conn.bytes > 0 ? (final.aToB.rxBytes + final.bToA.rxBytes) / conn.bytes : NaN;
      t.emulator = emulatorSummary(final, emu);
    }
    return t;
  } finally {
    await path?.stop().catch(() => undefined);
    for (const p of procs) {
      p.endInput();
      await p.stop(2_000);
    }
    if (emu && !final) await emu.stop().catch(() => undefined);
  }
}

/** Until the sink has reported `n` closed bulk connections. */
async function waitConns(sink: NsProcess, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (sink.jsonLines<{ event: string }>().filter((l) => l.event === 'conn').length < n) {
    if (Date.now() > deadline) throw new Error(`the server saw ${n} bulk connection(s) close only partly after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
