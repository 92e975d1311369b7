/**
 * A pair of `sluice tpo` gateways in the three-site WAN topology
 * (wan-topology.ts): gwa intercepts the client site's flows to the server
 * site and carries them over the emulated WAN to gwb, which delivers them.
 * Each gateway is the real CLI (`src/cli/main.ts tpo --config`) in its own
 * namespace; its control socket is a file, so the test process reads its
 * status directly. Shared by test/netns/tpo-e2e.test.ts and the bench's
 * tpo-wan suite, which also runs the pair inside one namespace on its
 * loopback (`place`); pairConfigs() also serves bench/tools/tpo-loopback.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NsProcess, Topology } from '../netns/netns.js';
import { WAN_ADDR } from '../wan/topology.js';
import { fetchStatus } from '../../src/tpo/control-socket.js';
import type { TpoGatewayStatus as GatewayStatus } from '../../src/tpo/index.js';

const CLI = 'src/cli/main.ts';
export const TPO_PORT = 7400;

export interface GatewayPairOptions {
  /** explicit: gwa listens on gwaLan:listenPort for `target`; transparent: gwa intercepts flows to the server site as routed. */
  readonly mode: 'explicit' | 'transparent';
  /** Explicit mode: the server port the listener's clients reach (TCP), and optionally a UDP one. */
  readonly tcpTarget?: number;
  readonly udpTarget?: number;
  readonly listenPort?: number;
  readonly io?: 'auto' | 'batched' | 'portable';
  /** Where the gateways run (default: the WAN topology's gwa and gwb). */
  readonly place?: PairPlace;
  /** Node options for both gateways (e.g. `--cpu-prof`, for a bench tool's profile). */
  readonly nodeArgs?: readonly string[];
  /** Explicit mode: the TCP entry is `latencySensitive` (its thin flows' messages go twice). */
  readonly latencySensitive?: boolean;
  /** Both peers' `mtu` (default: the config's, 1500 or 9000 on loopback). */
  readonly mtu?: number;
  /** Both peers' `initialRate` (e.g. '25M': the rate a new session starts from; default the config's). */
  readonly initialRate?: string;
}

export interface GatewayPair {
  /** Where a client connects (explicit: gwa's listener; transparent: the server itself). */
  readonly tcpTarget: string;
  readonly udpTarget?: string;
  gwa: NsProcess;
  gwb: NsProcess;
  status(side: 'a' | 'b'): Promise<GatewayStatus>;
  /** Until gwa's peer link is up. */
  waitUp(timeoutMs?: number): Promise<void>;
  /** Stops gwb (SIGTERM, or SIGKILL for a crash) and starts it again. */
  restartB(how: 'graceful' | 'crash'): Promise<void>;
  /**
   * Stops gwa with SIGTERM (waiting at most `stopMs`, then SIGKILL), runs
   * `between` (e.g. start clients that connect as soon as the listener is
   * back), starts gwa again; resolves with how the old one exited.
   */
  restartA(between?: () => void | Promise<void>, stopMs?: number): Promise<{ code: number | null; signal: string | null }>;
  stop(): Promise<void>;
}

/** Where the two gateways run and the addresses they use; the default is the WAN topology's. */
export interface PairPlace {
  readonly aNs: string;
  readonly bNs: string;
  /** Each gateway's peer-link (UDP) address, host:port. */
  readonly aPeer: string;
  readonly bPeer: string;
  /** Host of gwa's explicit listeners. */
  readonly listenHost: string;
  /** The server the flows reach. */
  readonly server: string;
  /** The client site's network (the table's `src`) and the server site's (transparent `dst`, gwb's deliver.allow). */
  readonly clients: string;
  readonly servers: string;
}

export const WAN_PAIR_PLACE: PairPlace = {
  aNs: 'gwa',
  bNs: 'gwb',
  aPeer: `${WAN_ADDR.gwaWan}:${TPO_PORT}`,
  bPeer: `${WAN_ADDR.gwbWan}:${TPO_PORT}`,
  listenHost: WAN_ADDR.gwaLan,
  server: WAN_ADDR.server,
  clients: '10.77.1.0/24',
  servers: '10.77.3.0/24',
};

/** Both gateways in one namespace `ns` (or the host's, for a tool that spawns them itself) on 127.0.0.1. */
export function loopbackPairPlace(ns: string, aPort: number, bPort: number): PairPlace {
  const lo = '127.0.0.1';
  return { aNs: ns, bNs: ns, aPeer: `${lo}:${aPort}`, bPeer: `${lo}:${bPort}`, listenHost: lo, server: lo, clients: '127.0.0.0/8', servers: '127.0.0.0/8' };
}

