/**
 * The ways of crossing a tpo-wan path (direct TCP, kcptun, a Sluice
 * gateway pair) and where they run: the WAN topology's namespaces
 * (harness/wan/topology.ts) or one namespace's loopback. Each way says
 * where the client connects and which processes carry the traffic, so the
 * trial can charge their CPU time.
 */
import type { NsProcess, Topology } from '../../harness/netns/netns.js';
import { WAN_ADDR, type WanTopology } from '../../harness/wan/topology.js';
import { loopbackPairPlace, startGatewayPair, TPO_PORT, WAN_PAIR_PLACE, type PairPlace } from '../../harness/tpo/gateway-pair.js';
import { commandExists } from './install.js';

export const TPO_WAN_VARIANTS = ['direct-cubic', 'direct-bbr', 'kcptun-fast3', 'kcptun-default', 'sluice-cubic', 'sluice-cubic-established'] as const;
export type TpoWanVariant = (typeof TPO_WAN_VARIANTS)[number];

export const SINK_PORT = 5201;
const KCP_PORT = 29900;
const KCP_LOCAL_PORT = 12948;
const SLUICE_PORT = 12949;

/** Where client, server and the tunnels' two ends run, and the addresses they use. */
export interface Place {
  readonly topo: Topology;
  readonly clientNs: string;
  readonly serverNs: string;
  readonly serverAddr: string;
  /** Namespaces of a tunnel's client end and server end. */
  readonly tunnelA: string;
  readonly tunnelB: string;
  /** Host a tunnel's client end listens on for the client, and host its server end listens on for the other end. */
  readonly listenHost: string;
  readonly farHost: string;
  readonly pair: PairPlace;
}

export function wanPlace(wt: WanTopology): Place {
  return {
    topo: wt.topo,
    clientNs: 'client',
    serverNs: 'server',
    serverAddr: WAN_ADDR.server,
    tunnelA: 'gwa',
    tunnelB: 'gwb',
    listenHost: WAN_ADDR.gwaLan,
    farHost: WAN_ADDR.gwbWan,
    pair: WAN_PAIR_PLACE,
  };
}

/** Everything in namespace `ns` (which the bench creates) on its 127.0.0.1. */
export function loopbackPlace(topo: Topology, ns: string): Place {
  const lo = '127.0.0.1';
  return {
    topo,
    clientNs: ns,
    serverNs: ns,
    serverAddr: lo,
    tunnelA: ns,
    tunnelB: ns,
    listenHost: lo,
    farHost: lo,
    pair: loopbackPairPlace(ns, TPO_PORT, TPO_PORT + 1),
  };
}

export function ccOf(variant: TpoWanVariant): string {
  return variant === 'direct-bbr' ? 'bbr' : 'cubic';
}

export const isSluice = (v: TpoWanVariant): boolean => v === 'sluice-cubic' || v === 'sluice-cubic-established';
export const isDirect = (v: TpoWanVariant): boolean => v === 'direct-cubic' || v === 'direct-bbr';

/** What a variant puts between the client and the server: where the client connects, and its processes. */
export interface PathSetup {
  target: string;
  /** The tunnel's processes (none for direct TCP: the kernel forwards). */
  procs: readonly NsProcess[];
  stop(): Promise<void>;
}

// "Through Sluice": `sluice tpo` gateways (the real CLI,
// harness/tpo/gateway-pair.ts), explicit mode: gwa listens for the client
// and carries the connection over Sluice's UDP transport to gwb, which
// connects to the server. The endpoints' TCP (CUBIC, set per socket by the
// load tool) only crosses the LANs.
async function startSluiceGateways(place: Place): Promise<PathSetup> {
  const pair = await startGatewayPair(place, { mode: 'explicit', tcpTarget: SINK_PORT, listenPort: SLUICE_PORT, place: place.pair });
  return { target: pair.tcpTarget, procs: [pair.gwa, pair.gwb], stop: () => pair.stop() };
}

function kcptunArgs(variant: TpoWanVariant): string[] {
  // Both ends need the same profile; key, crypt, FEC and compression stay at their defaults.
  return variant === 'kcptun-fast3' ? ['--mode', 'fast3', '--sndwnd', '2048', '--rcvwnd', '2048', '--quiet'] : ['--quiet'];
}

async function startKcptun(place: Place, variant: TpoWanVariant): Promise<PathSetup | { unavailable: string }> {
  if (!commandExists('kcptun-client') || !commandExists('kcptun-server')) return { unavailable: 'kcptun is not installed (Debian package kcptun)' };
  const far = `${place.farHost}:${KCP_PORT}`;
  const server = place.topo.spawn(place.tunnelB, 'kcptun-server', ['-t', `${place.serverAddr}:${SINK_PORT}`, '-l', far, ...kcptunArgs(variant)]);
  const client = place.topo.spawn(place.tunnelA, 'kcptun-client', ['-l', `${place.listenHost}:${KCP_LOCAL_PORT}`, '-r', far, ...kcptunArgs(variant)]);
  const stop = async (): Promise<void> => {
    await Promise.all([client.stop(2_000), server.stop(2_000)]);
  };
  try {
    await waitTcpListen(place, place.tunnelA, KCP_LOCAL_PORT, client);
  } catch (err) {
    await stop();
    throw err;
  }
  return { target: `${place.listenHost}:${KCP_LOCAL_PORT}`, procs: [client, server], stop };
}

async function waitTcpListen(place: Place, ns: string, port: number, proc: NsProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await place.topo.exec(ns, 'ss', ['-Hltn', `sport = :${port}`]);
    if (out.trim()) return;
    if (proc.exitStatus) throw new Error(`${proc.description} exited (${proc.exitStatus.code}): ${proc.stderr().slice(-400)}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${ns}:${port} after ${timeoutMs} ms: ${proc.stderr().slice(-400)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function setupPath(place: Place, variant: TpoWanVariant): Promise<PathSetup | { unavailable: string }> {
  if (isDirect(variant)) return { target: `${place.serverAddr}:${SINK_PORT}`, procs: [], stop: async () => undefined };
  if (isSluice(variant)) return startSluiceGateways(place);
  return startKcptun(place, variant);
}
