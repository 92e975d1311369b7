/**
 * The xdp suite (issue 22, part 1): redirect 1->1 by the kernel tier with
 * kernelHook 'xdp' (in the veth driver's receive path) against 'tcx' (after
 * the skb exists), in three namespaces:
 *
 *   gen xg0 ──veth── xin0 relay xout0 ──veth── xsink0 sink
 *
 * and a third variant, 'generic' (issue 22 part 3): kernelHook 'xdp' where
 * the input has no native XDP, a macvlan whose lower veth lives in a fourth
 * namespace (wire), so Sluice attaches in generic mode there and nowhere
 * upstream:  gen xg1 ──veth── xl0 (wire) ─macvlan─ xin1 relay.
 *
 * Generator: the kernel's pktgen is not available here (no /proc/net/pktgen,
 * no loadable modules), so bench/tools/xdp-live-gen.ts transmits one UDP
 * frame template out of xg0 with BPF_PROG_TEST_RUN live frames: several
 * million frames a second from one core, more than the relay can take.
 *
 * Where the work runs: a veth runs its receiver's NAPI poll on the CPU that
 * transmitted, so without care the relay's work would land on the
 * generator's core. Both receiving ends (xin0: the relay's XDP or tcx
 * program; xsink0: the sink's counter) get GRO on, which gives a veth NAPI
 * even without XDP, and threaded NAPI, whose kernel threads
 * (napi/xin0-N, napi/xsink0-N) are pinned: the relay's to RELAY_CPU (0),
 * the sink's and the generator to GEN_CPU (1). The same set-up for both
 * hooks; the relay process itself is idle (stats off) and pinned to 0.
 *
 * CPU per packet on the relay side is the run time of the relay's NAPI
 * thread (/proc/<tid>/schedstat, ns) over the packets delivered to the sink:
 * everything the relay's host does for a packet from its receive ring to
 * the sink's ring (XDP or GRO + tcx, rewrite, checksums, transmit), and
 * nothing of other processes on the shared machine. As a cross-check the
 * report also has CPU 0's system+softirq+... busy ticks from /proc/stat,
 * which are host-wide (anything else on CPU 0 counts too).
 *
 * The sink counts at tcx ingress of xsink0 (bench/lib/sink.ts).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createTopology, type NsProcess } from '../../harness/netns/netns.js';
import { liveFramesRefusal } from '../../src/sys/bpf-test-run.js';
import { GEN_CPU, RELAY_CPU, spawnPinned, type BenchTopology } from './topology.js';
import { ethtoolStats, txDropped } from './veth-counters.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SLUICE_BIN = join(REPO_ROOT, 'bin/sluice.js');
const LIVE_GEN = join(REPO_ROOT, 'bench/tools/xdp-live-gen.ts');
const UDP_GEN = join(REPO_ROOT, 'bench/tools/udp-gen.ts');
const TASKSET = '/usr/bin/taskset';
const XDP_PASS = join(REPO_ROOT, 'bench/tools/xdp-pass.ts');

export const XDP_GEN_ADDR = '10.251.11.2';
export const XDP_RELAY_ADDR = '10.251.11.1';
export const XDP_SINK_ADDR = '10.251.12.2';
const LISTEN_PORT = 30000;
/** The socket generator's rate for an unpaced trial: above what it can send, so it sends flat out. */
const SOCKET_GEN_MAX_PPS = 5_000_000;
const SINK_PORT = 40000;

/** 'generic': kernelHook 'xdp' on an input without native XDP (a macvlan; see createXdpTopology). */
export type XdpVariant = 'xdp' | 'tcx' | 'generic';
export const XDP_VARIANTS: readonly XdpVariant[] = ['xdp', 'tcx', 'generic'];
/** The generic variant's path: gen xg1 ──veth── xl0 (namespace wire) ─macvlan─ xin1 (in relay). */
export const XDP_GEN1_ADDR = '10.251.13.2';
export const XDP_RELAY1_ADDR = '10.251.13.1';

