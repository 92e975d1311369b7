/**
 * The gateway's control socket (issue #7: status and counters per peer
 * and per flow via `sluice status`): HTTP on a Unix domain socket, so only
 * local users with access to the socket file can read it, and nothing
 * listens on the network. GET /status answers the gateway's status as
 * JSON.
 *
 * The path is handled as hostile ground (issue #16): the default lives in
 * a private directory (0700, owned by this user: /run/sluice as root,
 * else `$TMPDIR/sluice-UID`), which is refused if it is a symbolic link or
 * someone else's. Whatever already exists at the socket's path is looked
 * at with lstat (never followed): only a socket nobody answers on (left by
 * a crashed gateway) is removed; a live socket, a directory, a regular
 * file or a symbolic link is left alone and reported. Close removes the
 * socket only if it is still the one this server created. Every failure
 * is a ControlSocketError naming the path (`sluice tpo` exits 2 with it).
 */
import http from 'node:http';
import net from 'node:net';
import { chmodSync, lstatSync, mkdirSync, unlinkSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SluiceError } from '../errors.js';

export class ControlSocketError extends SluiceError<'SLUICE_ERR_CONTROL_SOCKET'> {
  readonly path: string;
  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super('SLUICE_ERR_CONTROL_SOCKET', `control socket ${path}: ${reason}`, options);
    this.name = 'ControlSocketError';
    this.path = path;
  }
}

/** The private directory the default control sockets live in: /run/sluice as root, else $TMPDIR/sluice-UID. */
export function defaultControlDir(): string {
  const uid = process.getuid?.();
  return uid === 0 ? '/run/sluice' : join(tmpdir(), `sluice-${uid ?? 'user'}`);
}

/** Where a gateway named `name` puts its socket unless the config says. */
export function defaultControlPath(name: string): string {
  return join(defaultControlDir(), `tpo-${name}.sock`);
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function kind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a socket';
}

/**
 * The default directory: created 0700, or if it exists, a real directory
 * owned by this user (tightened to 0700 if it was looser). Anything else
 * (a symbolic link planted in a shared temp dir, another user's
 * directory) is refused.
 */
