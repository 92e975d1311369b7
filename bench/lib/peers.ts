/**
 * The relays under test. Each one is started in the relay namespace, pinned
 * to RELAY_CPU, listening on one UDP port and sending every datagram to N
 * ports on the sink address. Every relay that has a socket-buffer knob gets
 * SOCKET_BUFFER bytes for receive and send (see bench/README.md for who
 * gets what).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NsProcess } from '../../harness/netns/netns.js';
import { processTree } from './cpu.js';
import { nginxRequirement, nginxStreamConfig, nginxVersion } from './nginx.js';
import { commandExists, succeeds, versionOf, type Requirement } from './install.js';
import { SUGGESTED_BACKLOG } from '../../src/dataplane/kernel/softnet.js';
import { tuneHost } from '../../src/dataplane/kernel/host-tuning.js';
import { GEN_ADDR, RELAY_CPU, SINK_ADDR, spawnPinned, waitForUdpPort, type BenchTopology } from './topology.js';

/** Receive and send buffer for every relay that has a knob (= Sluice's default, = net.core.rmem_max here). */
export const SOCKET_BUFFER = 4 * 1024 * 1024;

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SLUICE_BIN = join(REPO_ROOT, 'bin/sluice.js');

export interface RelaySetup {
  topo: BenchTopology;
  listenPort: number;
  /** Subscriber ports on SINK_ADDR. */
  ports: readonly number[];
}

export interface RunningRelay {
  /** The relay's processes (main pid and descendants, e.g. nginx workers). */
  pids: readonly number[];
  stop(): Promise<void>;
}

export type StartResult = { running: RunningRelay } | { unavailable: string };

export interface Peer {
  name: string;
  /** How it relays, for the report. */
  description: string;
  /** Fan-outs it can do (socat and nginx: 1 only). */
  supports(fanout: number): boolean;
  requirement?: Requirement;
  version(): string;
  start(setup: RelaySetup): Promise<StartResult>;
}

/** Wait for the port, then give forked workers a moment to appear before listing the process tree. */
async function running(setup: RelaySetup, proc: NsProcess, cleanup?: () => void): Promise<RunningRelay> {
  const stop = async (): Promise<void> => {
    await proc.stop(3_000);
    cleanup?.();
  };
  try {
    await waitForUdpPort(setup.topo, 'relay', setup.listenPort, proc);
    await new Promise((r) => setTimeout(r, 300));
    if (proc.exitStatus) throw new Error(`${proc.description} exited: ${proc.stderr().slice(-500)}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pids: processTree(proc.pid!), stop };
}

/**
 * `tuned`: the host's backlog raised by --tune-host's code (tuneHost, to
 * SUGGESTED_BACKLOG) while the relay runs, restored when it stops. The bench
 * calls it in its own (the host's) network namespace: `sluice relay
 * --tune-host` inside the relay's namespace cannot, since a namespace other
 * than the host's does not show net.core.netdev_max_backlog.
 */
function sluicePeer(tier: 'portable' | 'batched' | 'kernel', tuned = false): Peer {
  return {
    name: tuned ? `${tier}-tuned` : tier,
    description: `sluice relay --tier ${tier}${tuned ? `, host tuned as by --tune-host (net.core.netdev_max_backlog ${SUGGESTED_BACKLOG} while it runs)` : ''} (socket buffers: Sluice default 4 MiB)`,
    supports: () => true,
    version: () => versionOf('git', ['-C', REPO_ROOT, 'describe', '--always', '--dirty']),
    async start(setup) {
      const args = [
        SLUICE_BIN,
        'relay',
        '--tier',
        tier,
        '--listen',
        `udp://0.0.0.0:${setup.listenPort}`,
        ...setup.ports.flatMap((p) => ['--to', `udp://${SINK_ADDR}:${p}`]),
        '--allow',
        GEN_ADDR,
        '--json',
        '--stats-interval',
        '0',
      ];
      const tuning = tuned ? tuneHost({ backlog: SUGGESTED_BACKLOG }) : undefined;
      const proc = spawnPinned(setup.topo, 'relay', RELAY_CPU, process.execPath, args);
      try {
        await proc.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 15_000 });
      } catch (err) {
        const info = await proc.waitExit(5_000).catch(() => undefined);
        tuning?.restore();
        if (info?.code === 3) return { unavailable: proc.stderr().trim().split('\n').slice(-1)[0] || 'tier unavailable (exit 3)' };
        await proc.stop();
        throw err;
      }
      return { running: await running(setup, proc, tuning ? () => void tuning.restore() : undefined) };
    },
  };
}