interface Input {
  genIf: string;
  genAddr: string;
  relayAddr: string;
  /** Where the relay's receive thread runs (its NAPI). */
  napiIf: string;
  /** The interface whose MAC the frames go to. */
  macIf: string;
}

function inputOf(v: XdpVariant): Input {
  return v === 'generic'
    ? { genIf: 'xg1', genAddr: XDP_GEN1_ADDR, relayAddr: XDP_RELAY1_ADDR, napiIf: 'xl0', macIf: 'xin1' }
    : { genIf: 'xg0', genAddr: XDP_GEN_ADDR, relayAddr: XDP_RELAY_ADDR, napiIf: 'xin0', macIf: 'xin0' };
}

export interface XdpTrial {
  variant: XdpVariant;
  generator: 'live' | 'socket';
  repeat: number;
  size: number;
  seconds: number;
  rate: number;
  /** Frames the generator's program ran on, per second. */
  offeredPps: number;
  deliveredPps: number;
  /** Relay NAPI thread ns per delivered packet. */
  relayNsPerPacket: number;
  /** Share of one core the relay's NAPI thread used during the trial. */
  relayBusy: number;
  sinkNsPerPacket: number;
  sinkBusy: number;
  /** CPU 0 (relay's core) busy ticks from /proc/stat (host-wide) as a share. */
  cpu0BusyStat: number;
  /** Frames dropped at xin0's receive ring (veth statistics), per second. */
  inputRingDropsPps: number;
  /** Packets lost between relay and sink (relay xdp/tcx sent, sink missed), per second. */
  sinkRingDropsPps: number;
  limit: string;
  loadavg: number[];
}

function readSchedNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

