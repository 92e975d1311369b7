/* eslint-disable max-lines -- one suite: topology, the four ways of crossing the WAN, their interleaved trials and the summary share the trial records */
/**
 * The tpo-wan suite (issue #7): TCP across an emulated WAN between two
 * sites, at 50 Mbit/s, 100 ms RTT and 0, 1, 3 % random loss (both
 * directions), for every way of crossing it, all in the same run:
 *
 *   direct-cubic    client → server TCP, forwarded by gwa and gwb, CUBIC
 *   direct-bbr      the same with BBR (this kernel's default, set explicitly)
 *   kcptun-fast3    kcptun client on gwa, server on gwb, `--mode fast3
 *                   --sndwnd 2048 --rcvwnd 2048` (its fastest profile, large
 *                   windows); the TCP legs on each site use CUBIC
 *   kcptun-default  kcptun with its defaults (mode fast, windows 128/512,
 *                   FEC 10+3, aes, compression)
 *   sluice-cubic    through Sluice gateways on gwa/gwb with CUBIC endpoints:
 *                   see startSluiceGateways() below (the HOOK). The
 *                   gateways start with the trial: the transfer pays for
 *                   the session's startup from nothing known.
 *   sluice-cubic-established
 *                   the same, on a session that already carried a
 *                   transfer (WARMUP_S of bulk, then 1 s idle), as
 *                   gateways that run for days carry most flows: the
 *                   session's path estimate is there when the flow
 *                   starts. The warm-up's connection, bytes and drops are
 *                   not counted (emulator counters are read before and
 *                   after the measured transfer).
 *
 * Per trial: a fresh emulator (counters are the trial's), a bulk transfer
 * client → server for `seconds` (bounded in bytes too) of incompressible
 * data, and at the same time 100-byte request / 100-byte response
 * exchanges on a second connection over the same path (latency under
 * load). Goodput is what the server received in the window; wire bytes are
 * the IP bytes that entered the WAN (emulator counters), per delivered byte.
 *
 * The congestion control is set on the client's sockets (TCP_CONGESTION,
 * right after connect, before any data) and the algorithm the kernel
 * reports for the bulk connection is recorded in every row. A namespace's
 * default (net.ipv4.tcp_congestion_control) cannot be used for CUBIC here:
 * outside the root namespace the kernel only accepts algorithms listed in
 * the global tcp_allowed_congestion_control (here "reno bbr"), and changing
 * that global list is not this bench's business. So the legs a tunnel opens
 * itself (kcptun-server → server on gwb) use the namespace default, BBR;
 * they are LAN legs without delay or loss, where the algorithm hardly
 * matters, and only carry data the WAN leg already delivered.
 *
 * Topology: harness/wan/topology.ts (its own five namespaces, removed
 * on exit, signals and errors).
 */
import { spawnSync } from 'node:child_process';
import type { IpWanStats } from '../../harness/wan/ip-emulator.js';
import { diffLane, lateFraction } from '../../harness/wan/ip-emulator.js';
import type { NsProcess } from '../../harness/netns/netns.js';
import { WAN_ADDR, createWanTopology, type WanTopology } from '../../harness/wan/topology.js';
import { startGatewayPair } from '../../harness/tpo/gateway-pair.js';
import { commandExists, debVersion } from './install.js';
import { pairedRatio, spread, type Spread } from './stats.js';

export const TPO_WAN_LOSSES = [0, 0.01, 0.03] as const;
export const TPO_WAN_VARIANTS = ['direct-cubic', 'direct-bbr', 'kcptun-fast3', 'kcptun-default', 'sluice-cubic', 'sluice-cubic-established'] as const;
export type TpoWanVariant = (typeof TPO_WAN_VARIANTS)[number];

const LINK_MBIT = 50;
const ONE_WAY_MS = 50;
const SINK_PORT = 5201;
const KCP_PORT = 29900;
const KCP_LOCAL_PORT = 12948;
const SLUICE_PORT = 12949;
const LOAD = 'harness/traffic/wan-load.ts';
/** Bins before this are slow start; "steady" goodput counts the rest. */
const STEADY_FROM_S = 5;
/** sluice-cubic-established: the transfer the session carries before the measured one. */
const WARMUP_S = 3;