const socat: Peer = {
  name: 'socat',
  description: `socat -u -b 65536 UDP4-RECV:PORT,rcvbuf=${SOCKET_BUFFER} UDP4-SENDTO:SINK:P,sndbuf=${SOCKET_BUFFER}`,
  supports: (n) => n === 1,
  requirement: { what: 'socat', present: () => commandExists('socat'), packages: ['socat'] },
  version: () => versionOf('socat', ['-V'], /socat version/),
  async start(setup) {
    const proc = spawnPinned(setup.topo, 'relay', RELAY_CPU, 'socat', [
      '-u',
      '-b',
      '65536',
      `UDP4-RECV:${setup.listenPort},rcvbuf=${SOCKET_BUFFER}`,
      `UDP4-SENDTO:${SINK_ADDR}:${setup.ports[0]},sndbuf=${SOCKET_BUFFER}`,
    ]);
    return { running: await running(setup, proc) };
  },
};

/**
 * nginx stream UDP proxy: one worker (the relay gets one core), datagrams
 * from the generator's single address:port form one UDP session that lives
 * while traffic flows (proxy_timeout), so the upstream socket is reused.
 * proxy_responses 0: no reply is expected from the subscriber.
 */
const nginx: Peer = {
  name: 'nginx',
  description: `nginx stream: worker_processes 1; listen PORT udp rcvbuf=${SOCKET_BUFFER} sndbuf=${SOCKET_BUFFER}; proxy_pass SINK:P; proxy_responses 0; proxy_timeout 30s (upstream socket: kernel default buffers)`,
  supports: (n) => n === 1,
  requirement: nginxRequirement,
  version: nginxVersion,
  async start(setup) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-nginx-'));
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      nginxStreamConfig(dir, [
        '  server {',
        `    listen ${setup.listenPort} udp rcvbuf=${SOCKET_BUFFER} sndbuf=${SOCKET_BUFFER};`,
        `    proxy_pass ${SINK_ADDR}:${setup.ports[0]};`,
        '    proxy_responses 0;',
        '    proxy_timeout 30s;',
        '  }',
      ]),
    );
    const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
    const proc = spawnPinned(setup.topo, 'relay', RELAY_CPU, 'nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf]);
    try {
      return { running: await running(setup, proc, cleanup) };
    } catch (err) {
      cleanup();
      throw err;
    }
  },
};

/** GStreamer: udpsrc ! multiudpsink, one streaming thread, sendmmsg to all clients per buffer. */
const gstreamer: Peer = {
  name: 'gstreamer',
  description: `gst-launch-1.0 udpsrc port=PORT buffer-size=${SOCKET_BUFFER} ! multiudpsink clients=SINK:P1,... buffer-size=${SOCKET_BUFFER} sync=false async=false`,
  supports: () => true,
  requirement: {
    what: 'gstreamer',
    present: () => commandExists('gst-launch-1.0') && succeeds('gst-inspect-1.0', ['udpsrc']) && succeeds('gst-inspect-1.0', ['multiudpsink']),
    packages: ['gstreamer1.0-tools', 'gstreamer1.0-plugins-base', 'gstreamer1.0-plugins-good'],
  },
  version: () => versionOf('gst-launch-1.0', ['--version'], /^GStreamer /),
  async start(setup) {
    const clients = setup.ports.map((p) => `${SINK_ADDR}:${p}`).join(',');
    const proc = spawnPinned(setup.topo, 'relay', RELAY_CPU, 'gst-launch-1.0', [
      '-q',
      'udpsrc',
      `port=${setup.listenPort}`,
      `buffer-size=${SOCKET_BUFFER}`,
      '!',
      'multiudpsink',
      `clients=${clients}`,
      `buffer-size=${SOCKET_BUFFER}`,
      'sync=false',
      'async=false',
    ]);
    return { running: await running(setup, proc) };
  },
};

/** kernel-tuned: the host tuned as by --tune-host while it runs; for runs with --backlog 1000 (issue 22 part 4). */
export const ALL_PEERS: readonly Peer[] = [
  sluicePeer('portable'),
  sluicePeer('batched'),
  socat,
  nginx,
  gstreamer,
  sluicePeer('kernel'),
  sluicePeer('kernel', true),
];
/** Run unless --peers says otherwise. */
export const DEFAULT_PEERS = ['portable', 'batched', 'kernel', 'socat', 'nginx', 'gstreamer'];
