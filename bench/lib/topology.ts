/**
 * The bench topology: three network namespaces on two veth pairs.
 *
 *   gen 10.251.1.2 ──veth── 10.251.1.1 relay 10.251.2.1 ──veth── 10.251.2.2 sink
 *
 * Built with the test helper (harness/netns/netns.ts), which creates every
 * interface inside namespaces it owns and deletes them on destroy(), on
 * exit, on SIGINT/SIGTERM/SIGHUP, and (for a SIGKILLed run) at the next
 * createTopology(). Both subnets are directly connected, so no routes and
 * no forwarding are needed: the relay receives on one link and sends on the
 * other from its own address. rp_filter is turned off in every namespace
 * anyway, so a host default of strict mode cannot drop anything.
 *
 * Processes are pinned with taskset: the relay under test to RELAY_CPU and
 * the generator to GEN_CPU (see bench/README.md for where softirq work lands).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createTopology, type NsProcess, type NsSpawnOptions, type Topology } from '../../harness/netns/netns.js';

export const GEN_ADDR = '10.251.1.2';
export const RELAY_ADDR = '10.251.1.1';
export const RELAY_OUT_ADDR = '10.251.2.1';
export const SINK_ADDR = '10.251.2.2';

export const RELAY_CPU = 0;
export const GEN_CPU = 1;
const TASKSET = '/usr/bin/taskset';

export type BenchTopology = Topology;

export interface OffloadOptions {
  /**
   * Let the generator's UDP GSO buffers reach the relay whole (a veth does
   * not segment). Default off: the generator's veth end gets gso_max_segs 1,
   * so the kernel segments on the generator's CPU and the relay receives one
   * packet per datagram, as from a wire.
   */
  inputGso: boolean;
  /**
   * Segment what the relay sends before it leaves the relay (gso_max_segs 1
   * on the relay's sink-side veth end), charging segmentation to the relay's
   * CPU like a NIC without UDP segmentation offload (default, the
   * conservative case). Off: GSO buffers pass to the sink whole, like a NIC
   * that segments in hardware.
   */
  segmentOutput: boolean;
  /**
   * Receive Packet Steering of the relay's input link: a veth runs the
   * receiving side's stack on the *sending* CPU, so without it the relay's
   * receive path, and with it every in-kernel relay (which works inside
   * that receive path), would run on the generator's CPU 1. With steering,
   * in0 is processed on RELAY_CPU, as a NIC's queue would be. (The sink's
   * receive path stays on the CPU that sends to it, the relay's: steering
   * it to CPU 1 as well was tried and left it to ksoftirqd behind the
   * spinning generator, which dropped packets; see bench/README.md.)
   */
  steer: boolean;
}

