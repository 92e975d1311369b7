/**
 * A real single-member etcd for tests (Debian package etcd-server, binary
 * `etcd`): loopback only, free client and peer ports, a temporary data
 * directory. start() resolves once /health answers true; stop() kills it
 * and removes the directory. kill() is a `kill -9` for failure tests.
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
  /** SIGKILL, without removing the data dir (a crash). */
  kill(): Promise<void>;
  /** Stops etcd and removes its data dir; idempotent. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts etcd and waits (up to `readyTimeoutMs`, default 30 s) until it answers. */
export async function startEtcd(options: { readyTimeoutMs?: number } = {}): Promise<EtcdServer> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-etcd-'));
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const name = 'sluice-test';
  const child = spawn(
    'etcd',
    [
      '--name', name,
      '--data-dir', dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${name}=${peerUrl}`,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', `sluice-${clientPort}`,
    ], // prettier-ignore
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  // Keep only the tail: etcd logs a line per compaction, lease expiry, etc.
  const keep = (c: Buffer) => (out = (out + c.toString('utf8')).slice(-20_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopped = false;
  const server: EtcdServer = {
    endpoint: `127.0.0.1:${clientPort}`,
    clientUrl,
    dataDir,
    log: () => out,
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
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  while (!(await healthy(clientUrl))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await server.stop();
      throw new Error(`etcd did not become healthy at ${clientUrl}:\n${out.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return server;
}