function cpuStat(cpu: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `))!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return { busy: total - idle, total };
}

/** Kernel threads named napi/<ifname>-<id> (kthreads are not namespaced). */
function napiThreads(ifname: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, 'utf8').trim().startsWith(`napi/${ifname}-`)) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

export async function createXdpTopology(): Promise<BenchTopology> {
  const topo = await createTopology({
    namespaces: ['gen', 'relay', 'sink', 'wire'],
    links: [
      { a: { ns: 'gen', ifname: 'xg0', ipv4: `${XDP_GEN_ADDR}/24` }, b: { ns: 'relay', ifname: 'xin0', ipv4: `${XDP_RELAY_ADDR}/24` } },
      { a: { ns: 'gen', ifname: 'xg1', ipv4: `${XDP_GEN1_ADDR}/24` }, b: { ns: 'wire', ifname: 'xl0' } },
      { a: { ns: 'relay', ifname: 'xout0', ipv4: '10.251.12.1/24' }, b: { ns: 'sink', ifname: 'xsink0', ipv4: `${XDP_SINK_ADDR}/24` } },
    ],
  });
  try {
    for (const ns of ['gen', 'relay', 'sink']) {
      await topo.exec(ns, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    }
    // Generic: a macvlan has no native XDP. Its lower veth stays in the namespace wire, where Sluice does not
    // attach (else its native program there would carry the flow); GRO gives xl0 a NAPI thread.
    await topo.ip('wire', ['link', 'add', 'xin1', 'link', 'xl0', 'type', 'macvlan', 'mode', 'bridge']);
    await topo.ip('wire', ['link', 'set', 'xin1', 'netns', topo.nsName('relay')]);
    await topo.ip('relay', ['addr', 'add', `${XDP_RELAY1_ADDR}/24`, 'dev', 'xin1']);
    await topo.ip('relay', ['link', 'set', 'xin1', 'up']);
    await topo.ip('wire', ['link', 'set', 'xl0', 'up']);
    await topo.exec('wire', 'ethtool', ['-K', 'xl0', 'gro', 'on']);
    await topo.exec('wire', 'sh', ['-c', 'echo 1 > /sys/class/net/xl0/threaded']);
    await topo.exec('relay', 'sysctl', ['-qw', 'net.ipv4.conf.xin1.rp_filter=0']);
    // xout0 without TSO: skbs (tcx) go into xsink0's ring too (else netif_rx on the relay's CPU).
    await topo.exec('relay', 'ethtool', ['-K', 'xout0', 'tso', 'off']);
    // The sink drops everything at XDP: the relay needs the sink's MAC from a permanent neighbour entry.
    const sinkMac = (await topo.exec('sink', 'cat', ['/sys/class/net/xsink0/address'])).trim();
    await topo.ip('relay', ['neigh', 'replace', XDP_SINK_ADDR, 'lladdr', sinkMac, 'dev', 'xout0', 'nud', 'permanent']);
    // xin0: NAPI from the XDP program of either variant (GRO off: Sluice's socket on the port has UDP_GRO, which would merge at tcx).
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

/** The sink: XDP_DROP at xsink0 (held by a process), counted by the veth; its NAPI thread on GEN_CPU. */
export async function startSink(topo: BenchTopology): Promise<NsProcess> {
  const sink = topo.runNode('sink', XDP_PASS, ['--ifname', 'xsink0', '--drop'], { stdin: 'pipe' });
  await sink.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 30_000 });
  await topo.exec('sink', 'sh', ['-c', 'echo 1 > /sys/class/net/xsink0/threaded']);
  return sink;
}

/** (Re-)pin the NAPI threads: attaching or detaching XDP can re-create them. */
async function pinNapi(topo: BenchTopology, input: Input): Promise<{ relay: number; sink: number }> {
  // xin0 has a NAPI instance only while an XDP program is attached (now): threaded from here on.
  if (input.napiIf === 'xin0') await topo.exec('relay', 'sh', ['-c', 'echo 1 > /sys/class/net/xin0/threaded']);
  const relay = napiThreads(input.napiIf);
  const sink = napiThreads('xsink0');
  if (relay.length !== 1 || sink.length !== 1) throw new Error(`expected one NAPI thread each for xin0 and xsink0, found ${relay.length} and ${sink.length}`);
  await topo.exec('relay', 'taskset', ['-pc', String(RELAY_CPU), String(relay[0])]);
  await topo.exec('relay', 'taskset', ['-pc', String(GEN_CPU), String(sink[0])]);
  // Softirq priority: threaded NAPI is an ordinary task, which the shared machine's other processes would preempt.
  // The sink above the generator (both FIFO on GEN_CPU), so the generator cannot starve it.
  await topo.exec('relay', 'chrt', ['-f', '-p', '1', String(relay[0])]);
  await topo.exec('relay', 'chrt', ['-f', '-p', '2', String(sink[0])]);
  return { relay: relay[0]!, sink: sink[0]! };
}

async function startRelay(topo: BenchTopology, variant: 'xdp' | 'tcx'): Promise<NsProcess> {
  const args = [
    ...[SLUICE_BIN, 'relay', '--tier', 'kernel', '--kernel-hook', variant],
    ...['--listen', `udp://0.0.0.0:${LISTEN_PORT}`, '--to', `udp://${XDP_SINK_ADDR}:${SINK_PORT}`, '--allow', '10.251.0.0/16'],
    ...['--json', '--stats-interval', '0'],
  ];
  const proc = spawnPinned(topo, 'relay', RELAY_CPU, process.execPath, args);
  try {
    await proc.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 30_000 });
  } catch (err) {
    await proc.stop(3_000);
    throw new Error(`relay (${variant}) did not become ready: ${proc.stderr().slice(-400)}`, { cause: err });
  }
  return proc;
}

async function runGen(
  topo: BenchTopology,
  script: string,
  args: readonly string[],
  seconds: number,
  fifo = false,
): Promise<{ sent: number; elapsedS: number }> {
  const node = [process.execPath, '--import', 'tsx', script, ...args];
  // FIFO (below the sink's NAPI thread): the shared machine's other processes would otherwise take most of GEN_CPU.
  const gen = fifo
    ? topo.spawn('gen', 'chrt', ['-f', '1', TASKSET, '-c', String(GEN_CPU), ...node])
    : spawnPinned(topo, 'gen', GEN_CPU, node[0]!, node.slice(1));
  const exit = await gen.waitExit((seconds + 30) * 1000);
  if (exit.code !== 0) throw new Error(`generator exited ${exit.code}: ${gen.stderr().slice(-400)}`);
  const r = gen.jsonLines<{ sent: number; elapsedS: number }>().at(-1);
  if (!r) throw new Error(`generator printed no result: ${gen.stdout().slice(-200)}`);
  return r;
}