export interface TpoWanTrial {
  repeat: number;
  loss: number;
  variant: TpoWanVariant;
  /** Congestion control of the bulk connection as the kernel reported it (the client's leg for tunnels). */
  cc?: string;
  goodputMbit?: number;
  /** Goodput after the first STEADY_FROM_S seconds. */
  steadyMbit?: number;
  deliveredBytes?: number;
  /** Request/response latency under the bulk load, ms. */
  rr?: { n: number; p50: number; p90: number; p99: number; max: number };
  /** IP bytes offered to the WAN client→server per delivered byte; and both directions together. */
  wirePerDelivered?: number;
  wireBothPerDelivered?: number;
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

export interface TpoWanResults {
  trials: TpoWanTrial[];
  seconds: number;
  versions: Record<string, string>;
}

/** What a variant puts between the client and the server: where the client connects. */
interface PathSetup {
  target: string;
  stop(): Promise<void>;
}

// "Through Sluice": `sluice tpo` gateways on gwa and gwb (the real CLI,
// harness/tpo/gateway-pair.ts), explicit mode: gwa listens on its LAN
// address for the client and carries the connection over Sluice's UDP
// transport to gwb, which connects to the server. The endpoints' TCP
// (CUBIC, set per socket by the load tool) only crosses the LANs.
export async function startSluiceGateways(wt: WanTopology): Promise<PathSetup | { unavailable: string }> {
  const pair = await startGatewayPair(wt, { mode: 'explicit', tcpTarget: SINK_PORT, listenPort: SLUICE_PORT });
  return { target: pair.tcpTarget, stop: () => pair.stop() };
}
// ---------------------------------------------------------------------------

function kcptunArgs(variant: TpoWanVariant): string[] {
  // Both ends need the same profile; key, crypt, FEC and compression stay at their defaults.
  return variant === 'kcptun-fast3' ? ['--mode', 'fast3', '--sndwnd', '2048', '--rcvwnd', '2048', '--quiet'] : ['--quiet'];
}

async function startKcptun(wt: WanTopology, variant: TpoWanVariant): Promise<PathSetup | { unavailable: string }> {
  if (!commandExists('kcptun-client') || !commandExists('kcptun-server')) return { unavailable: 'kcptun is not installed (Debian package kcptun)' };
  const server = wt.topo.spawn('gwb', 'kcptun-server', [
    '-t',
    `${WAN_ADDR.server}:${SINK_PORT}`,
    '-l',
    `${WAN_ADDR.gwbWan}:${KCP_PORT}`,
    ...kcptunArgs(variant),
  ]);
  const client = wt.topo.spawn('gwa', 'kcptun-client', [
    '-l',
    `${WAN_ADDR.gwaLan}:${KCP_LOCAL_PORT}`,
    '-r',
    `${WAN_ADDR.gwbWan}:${KCP_PORT}`,
    ...kcptunArgs(variant),
  ]);
  const stop = async (): Promise<void> => {
    await Promise.all([client.stop(2_000), server.stop(2_000)]);
  };
  try {
    await waitTcpListen(wt, 'gwa', KCP_LOCAL_PORT, client);
  } catch (err) {
    await stop();
    throw err;
  }
  return { target: `${WAN_ADDR.gwaLan}:${KCP_LOCAL_PORT}`, stop };
}

async function waitTcpListen(wt: WanTopology, ns: string, port: number, proc: NsProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await wt.topo.exec(ns, 'ss', ['-Hltn', `sport = :${port}`]);
    if (out.trim()) return;
    if (proc.exitStatus) throw new Error(`${proc.description} exited (${proc.exitStatus.code}): ${proc.stderr().slice(-400)}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${ns}:${port} after ${timeoutMs} ms: ${proc.stderr().slice(-400)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function setupPath(wt: WanTopology, variant: TpoWanVariant): Promise<PathSetup | { unavailable: string }> {
  if (variant === 'direct-cubic' || variant === 'direct-bbr') return { target: `${WAN_ADDR.server}:${SINK_PORT}`, stop: async () => undefined };
  if (variant === 'sluice-cubic' || variant === 'sluice-cubic-established') return startSluiceGateways(wt);
  return startKcptun(wt, variant);
}

function ccOf(variant: TpoWanVariant): string {
  return variant === 'direct-bbr' ? 'bbr' : 'cubic';
}

async function runTrial(wt: WanTopology, repeat: number, loss: number, variant: TpoWanVariant, seconds: number, seed: number): Promise<TpoWanTrial> {
  const base: TpoWanTrial = { repeat, loss, variant };
  const cc = ccOf(variant);
  const emu = await wt.startEmulator({ common: { delayMs: ONE_WAY_MS, rateBps: LINK_MBIT * 1e6, loss }, seed });
  let final: IpWanStats | undefined;
  const procs: NsProcess[] = [];
  let path: PathSetup | undefined;
  try {
    const sink = wt.topo.runNode('server', LOAD, ['tcp-sink', '--port', String(SINK_PORT)], { stdin: 'pipe' });
    procs.push(sink);
    await sink.waitForLine(/"event":"ready"/, { timeoutMs: 15_000 });
    const p = await setupPath(wt, variant);
    if ('unavailable' in p) return { ...base, unavailable: p.unavailable };
    path = p;
    // Emulator counters before the measured transfer (an established session's warm-up is not counted).
    let before: IpWanStats | undefined;
    let warmups = 0;
    if (variant === 'sluice-cubic-established') {
      const warm = wt.topo.runNode('client', LOAD, [
        'tcp-send',
        '--to',
        path.target,
        '--seconds',
        String(WARMUP_S),
        '--max-bytes',
        String(Math.ceil(((LINK_MBIT * 1e6) / 8) * WARMUP_S * 1.5)),
        '--cc',
        cc,
      ]);
      procs.push(warm);
      await warm.waitExit((WARMUP_S + 30) * 1000);
      await waitConns(sink, 1, 30_000);
      warmups = 1;
      await new Promise((r) => setTimeout(r, 1000));
      before = await emu.stats();
    }
    // Bounded by time and bytes: at most the link's worth of the window, with margin.
    const maxBytes = Math.ceil(((LINK_MBIT * 1e6) / 8) * seconds * 1.5);
    const send = wt.topo.runNode('client', LOAD, ['tcp-send', '--to', path.target, '--seconds', String(seconds), '--max-bytes', String(maxBytes), '--cc', cc]);
    const rr = wt.topo.runNode('client', LOAD, [
      'rr-client',
      '--to',
      path.target,
      '--seconds',
      String(seconds - 1),
      '--interval-ms',
      '50',
      '--warmup-s',
      '2',
      '--cc',
      cc,
    ]);
    procs.push(send, rr);
    await Promise.all([send.waitExit((seconds + 30) * 1000), rr.waitExit((seconds + 30) * 1000)]);
    const sent = send.jsonLines<{ event: string; cc: string; written: number }>().find((l) => l.event === 'done');
    if (!sent) throw new Error(`tcp-send failed: ${send.stderr().slice(-500)}`);
    const rrDone = rr.jsonLines<{ event: string; n: number; p50: number; p90: number; p99: number; max: number }>().find((l) => l.event === 'done');
    // A tunnel may still be delivering what it buffered: wait until the server's side closes.
    await waitConns(sink, warmups + 1, 30_000).catch(() => undefined);
    const conn = sink.jsonLines<{ event: string; bytes: number; bins: number[]; binMs: number }>().filter((l) => l.event === 'conn')[warmups];
    final = await emu.stop();
    if (final && before) final = { ...final, aToB: diffLane(final.aToB, before.aToB), bToA: diffLane(final.bToA, before.bToA) };
    if (!conn) throw new Error('the server saw no bulk connection close');
    const inWindow = conn.bins.slice(0, seconds).reduce((a, b) => a + b, 0);
    const steady = conn.bins.slice(STEADY_FROM_S, seconds).reduce((a, b) => a + b, 0);
    const t: TpoWanTrial = {
      ...base,
      cc: sent.cc,
      goodputMbit: (inWindow * 8) / seconds / 1e6,
      steadyMbit: (steady * 8) / (seconds - STEADY_FROM_S) / 1e6,
      deliveredBytes: conn.bytes,
      ...(rrDone && rrDone.n > 0 ? { rr: { n: rrDone.n, p50: rrDone.p50, p90: rrDone.p90, p99: rrDone.p99, max: rrDone.max } } : {}),
    };
    if (final) {
      const a = final.aToB;
      const b = final.bToA;
      const frames = a.txFrames + b.txFrames;
      t.wirePerDelivered = conn.bytes > 0 ? a.rxBytes / conn.bytes : NaN;
      t.wireBothPerDelivered = conn.bytes > 0 ? (a.rxBytes + b.rxBytes) / conn.bytes : NaN;
      t.emulator = {
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
    return t;
  } finally {
    await path?.stop().catch(() => undefined);
    for (const p of procs) {
      p.endInput();
      await p.stop(2_000);
    }
    if (!final) await emu.stop().catch(() => undefined);
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

export interface TpoWanOptions {
  repeats: number;
  /** Bulk transfer time per trial (default 20). */
  seconds: number;
  variants?: readonly TpoWanVariant[];
  losses?: readonly number[];
  log: (msg: string) => void;
  /** Called after every trial (e.g. to save partial results). */
  onTrial?: (t: TpoWanTrial) => void;
}

export function tpoWanVersions(): Record<string, string> {
  const kernelCc = (() => {
    try {
      return spawnSync('sysctl', ['-n', 'net.ipv4.tcp_available_congestion_control'], { encoding: 'utf8' }).stdout.trim();
    } catch {
      return 'unknown';
    }
  })();
  return { kcptun: debVersion('kcptun') ?? 'not installed', tcpAvailableCongestionControl: kernelCc };
}

/** Runs every (repeat, loss, variant) trial; variants interleaved within a repeat so drift hits all alike. */
export async function runTpoWanSuite(o: TpoWanOptions, into: TpoWanResults): Promise<void> {
  const variants = o.variants ?? TPO_WAN_VARIANTS;
  const losses = o.losses ?? TPO_WAN_LOSSES;
  const wt = await createWanTopology();
  const skipped = new Map<TpoWanVariant, string>();
  try {
    for (let repeat = 1; repeat <= o.repeats; repeat++) {
      for (const loss of losses) {
        for (const variant of variants) {
          const known = skipped.get(variant);
          if (known) {
            into.trials.push({ repeat, loss, variant, unavailable: known });
            continue;
          }
          let t: TpoWanTrial;
          try {
            t = await runTrial(wt, repeat, loss, variant, o.seconds, 1000 * repeat + Math.round(loss * 100));
          } catch (err) {
            t = { repeat, loss, variant, error: (err as Error).message.slice(0, 2000) };
          }
          into.trials.push(t);
          o.onTrial?.(t);
          if (t.unavailable) {
            skipped.set(variant, t.unavailable);
            o.log(`  tpo-wan ${variant}: unavailable (${t.unavailable})`);
          } else if (t.error) {
            o.log(`  tpo-wan ${variant} at ${loss * 100} % loss: ERROR ${t.error.split('\n')[0]}`);
          } else {
            const e = t.emulator;
            o.log(
              `  tpo-wan ${variant} (${t.cc}) at ${loss * 100} % loss: ${t.goodputMbit!.toFixed(2)} Mbit/s (${t.steadyMbit!.toFixed(2)} after ${STEADY_FROM_S} s), ` +
                `rr p50 ${t.rr?.p50.toFixed(1) ?? '–'} / p99 ${t.rr?.p99.toFixed(1) ?? '–'} ms, wire ${t.wirePerDelivered?.toFixed(3) ?? '–'}x` +
                (e
                  ? `; emulator: ${e.dropLoss} lost, ${e.dropQueue} queue drops, ${(e.lateOver1ms * 100).toFixed(2)} % released > 1 ms late (max ${e.latenessMaxMs.toFixed(1)} ms)`
                  : ''),
            );
          }
        }
      }
    }
  } finally {
    await wt.destroy();
  }
}

// ---------------------------------------------------------------------------
// Report

const f = (v: number | undefined, d = 2): string => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const sp = (s: Spread | undefined, d = 2): string => (s ? (s.n > 1 ? `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})` : f(s.median, d)) : '–');

function ok(r: TpoWanResults, loss: number, variant: TpoWanVariant): TpoWanTrial[] {
  return r.trials.filter((t) => t.loss === loss && t.variant === variant && !t.error && !t.unavailable).sort((a, b) => a.repeat - b.repeat);
}

/** Paired per-repeat ratio of goodputs, variant a ÷ variant b. */
function ratio(r: TpoWanResults, loss: number, a: TpoWanVariant, b: TpoWanVariant): Spread | undefined {
  const A = ok(r, loss, a);
  const B = ok(r, loss, b);
  const reps = A.map((t) => t.repeat).filter((rep) => B.some((u) => u.repeat === rep));
  return pairedRatio(
    reps.map((rep) => A.find((t) => t.repeat === rep)!.goodputMbit!),
    reps.map((rep) => B.find((t) => t.repeat === rep)!.goodputMbit!),
  );
}

export function tpoWanMarkdown(r: TpoWanResults): string {
  if (r.trials.length === 0) return '';
  const out: string[] = [];
  out.push(`## tpo-wan: TCP across an emulated WAN (${LINK_MBIT} Mbit/s, ${2 * ONE_WAY_MS} ms RTT, random loss both ways)`);
  out.push('');
  out.push(
    `Bulk client → server for ${r.seconds} s of incompressible data; 100-byte request/response every 50 ms on a second connection at the same time. Medians over repeats (min–max when more than one). Goodput counts what the server received in the window; "steady" leaves out the first ${STEADY_FROM_S} s. Wire = IP bytes that entered the WAN client → server per delivered byte (both directions in brackets). Emulator: harness/bin/ip-wan-emu.ts; its lateness column is the share of frames it released more than 1 ms after their due time (its own timing error). kcptun ${r.versions.kcptun ?? '?'}.`,
  );
  out.push('');
  out.push('| loss | path | cc | goodput Mbit/s | steady Mbit/s | rr p50 ms | rr p99 ms | wire / delivered | emulator late > 1 ms |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const loss of TPO_WAN_LOSSES) {
    for (const v of TPO_WAN_VARIANTS) {
      const all = r.trials.filter((t) => t.loss === loss && t.variant === v);
      if (all.length === 0) continue;
      const good = ok(r, loss, v);
      if (good.length === 0) {
        const why = all.find((t) => t.unavailable)?.unavailable ?? all.find((t) => t.error)?.error?.split('\n')[0] ?? '';
        out.push(`| ${loss * 100} % | ${v} | ${ccOf(v)} | ${all.some((t) => t.unavailable) ? 'unavailable' : 'error'}: ${why} | | | | | |`);
        continue;
      }
      const ccs = [...new Set(good.map((t) => t.cc))].join(', ');
      out.push(
        `| ${loss * 100} % | ${v} | ${ccs} | ${sp(spread(good.map((t) => t.goodputMbit!)))} | ${sp(spread(good.map((t) => t.steadyMbit!)))} | ` +
          `${sp(spread(good.flatMap((t) => (t.rr ? [t.rr.p50] : []))), 1)} | ${sp(spread(good.flatMap((t) => (t.rr ? [t.rr.p99] : []))), 1)} | ` +
          `${f(spread(good.map((t) => t.wirePerDelivered!))?.median, 3)} (${f(spread(good.map((t) => t.wireBothPerDelivered!))?.median, 3)}) | ` +
          `${f((spread(good.map((t) => t.emulator?.lateOver1ms ?? NaN))?.median ?? NaN) * 100, 2)} % |`,
      );
    }
  }
  out.push('');
  out.push(
    'Goodput ratios (median of per-repeat ratios, min–max). "kcptun best" is the kcptun profile with the higher median goodput at that loss. "new session": the gateways start with the trial; "established": their session carried a transfer before (see the suite\'s header).',
  );
  out.push('');
  out.push('| loss | Sluice session | Sluice ÷ direct CUBIC | Sluice ÷ direct BBR | Sluice ÷ kcptun best | BBR ÷ CUBIC | kcptun best ÷ CUBIC |');
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const loss of TPO_WAN_LOSSES) {
    const med = (v: TpoWanVariant): number => spread(ok(r, loss, v).map((t) => t.goodputMbit!))?.median ?? -1;
    const best: TpoWanVariant = med('kcptun-fast3') >= med('kcptun-default') ? 'kcptun-fast3' : 'kcptun-default';
    const bestName = med(best) < 0 ? 'kcptun' : best;
    for (const [v, name] of [
      ['sluice-cubic', 'new'],
      ['sluice-cubic-established', 'established'],
    ] as const) {
      if (ok(r, loss, v).length === 0) continue;
      out.push(
        `| ${loss * 100} % | ${name} | ${sp(ratio(r, loss, v, 'direct-cubic'))} | ${sp(ratio(r, loss, v, 'direct-bbr'))} | ` +
          `${sp(ratio(r, loss, v, best))} (${bestName}) | ${sp(ratio(r, loss, 'direct-bbr', 'direct-cubic'))} | ${sp(ratio(r, loss, best, 'direct-cubic'))} (${bestName}) |`,
      );
    }
  }
  out.push('');
  return out.join('\n');
}