function ensurePrivateDir(dir: string, socketPath: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new ControlSocketError(socketPath, `cannot create directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        cause: err,
      });
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new ControlSocketError(socketPath, `${dir} is ${kind(st)}, not a directory (not followed)`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new ControlSocketError(socketPath, `directory ${dir} belongs to uid ${st.uid}, not to this user (${uid})`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

/** A configured path's directory: made (0700) if missing; it must be a directory. */
function ensureDir(dir: string, socketPath: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ControlSocketError(
      socketPath,
      code === 'EEXIST' || code === 'ENOTDIR' ? `${dir} is not a directory` : `cannot create directory ${dir}: ${code ?? (err as Error).message}`,
      { cause: err },
    );
  }
}

/** Resolves true when something accepts a connection on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    // A listener that accepts takes no time; a full backlog is a live server too.
    const timer = setTimeout(() => done(true), 2000);
    s.once('connect', () => done(true));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/**
 * Makes the path free for a new socket: nothing there, or a socket no
 * server answers on (removed). Anything else is an error naming what it is.
 */
async function clearPath(path: string): Promise<void> {
  const st = lstatOrUndefined(path);
  if (!st) return;
  if (!st.isSocket())
    throw new ControlSocketError(path, `the path exists and is ${kind(st)}; it is not removed (remove it yourself or set another control: path)`);
  if (await answers(path)) throw new ControlSocketError(path, 'another process already answers on this socket (a gateway of the same name is running?)');
  // A stale socket from a gateway that did not close. Checked again just before: unlink only a socket.
  const again = lstatOrUndefined(path);
  if (!again) return;
  if (!again.isSocket() || again.ino !== st.ino) throw new ControlSocketError(path, 'the path changed while it was checked; not removed');
  try {
    unlinkSync(path);
  } catch (err) {
    throw new ControlSocketError(path, `cannot remove the stale socket: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

export interface ControlServerOptions {
  /** The path is the default one (its directory must be private: see ensurePrivateDir). */
  readonly privateDir?: boolean;
}

export async function startControlServer(path: string, status: () => unknown, options: ControlServerOptions = {}): Promise<ControlServer> {
  const dir = dirname(path);
  try {
    if (options.privateDir) ensurePrivateDir(dir, path);
    else ensureDir(dir, path);
    await clearPath(path);
  } catch (err) {
    if (err instanceof ControlSocketError) throw err;
    throw new ControlSocketError(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message, { cause: err });
  }
  const server = http.createServer((req, res) => {
    try {
      if (req.method === 'GET' && (req.url === '/status' || req.url === '/')) {
        const body = JSON.stringify(status());
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'GET /status' }));
      }
    } catch (err) {
      // A status that cannot be built is this request's failure, not the gateway's.
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (err as Error).message }));
    }
  });
  // Only local users who can reach the socket get here; still, few and short-lived.
  server.maxConnections = 32;
  server.requestTimeout = 10_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ControlSocketError(path, code === 'EADDRINUSE' ? 'the path was taken while starting' : `cannot listen: ${code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  // After listen, errors (a failed accept) must not end the gateway.
  server.on('error', () => undefined);
  let ino: number | undefined;
  try {
    chmodSync(path, 0o600);
    ino = lstatSync(path).ino;
  } catch {
    /* the socket works; its mode stays the directory's business */
  }
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          // Only our own socket goes: something put there since is not ours to remove.
          const st = lstatOrUndefined(path);
          if (st?.isSocket() && st.ino === ino) {
            try {
              unlinkSync(path);
            } catch {
              /* gone already */
            }
          }
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** What `sluice status` reads at most: a status is a few hundred bytes per flow, so 64 MiB is over 100,000 flows. */
export const MAX_STATUS_BYTES = 64 << 20;
/** ... and how long it waits for the whole answer (not just for the next byte). */
export const STATUS_TIMEOUT_MS = 10_000;

export interface FetchStatusOptions {
  /** The whole answer must arrive within this (default STATUS_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /** Larger answers are refused, and not read further (default MAX_STATUS_BYTES). */
  readonly maxBytes?: number;
}

const sizeText = (n: number) => (n % (1 << 20) === 0 ? `${n >> 20} MiB` : `${n} bytes`);

/**
 * GET /status from a gateway's control socket. Bounded in size and time
 * whatever answers there (another program, a wedged gateway): an answer
 * over `maxBytes`, or one not complete within `timeoutMs` — a server that
 * trickles bytes included — rejects with a plain Error naming the path.
 */
export function fetchStatus(path: string, options: number | FetchStatusOptions = {}): Promise<unknown> {
  const o = typeof options === 'number' ? { timeoutMs: options } : options;
  const timeoutMs = o.timeoutMs ?? STATUS_TIMEOUT_MS;
  const maxBytes = o.maxBytes ?? MAX_STATUS_BYTES;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(value);
    };
    const req = http.get({ socketPath: path, path: '/status' }, (res) => {
      const tooLarge = () => new Error(`${path}: the answer is larger than ${sizeText(maxBytes)}; not read further`);
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        finish(tooLarge());
        return;
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > maxBytes) finish(tooLarge());
        else chunks.push(c);
      });
      res.on('end', () => {
        if (settled) return;
        try {
          finish(undefined, JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          finish(new Error(`${path}: the answer is not JSON (not a Sluice gateway's control socket?)`));
        }
      });
      res.on('error', (err) => finish(new Error(`${path}: the answer broke off (${(err as NodeJS.ErrnoException).code ?? err.message})`)));
    });
    const timer = setTimeout(() => finish(new Error(`${path}: no complete answer within ${timeoutMs / 1000} s`)), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish(new Error(`no gateway answers on ${path}: ${err.code ?? err.message}`)));
  });
}