/** Both gateways' config files (JSON objects) for `o` at `place`; control sockets in `dir`. */
export function pairConfigs(place: PairPlace, o: GatewayPairOptions, dir: string, key: string): { a: object; b: object } {
  const listenPort = o.listenPort ?? 5201;
  const listen = `${place.listenHost}:${listenPort}`;
  const src = place.clients;
  const table =
    o.mode === 'explicit'
      ? [
          ...(o.tcpTarget
            ? [
                {
                  name: 'tcp',
                  protocol: 'tcp',
                  src,
                  listen,
                  target: `${place.server}:${o.tcpTarget}`,
                  ...(o.latencySensitive ? { latencySensitive: true } : {}),
                },
              ]
            : []),
          ...(o.udpTarget ? [{ name: 'udp', protocol: 'udp', src, listen, target: `${place.server}:${o.udpTarget}` }] : []),
        ]
      : [
          { name: 'tcp', protocol: 'tcp', src, dst: place.servers },
          { name: 'udp', protocol: 'udp', src, dst: place.servers },
          { name: 'ping', protocol: 'icmp', src, dst: place.servers },
        ];
  // Fields both sides' peer entries carry.
  const peerFields = { ...(o.mtu ? { mtu: o.mtu } : {}), ...(o.initialRate ? { initialRate: o.initialRate } : {}) };
  const a = {
    name: 'gwa',
    listen: place.aPeer,
    peers: [{ name: 'gwb', address: place.bPeer, key, keyId: 1, ...peerFields }],
    intercept: o.mode === 'explicit' ? { mode: 'explicit' } : { mode: 'transparent', hooks: ['prerouting'] },
    table,
    control: join(dir, 'gwa.sock'),
  };
  const b = {
    name: 'gwb',
    listen: place.bPeer,
    peers: [{ name: 'gwa', key, keyId: 1, ...peerFields }],
    deliver: { allow: [place.servers] },
    control: join(dir, 'gwb.sock'),
  };
  return { a, b };
}

/** Starts the pair in `wt`'s namespaces (`o.place`, default the WAN topology's gwa and gwb). */
export async function startGatewayPair(wt: { topo: Topology }, o: GatewayPairOptions): Promise<GatewayPair> {
  const place = o.place ?? WAN_PAIR_PLACE;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-'));
  const key = randomBytes(32).toString('hex');
  const listenPort = o.listenPort ?? 5201;
  const { a, b } = pairConfigs(place, o, dir, key);
  writeFileSync(join(dir, 'gwa.json'), JSON.stringify(a));
  writeFileSync(join(dir, 'gwb.json'), JSON.stringify(b));
  const io = ['--io', o.io ?? process.env.SLUICE_TPO_IO ?? 'auto'];
  const run = (ns: string, config: string): NsProcess =>
    o.nodeArgs?.length
      ? wt.topo.spawn(ns, process.execPath, [...o.nodeArgs, '--import', 'tsx', CLI, 'tpo', '--config', config, ...io])
      : wt.topo.runNode(ns, CLI, ['tpo', '--config', config, ...io]);
  const startB = async () => {
    const p = run(place.bNs, join(dir, 'gwb.json'));
    await p.waitForLine(/sluice tpo: gwb up/, { timeoutMs: 20_000, stream: 'stderr' });
    return p;
  };
  let gwb = await startB();
  const startA = async () => {
    const p = run(place.aNs, join(dir, 'gwa.json'));
    await p.waitForLine(/sluice tpo: gwa up/, { timeoutMs: 20_000, stream: 'stderr' });
    return p;
  };
  const gwa = run(place.aNs, join(dir, 'gwa.json'));
  try {
    await gwa.waitForLine(/sluice tpo: gwa up/, { timeoutMs: 20_000, stream: 'stderr' });
  } catch (err) {
    await gwb.stop(3_000);
    throw new Error(`gwa did not start: ${(err as Error).message}\n${gwa.stderr().slice(-1000)}`);
  }
  const pair: GatewayPair = {
    tcpTarget: o.mode === 'explicit' ? `${place.listenHost}:${listenPort}` : `${place.server}:${o.tcpTarget ?? 0}`,
    ...(o.udpTarget ? { udpTarget: o.mode === 'explicit' ? `${place.listenHost}:${listenPort}` : `${place.server}:${o.udpTarget}` } : {}),
    gwa,
    gwb,
    status: async (side) => (await fetchStatus(join(dir, side === 'a' ? 'gwa.sock' : 'gwb.sock'))) as GatewayStatus,
    async waitUp(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await pair.status('a').catch(() => undefined);
        if (s?.peers[0]?.up) return;
        if (Date.now() > deadline) throw new Error(`the gateway pair did not come up: ${pair.gwa.stderr().slice(-500)} / ${gwb.stderr().slice(-500)}`);
        await sleep(50);
      }
    },
    async restartB(how) {
      if (how === 'crash') gwb.signal('SIGKILL');
      await gwb.stop(5_000);
      gwb = await startB();
      pair.gwb = gwb;
    },
    async restartA(between, stopMs = 30_000) {
      const old = pair.gwa;
      old.signal('SIGTERM');
      const exit = await old.waitExit(stopMs).catch(async () => {
        await old.stop(1_000);
        return { code: null, signal: 'still running after SIGTERM' };
      });
      await between?.();
      pair.gwa = await startA();
      return exit;
    },
    async stop() {
      await Promise.all([pair.gwa.stop(5_000), pair.gwb.stop(5_000)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await pair.waitUp();
  return pair;
}
