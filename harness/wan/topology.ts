/**
 * Three sites across an emulated WAN, for the TPO end-to-end tests and the
 * tpo-wan bench suite (issue #7):
 *
 *   client ──── gwa ═══ wan (ip-wan emulator, L2 bridge) ═══ gwb ──── server
 *   10.77.1.2   10.77.1.1                                    10.77.3.1   10.77.3.2
 *               10.77.2.1 ──── (one subnet across the WAN) ──── 10.77.2.2
 *
 * Built with netns.ts (every interface created inside namespaces it owns,
 * all removed on destroy, exit, signals, and swept after a SIGKILL). gwa and
 * gwb forward IPv4, and routes send client↔server through gwa, the WAN and
 * gwb: with no Sluice running that is the "direct TCP" path. The wan
 * namespace has no addresses at all; its two veth ends (wa, wb) belong to
 * the emulator, which runs as a process in it (harness/bin/ip-wan-emu.ts).
 *
 * Offloads: the four veth ends around the emulator (a1, wa, wb, b1) get
 * gso_max_segs 1, so what crosses the WAN is MSS-sized packets (a GSO
 * super-packet forwarded or sent onto a1 or b1 is segmented there, as UDP
 * GSO is) and the emulator's loss hits real packets, not 64 KiB GSO
 * super-frames. (ethtool is not needed for that; the emulator counts any
 * frame above the MTU as `oversize` and the namespace test asserts there
 * is none.) The LAN legs (client–gwa, gwb–server) keep veth's default
 * offloads, as hosts on a LAN keep their NICs' TSO and GRO: a TCP sender
 * there hands on 64 KiB super-packets that the receiver takes whole. With
 * segmentation off on the LAN legs too (before 2026-12-07) every TCP
 * connection a gateway terminates paid per-MSS costs no LAN host pays, a
 * cost only the tunnels had (direct TCP crosses the WAN as one connection,
 * and its per-MSS cost is the same either way): at 200 Mbit/s, 10 ms the
 * pair carried 98-100 Mbit/s with it and 133-140 without, direct CUBIC
 * 191.6-191.8 in both (docs/BENCHMARKS.md). IPv6 is
 * disabled on the WAN-facing interfaces so router/multicast chatter does not
 * show up in the emulator's byte counts; this topology is IPv4-only.
 */
import { createTopology, type NsProcess, type Topology } from '../netns/netns.js';
import type { IpWanStats, ImpairmentParams } from './ip-emulator.js';

export const WAN_ADDR = {
  client: '10.77.1.2',
  gwaLan: '10.77.1.1',
  gwaWan: '10.77.2.1',
  gwbWan: '10.77.2.2',
  gwbLan: '10.77.3.1',
  server: '10.77.3.2',
} as const;

const EMULATOR = 'harness/bin/ip-wan-emu.ts';
/** The interfaces on either side of the emulator: segmentation offloads off (see the header). */
const WAN_IFACES: readonly (readonly [string, string])[] = [
  ['gwa', 'a1'],
  ['wan', 'wa'],
  ['wan', 'wb'],
  ['gwb', 'b1'],
];

export interface WanEmulatorSettings {
  /** Both directions (delay is one-way). */
  common?: Partial<ImpairmentParams>;
  /** client→server direction, merged over `common`. */
  aToB?: Partial<ImpairmentParams>;
  bToA?: Partial<ImpairmentParams>;
  seed?: number;
}

/** The emulator process in the wan namespace. */
export class WanEmulatorProcess {
  constructor(readonly proc: NsProcess) {}

  /** Counters now (asks the process over stdin). */
  async stats(): Promise<IpWanStats> {
    const line = this.proc.nextLine({ timeoutMs: 5_000 });
    this.proc.writeLine('stats');
    const parsed = JSON.parse(await line) as IpWanStats & { event: string; error?: string };
    if (parsed.error) throw new Error(`ip-wan emulator failed: ${parsed.error}`);
    return parsed;
  }

  /** Stops it; resolves with the final counters. */
  async stop(): Promise<IpWanStats | undefined> {
    this.proc.endInput();
    await this.proc.stop(3_000);
    const final = this.proc.jsonLines<IpWanStats & { event: string }>().find((l) => l.event === 'final');
    return final;
  }
}

export interface WanTopology {
  topo: Topology;
  /** Starts the emulator with these settings (stop the previous one first) and waits until gwa and gwb resolve each other across it. */
  startEmulator(s: WanEmulatorSettings): Promise<WanEmulatorProcess>;
  /**
   * net.ipv4.tcp_congestion_control in these namespaces (each namespace has
   * its own). Outside the root namespace the kernel accepts only algorithms
   * in the global tcp_allowed_congestion_control (EPERM otherwise); set
   * others per socket (TCP_CONGESTION, as harness/traffic/wan-load.ts does).
   */
  setCongestionControl(alg: string, namespaces?: readonly string[]): Promise<void>;
  destroy(): Promise<void>;
}