export interface XdpTrialSpec {
  variant: XdpVariant;
  /** Offered frames per second; 0: as fast as the generator goes. */
  rate: number;
  /**
   * 'live': bench/tools/xdp-live-gen.ts (XDP_TX frames, no socket); 'socket':
   * bench/tools/udp-gen.ts (sendmmsg + GSO), where the kernel refuses live
   * frames (liveFramesRefusal): it tops out near the relay's rate, so more
   * of its figures are generator-limited.
   */
  generator: 'live' | 'socket';
  repeat: number;
  size: number;
  seconds: number;
}

async function sinkCount(topo: BenchTopology): Promise<number> {
  return (await ethtoolStats(topo, 'sink', 'xsink0')).rx_queue_0_xdp_drops ?? 0;
}

export async function runXdpTrial(topo: BenchTopology, spec: XdpTrialSpec): Promise<XdpTrial> {
  let pass: NsProcess | undefined;
  if (spec.variant === 'tcx') {
    pass = topo.runNode('relay', XDP_PASS, ['--ifname', 'xin0'], { stdin: 'pipe' });
    await pass.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 30_000 });
  }
  const input = inputOf(spec.variant);
  const relay = await startRelay(topo, spec.variant === 'generic' ? 'xdp' : spec.variant);
  try {
    // A few datagrams through a socket first: the relay resolves the sink's neighbour (the programs pass until then).
    await runGen(topo, UDP_GEN, ['--to', `${input.relayAddr}:${LISTEN_PORT}`, '--size', String(spec.size), '--rate', '200', '--duration', '0.5'], 0.5);
    await new Promise((r) => setTimeout(r, 300));
    const napi = await pinNapi(topo, input);
    const dstMac = (await topo.exec('relay', 'cat', [`/sys/class/net/${input.macIf}/address`])).trim();
    // One reading of every counter the trial compares: before and after the generator.
    const sample = async () => ({
      sink: await sinkCount(topo),
      relayNs: readSchedNs(napi.relay),
      sinkNs: readSchedNs(napi.sink),
      cpu0: cpuStat(RELAY_CPU),
      inRing: await ethtoolStats(topo, 'gen', input.genIf),
      // A socket generator's skbs that found the ring full are counted as the veth's tx drops, not xdp_xmit errors.
      inSkbDrops: await txDropped(topo, 'gen', input.genIf),
      outRing: await ethtoolStats(topo, 'relay', 'xout0'),
    });
    const before = await sample();
    const t0 = performance.now();
    const target = ['--to', `${input.relayAddr}:${LISTEN_PORT}`, '--size', String(spec.size), '--duration', String(spec.seconds)];
    const gen =
      spec.generator === 'live'
        ? await runGen(
            topo,
            LIVE_GEN,
            ['--ifname', input.genIf, '--dst-mac', dstMac, '--src', input.genAddr, ...target, '--rate', String(spec.rate)],
            spec.seconds,
            true,
          )
        : // Unpaced means "more than the relay takes": udp-gen spins and sends what it can (≈2 M/s from one core).
          await runGen(topo, UDP_GEN, [...target, '--rate', String(spec.rate || SOCKET_GEN_MAX_PPS)], spec.seconds, true);
    await new Promise((r) => setTimeout(r, 300)); // drain
    const wallS = (performance.now() - t0) / 1000;
    const after = await sample();
    const delivered = after.sink - before.sink;
    const relayNs = after.relayNs - before.relayNs;
    const sinkNs = after.sinkNs - before.sinkNs;
    const d = (o: typeof before, k: 'inRing' | 'outRing', name: string) => o[k][name] ?? 0;
    // xg0's ndo_xdp_xmit errors: frames xin0's ring had no room for.
    const inDrops = d(after, 'inRing', 'tx_queue_0_xdp_xmit_errors') - d(before, 'inRing', 'tx_queue_0_xdp_xmit_errors') + after.inSkbDrops - before.inSkbDrops;
    const outErr = d(after, 'outRing', 'tx_queue_0_xdp_xmit_errors') - d(before, 'outRing', 'tx_queue_0_xdp_xmit_errors');
    const s = gen.elapsedS;
    const relayBusy = relayNs / 1e9 / wallS;
    const sinkBusy = sinkNs / 1e9 / wallS;
    const cpu0 = (after.cpu0.busy - before.cpu0.busy) / Math.max(1, after.cpu0.total - before.cpu0.total);
    const offeredPps = gen.sent / s;
    const deliveredPps = delivered / s;
    const limit =
      outErr > 0
        ? `sink (its ring full: ${Math.round(outErr / s)}/s lost between relay and sink)`
        : relayBusy > 0.85
          ? 'relay CPU (its NAPI thread busy)'
          : inDrops > 0
            ? `CPU ${GEN_CPU} (generator and sink thread share it): bursts fill the relay's 256-frame ring while the relay's thread is idle ${Math.round((1 - relayBusy) * 100)} %`
            : 'generator';
    return {
      variant: spec.variant,
      generator: spec.generator,
      repeat: spec.repeat,
      size: spec.size,
      rate: spec.rate,
      seconds: s,
      offeredPps,
      deliveredPps,
      relayNsPerPacket: delivered > 0 ? relayNs / delivered : NaN,
      relayBusy,
      sinkNsPerPacket: delivered > 0 ? sinkNs / delivered : NaN,
      sinkBusy,
      cpu0BusyStat: cpu0,
      inputRingDropsPps: inDrops / s,
      sinkRingDropsPps: outErr / s,
      limit,
      loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    };
  } finally {
    await relay.stop(5_000);
    await pass?.stop(5_000);
  }
}

