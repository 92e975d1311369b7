/**
 * The gateway's control socket (issue #7: status and counters per peer
 * and per flow via `sluice status`): HTTP on a Unix domain socket, so only
 * local users with access to the socket file can read it, and nothing
 * listens on the network. GET /status answers the gateway's status as
 * JSON.
 */
import http from 'node:http';
import { mkdirSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Where a gateway named `name` puts its socket unless the config says: /run/sluice as root, else the temp dir. */
export function defaultControlPath(name: string): string {
  const dir = process.getuid?.() === 0 ? '/run/sluice' : tmpdir();
  return join(dir, `tpo-${name}.sock`);
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

export async function startControlServer(path: string, status: () => unknown): Promise<ControlServer> {
  mkdirSync(dirname(path), { recursive: true });
  // A socket file left by a crashed run would make listen fail with EADDRINUSE.
  rmSync(path, { force: true });
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/status' || req.url === '/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status()));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'GET /status' }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o660);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          rmSync(path, { force: true });
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** GET /status from a gateway's control socket. */
export function fetchStatus(path: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: path, path: '/status', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