export async function createWanTopology(): Promise<WanTopology> {
  const A = WAN_ADDR;
  const topo = await createTopology({
    namespaces: ['client', 'gwa', 'wan', 'gwb', 'server'],
    links: [
      { a: { ns: 'client', ifname: 'c0', ipv4: `${A.client}/24` }, b: { ns: 'gwa', ifname: 'a0', ipv4: `${A.gwaLan}/24` } },
      { a: { ns: 'gwa', ifname: 'a1', ipv4: `${A.gwaWan}/24` }, b: { ns: 'wan', ifname: 'wa' } },
      { a: { ns: 'wan', ifname: 'wb' }, b: { ns: 'gwb', ifname: 'b1', ipv4: `${A.gwbWan}/24` } },
      { a: { ns: 'gwb', ifname: 'b0', ipv4: `${A.gwbLan}/24` }, b: { ns: 'server', ifname: 's0', ipv4: `${A.server}/24` } },
    ],
    forwarding: ['gwa', 'gwb'],
    routes: [
      { ns: 'client', args: ['default', 'via', A.gwaLan] },
      { ns: 'server', args: ['default', 'via', A.gwbLan] },
      { ns: 'gwa', args: ['10.77.3.0/24', 'via', A.gwbWan] },
      { ns: 'gwb', args: ['10.77.1.0/24', 'via', A.gwaWan] },
    ],
  });
  let emulator: WanEmulatorProcess | undefined;
  const wt: WanTopology = {
    topo,
    async startEmulator(s) {
      if (emulator && !emulator.proc.exitStatus) throw new Error('an emulator is already running; stop it first');
      const common = s.common ?? {};
      const args = [
        '--a-if',
        'wa',
        '--b-if',
        'wb',
        '--a-to-b',
        JSON.stringify({ ...common, ...s.aToB }),
        '--b-to-a',
        JSON.stringify({ ...common, ...s.bToA }),
        '--seed',
        String(s.seed ?? 1),
      ];
      const proc = topo.runNode('wan', EMULATOR, args, { stdin: 'pipe' });
      emulator = new WanEmulatorProcess(proc);
      await proc.waitForLine(/"event":"ready"/, { timeoutMs: 20_000, stream: 'stdout' });
      await resolveAcross(topo, 'gwa', 'a1', A.gwbWan);
      await resolveAcross(topo, 'gwb', 'b1', A.gwaWan);
      return emulator;
    },
    async setCongestionControl(alg, namespaces = ['client', 'gwa', 'gwb', 'server']) {
      for (const ns of namespaces) await topo.exec(ns, 'sysctl', ['-qw', `net.ipv4.tcp_congestion_control=${alg}`]);
    },
    async destroy() {
      await topo.destroy();
    },
  };
  try {
    for (const [ns, dev] of WAN_IFACES) {
      // One MSS per packet onto the WAN; nothing larger than the MTU reaches the emulator.
      await topo.ip(ns, ['link', 'set', 'dev', dev, 'gso_max_segs', '1']);
    }
    await topo.exec('wan', 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await topo.exec('gwa', 'sysctl', ['-qw', 'net.ipv6.conf.a1.disable_ipv6=1']);
    await topo.exec('gwb', 'sysctl', ['-qw', 'net.ipv6.conf.b1.disable_ipv6=1']);
    for (const ns of ['client', 'gwa', 'gwb', 'server']) {
      // Room for a 100 ms path with a 100 ms queue at 50 Mbit/s (1.25 MB in flight) with margin,
      // so windows never cap a result; the same in every namespace so no variant is favoured.
      await topo.exec(ns, 'sysctl', ['-qw', 'net.ipv4.tcp_rmem=4096 131072 16777216', 'net.ipv4.tcp_wmem=4096 65536 16777216']);
    }
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return wt;
}

/** Until `addr` resolves on `ns`/`dev` (ARP crosses the emulator, so it takes one RTT at least). */
async function resolveAcross(topo: Topology, ns: string, dev: string, addr: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await topo.exec(ns, 'bash', ['-c', `echo prime > /dev/udp/${addr}/9`]).catch(() => undefined);
    const state = await topo.ip(ns, ['neigh', 'show', addr, 'dev', dev]);
    if (/\b(REACHABLE|STALE|DELAY|PROBE|PERMANENT)\b/.test(state)) return;
    if (Date.now() > deadline) throw new Error(`${addr} did not resolve on ${ns}/${dev} across the emulator: '${state.trim()}'`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
