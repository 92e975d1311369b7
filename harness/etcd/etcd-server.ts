/**
 * A real single-member etcd for tests (Debian package etcd-server, binary
 * `etcd`): loopback only, free client and peer ports, a temporary data
 * directory. start() resolves once /health answers true; stop() kills it
 * and removes the directory. kill() is a `kill -9` for failure tests.
 * spawnEtcdMember and waitHealthy also start the members of a cluster
 * (etcd-cluster.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Why the etcd tests cannot run here, or undefined when they can. */
export function etcdSkipReason(): string | undefined {
  const r = spawnSync('etcd', ['--version'], { stdio: 'ignore' });
  return r.status === 0 ? undefined : 'the etcd binary is not installed (Debian package etcd-server)';
}

/** A free TCP port on 127.0.0.1 (closed again before use: a small race, fine on a test host). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(`${url}/health`, { timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 && /"health"\s*:\s*"true"/.test(body)));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export interface EtcdServer {
  /** host:port for clients. */
  readonly endpoint: string;
  readonly clientUrl: string;
  readonly dataDir: string;
  /** Output of etcd so far (for failure messages). */
  log(): string;
  /** False once the process exited (killed or stopped). */
  alive(): boolean;
  /** SIGKILL, without removing the data dir (a crash). */
  kill(): Promise<void>;
  /** Stops etcd and removes its data dir; idempotent. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** One etcd member's flags: its name, ports, data directory and the cluster it starts (or, with a data directory, rejoins). */
export interface EtcdMemberSpec {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  /** `--initial-cluster`: NAME=http://127.0.0.1:PEER,... (this member alone when undefined). */
  readonly initialCluster?: string;
  readonly clusterToken: string;
}

export function peerUrlOf(port: number): string {
  return `http://127.0.0.1:${port}`;
}

/**
 * Spawns one member on loopback and returns at once (see waitHealthy);
 * stop() removes `spec.dataDir`. A member spawned again on the directory
 * of a killed one rejoins its cluster (etcd then ignores the initial flags).
 */
export function spawnEtcdMember(spec: EtcdMemberSpec): EtcdServer {
  const clientUrl = `http://127.0.0.1:${spec.clientPort}`;
  const peerUrl = peerUrlOf(spec.peerPort);
  const child = spawn(
    'etcd',
    [
      '--name', spec.name,
      '--data-dir', spec.dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', spec.initialCluster ?? `${spec.name}=${peerUrl}`,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', spec.clusterToken,
    ], // prettier-ignore
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  // Keep only the tail: etcd logs a line per compaction, lease expiry, etc.
  const keep = (c: Buffer) => (out = (out + c.toString('utf8')).slice(-20_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopped = false;
  return {
    endpoint: `127.0.0.1:${spec.clientPort}`,
    clientUrl,
    dataDir: spec.dataDir,
    log: () => out,
    alive: () => child.exitCode === null && child.signalCode === null,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited(child);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited(child);
        clearTimeout(t);
      }
      rmSync(spec.dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves once the member's /health answers true (it has a leader); throws past the deadline or if it exits. */
export async function waitHealthy(server: EtcdServer, deadline: number): Promise<void> {
  while (!(await healthy(server.clientUrl))) {
    if (!server.alive() || Date.now() > deadline) {
      throw new Error(`etcd did not become healthy at ${server.clientUrl}:\n${server.log().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts etcd and waits (up to `readyTimeoutMs`, default 30 s) until it answers. */
export async function startEtcd(options: { readyTimeoutMs?: number } = {}): Promise<EtcdServer> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-etcd-'));
  const server = spawnEtcdMember({ name: 'sluice-test', clientPort, peerPort, dataDir, clusterToken: `sluice-${clientPort}` });
  try {
    await waitHealthy(server, Date.now() + (options.readyTimeoutMs ?? 30_000));
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