/** Why the suite cannot run here, or undefined. */
export function xdpSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    readFileSync('/proc/sys/net/core/netdev_max_backlog');
  } catch {
    return 'no /proc/sys/net';
  }
  return undefined;
}

export async function runXdpSuite(opts: {
  repeats: number;
  seconds: number;
  sizes: readonly number[];
  rates: readonly number[];
  log: (m: string) => void;
}): Promise<XdpTrial[]> {
  const refusal = liveFramesRefusal();
  const generator = refusal ? 'socket' : 'live';
  if (refusal) opts.log(`xdp suite: ${refusal}; the socket generator (bench/tools/udp-gen.ts) offers the load instead`);
  const topo = await createXdpTopology();
  const trials: XdpTrial[] = [];
  try {
    const sink = await startSink(topo);
    try {
      for (let r = 0; r < opts.repeats; r++) {
        for (const size of opts.sizes)
          for (const rate of opts.rates) {
            // Interleaved, order alternating per repeat.
            // XDP_ONLY=xdp|tcx|generic in the environment: one variant (for trying the set-up).
            const variants = XDP_VARIANTS.filter((v) => !process.env.XDP_ONLY || v === process.env.XDP_ONLY);
            const order = r % 2 === 0 ? variants : [...variants].reverse();
            for (const variant of order) {
              const t = await runXdpTrial(topo, { variant, generator, repeat: r, size, rate, seconds: opts.seconds });
              opts.log(
                `xdp suite r${r} ${size} B ${rate ? `${rate / 1e6} Mpps` : 'max'} ${variant}: offered ${(t.offeredPps / 1e6).toFixed(2)} Mpps, delivered ${(t.deliveredPps / 1e6).toFixed(3)} Mpps, ` +
                  `relay ${t.relayNsPerPacket.toFixed(0)} ns/pkt (busy ${(t.relayBusy * 100).toFixed(0)} %), sink ${t.sinkNsPerPacket.toFixed(0)} ns/pkt, limit: ${t.limit}`,
              );
              trials.push(t);
            }
          }
      }
    } finally {
      await sink.stop(5_000);
    }
  } finally {
    await topo.destroy();
  }
  return trials;
}