export async function createBenchTopology(offload: OffloadOptions): Promise<BenchTopology> {
  const topo = await createTopology({
    namespaces: ['gen', 'relay', 'sink'],
    links: [
      { a: { ns: 'gen', ifname: 'gen0', ipv4: `${GEN_ADDR}/24` }, b: { ns: 'relay', ifname: 'in0', ipv4: `${RELAY_ADDR}/24` } },
      { a: { ns: 'relay', ifname: 'out0', ipv4: `${RELAY_OUT_ADDR}/24` }, b: { ns: 'sink', ifname: 'sink0', ipv4: `${SINK_ADDR}/24` } },
    ],
  });
  try {
    for (const ns of ['gen', 'relay', 'sink']) {
      await topo.exec(ns, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    }
    for (const [ns, dev] of [
      ['gen', 'gen0'],
      ['relay', 'in0'],
      ['relay', 'out0'],
      ['sink', 'sink0'],
    ] as const) {
      await topo.exec(ns, 'sysctl', ['-qw', `net.ipv4.conf.${dev}.rp_filter=0`]);
    }
    if (!offload.inputGso) await topo.ip('gen', ['link', 'set', 'gen0', 'gso_max_segs', '1']);
    if (offload.segmentOutput) await topo.ip('relay', ['link', 'set', 'out0', 'gso_max_segs', '1']);
    if (offload.steer) {
      // sysfs as seen inside the namespace (ip netns exec mounts its own /sys).
      await topo.exec('relay', 'sh', ['-c', `echo ${cpuMask(RELAY_CPU)} > /sys/class/net/in0/queues/rx-0/rps_cpus`]);
    }
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

/**
 * A veth hands every packet to the receiving CPU's backlog queue, whose
 * length is net.core.netdev_max_backlog (global, 1000 by default). A relay
 * that replicates in softirq (the kernel tier) queues all copies of a
 * datagram, and of a burst, before any is delivered: 16 x 100 at 1->100.
 * A NIC would take them into its transmit ring and qdisc (thousands of
 * packets), so the bench raises the limit for every peer while it runs and
 * restores it on exit.
 */
export const BENCH_BACKLOG = 10_000;
const BACKLOG_SYSCTL = '/proc/sys/net/core/netdev_max_backlog';

export function raiseBacklog(to?: number): { before: number; restore: () => void } {
  const before = Number(readFileSync(BACKLOG_SYSCTL, 'utf8').trim());
  // `to` given (--backlog): exactly that value, e.g. the kernel default 1000; else at least BENCH_BACKLOG.
  if (to === undefined ? before >= BENCH_BACKLOG : before === to) return { before, restore: () => undefined };
  writeFileSync(BACKLOG_SYSCTL, String(to ?? BENCH_BACKLOG));
  let done = false;
  const restore = (): void => {
    if (done) return;
    done = true;
    writeFileSync(BACKLOG_SYSCTL, String(before));
  };
  process.once('exit', restore);
  // A signal kills a plain script without 'exit': restore, and re-raise
  // if no one else handles it (the topology's handlers do, while it exists).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      restore();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
  return { before, restore };
}

function cpuMask(cpu: number): string {
  return (1 << cpu).toString(16);
}

/** Spawn `cmd args` in `ns`, pinned to `cpu` (taskset execs in place: the pid is the command's). */
export function spawnPinned(topo: BenchTopology, ns: string, cpu: number, cmd: string, args: readonly string[], opts: NsSpawnOptions = {}): NsProcess {
  return topo.spawn(ns, TASKSET, ['-c', String(cpu), cmd, ...args], opts);
}

/** Local UDP ports bound in `ns` (from /proc/net/udp, read inside the namespace). */
export async function boundUdpPorts(topo: BenchTopology, ns: string): Promise<Map<number, { rxQueue: number; drops: number }>> {
  return parseProcNetUdp(await topo.exec(ns, 'cat', ['/proc/net/udp']));
}

/**
 * The same, read through a process that lives in the namespace
 * (/proc/<pid>/net is that process's namespace view; no helper process).
 */
export function boundUdpPortsOf(pid: number): Map<number, { rxQueue: number; drops: number }> {
  return parseProcNetUdp(readFileSync(`/proc/${pid}/net/udp`, 'utf8'));
}

function parseProcNetUdp(text: string): Map<number, { rxQueue: number; drops: number }> {
  const ports = new Map<number, { rxQueue: number; drops: number }>();
  for (const line of text.split('\n').slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr tm->when retrnsmt uid timeout inode ref pointer drops
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
    const rxQueue = parseInt(f[4]!.split(':')[1] ?? '0', 16);
    const drops = Number(f[f.length - 1]);
    const prev = ports.get(port);
    ports.set(port, { rxQueue: (prev?.rxQueue ?? 0) + rxQueue, drops: (prev?.drops ?? 0) + drops });
  }
  return ports;
}

/** Resolve once `port` is bound in `ns`; reject after `timeoutMs` or if `proc` exits first. */
export async function waitForUdpPort(topo: BenchTopology, ns: string, port: number, proc: NsProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await boundUdpPorts(topo, ns)).has(port)) return;
    if (proc.exitStatus) throw new Error(`${proc.description} exited (code ${proc.exitStatus.code}) before binding port ${port}: ${proc.stderr().slice(-500)}`);
    if (Date.now() > deadline) throw new Error(`port ${port} not bound in ${ns} after ${timeoutMs} ms: ${proc.stderr().slice(-500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** UDP counters (InDatagrams, RcvbufErrors, SndbufErrors, ...) of the namespace `pid` lives in, from /proc/<pid>/net/snmp. */
export function udpSnmpOf(pid: number): Record<string, number> {
  const text = readFileSync(`/proc/${pid}/net/snmp`, 'utf8');
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]?.split(/\s+/).slice(1) ?? [];
  const values = lines[1]?.split(/\s+/).slice(1).map(Number) ?? [];
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? 0]));
}
