/**
 * The loopback settings the kernel tier needs, and putting them back.
 *
 * The program looks routes up "as arriving on lo" (bpf_fib_lookup), which
 * needs forwarding on lo, and injects copies for local subscribers at lo's
 * ingress without a route, which needs route_localnet and accept_local
 * there. Sluice sets what is not already set while it needs them and
 * restores the original values once nobody needs them any more:
 *
 * - needers are running kernel-tier processes in this network namespace
 *   and pinned state that keeps forwarding without a process (`--pin`);
 * - they are recorded under /run/sluice/kernel/net-<netns inode>/ (the
 *   namespace's cookie is kept with them: an inode is reused once its
 *   namespace is gone), with the original values Sluice replaced, so a
 *   crashed process's changes are still undone by the next one that finds
 *   nobody left: a later kernel-tier run (when it stops) or `sluice detach`;
 * - a process counts while its pid lives with the same start time; pinned
 *   state while its pin directory exists;
 * - only a value Sluice changed is restored, and only if it still holds
 *   what Sluice wrote (someone who changed it since keeps their value);
 * - every step runs under a lock directory, so two processes starting and
 *   stopping at once never undo each other's settings.
 *
 * When /run cannot be written, a process restores what it changed itself
 * when it stops (nothing can be coordinated then; `notes` say so).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { netnsCookie, netnsInode } from '../../sys/netns.js';

export const DEFAULT_STATE_ROOT = '/run/sluice/kernel';

/** What the program needs, and the value it needs. */
export const LO_SETTINGS: readonly string[] = [
  '/proc/sys/net/ipv4/conf/lo/forwarding',
  '/proc/sys/net/ipv4/conf/lo/route_localnet',
  '/proc/sys/net/ipv4/conf/lo/accept_local',
  '/proc/sys/net/ipv6/conf/lo/forwarding',
];
const NEEDED = '1';
const LOCK_WAIT_MS = 5000;

const label = (path: string) => path.replace('/proc/sys/', '').replaceAll('/', '.');

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** `pid-<pid>-<start time>`: a pid alone may be reused by another process. */
function processId(pid: number): string | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // Fields after the command name (which may hold spaces and parentheses); start time is field 22.
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start ? `pid-${pid}-${start}` : undefined;
}

function processAlive(id: string): boolean {
  const m = /^pid-(\d+)-\d+$/.exec(id);
  return m !== null && processId(Number(m[1])) === id;
}

function pinEntry(pinDir: string): string {
  return `pin-${createHash('sha256').update(pinDir).digest('hex').slice(0, 16)}`;
}

/** Writes what is needed; returns the paths it changed, with their former values. */
function setNeeded(): Map<string, string> {
  const changed = new Map<string, string>();
  for (const path of LO_SETTINGS) {
    const before = read(path);
    if (before === undefined || before === NEEDED) continue;
    try {
      writeFileSync(path, NEEDED);
      changed.set(path, before);
    } catch {
      // IPv6 disabled, or read-only /proc/sys: the affected copies count as send errors.
    }
  }
  return changed;
}

/** Puts back `originals` where the value is still the one Sluice wrote; returns what it restored. */
function restore(originals: ReadonlyMap<string, string>): string[] {
  const done: string[] = [];
  for (const [path, value] of originals) {
    if (read(path) !== NEEDED) continue;
    try {
      writeFileSync(path, value);
      done.push(`${label(path)}=${value}`);
    } catch {
      // Not writable now: left as it is.
    }
  }
  return done;
}

/** The registry of one network namespace. */
class Registry {
  readonly dir: string;
  readonly #users: string;
  readonly #originals: string;

  constructor(root: string) {
    this.dir = join(root, `net-${netnsInode()}`);
    this.#users = join(this.dir, 'users');
    this.#originals = join(this.dir, 'original.json');
  }

  /** Runs `fn` holding the lock; the directory is created (and a stale one of a dead namespace cleared) first. */
  locked<T>(fn: () => T): T {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = join(this.dir, 'lock');
    const me = processId(process.pid) ?? `pid-${process.pid}-0`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        mkdirSync(lock);
        writeFileSync(join(lock, 'owner'), me);
        break;
      } catch (err) {
        // The last holder removes the whole directory when nobody is left: make it again.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          mkdirSync(this.dir, { recursive: true, mode: 0o700 });
          continue;
        }
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = read(join(lock, 'owner'));
        // A dead owner's lock, or one held far too long, is broken.
        if ((owner && !processAlive(owner)) || Date.now() > deadline) rmSync(lock, { recursive: true, force: true });
        else sleepSync(10);
      }
    }
    try {
      this.#checkNamespace();
      return fn();
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }

  /** State left by a namespace that is gone (same inode, other cookie) is not ours. */
  #checkNamespace(): void {
    const cookie = netnsCookie();
    const path = join(this.dir, 'cookie');
    if (read(path) === cookie) return;
    rmSync(this.#users, { recursive: true, force: true });
    rmSync(this.#originals, { force: true });
    writeFileSync(path, cookie);
  }

  originals(): Map<string, string> {
    try {
      return new Map(Object.entries(JSON.parse(readFileSync(this.#originals, 'utf8')) as Record<string, string>));
    } catch {
      return new Map();
    }
  }

  saveOriginals(m: ReadonlyMap<string, string>): void {
    writeFileSync(this.#originals, JSON.stringify(Object.fromEntries(m)));
  }

  addUser(name: string, content = ''): void {
    mkdirSync(this.#users, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.#users, name), content);
  }

  removeUser(name: string): void {
    rmSync(join(this.#users, name), { force: true });
  }

  /** Needers still there, after dropping dead processes and vanished pin directories. */
  liveUsers(): string[] {
    let names: string[] = [];
    try {
      names = readdirSync(this.#users);
    } catch {
      return [];
    }
    return names.filter((n) => {
      const alive = n.startsWith('pin-') ? existsSync(read(join(this.#users, n)) ?? '') : processAlive(n);
      if (!alive) this.removeUser(n);
      return alive;
    });
  }

  /** With nobody left: restores the originals and removes the namespace's state (the lock with it). */
  restoreIfUnused(): string[] {
    if (this.liveUsers().length > 0) return [];
    const done = restore(this.originals());
    rmSync(this.dir, { recursive: true, force: true });
    return done;
  }
}

/** One process's use of the settings, from `acquire` until `release`. */
/**
 * Registry leases this process holds: the registry knows processes, not
 * planes, so with two kernel planes in one process (two Sluice instances)
 * only the last release may drop the process's entry, or the first plane's
 * settings would be restored under it.
 */
let leasesInProcess = 0;

export class LoopbackLease {
  /** Settings this start changed, as `net.ipv4.conf.lo.forwarding=1`. */
  readonly changed: readonly string[];
  /** What could not be done as designed (for notes). */
  readonly notes: readonly string[];
  readonly #registry: Registry | undefined;
  /** Without a registry: what this process changed, to undo itself. */
  readonly #own: ReadonlyMap<string, string>;
  #released = false;

  private constructor(changed: Map<string, string>, registry: Registry | undefined, notes: string[]) {
    this.changed = [...changed.keys()].map((p) => `${label(p)}=${NEEDED}`);
    this.#own = changed;
    this.#registry = registry;
    this.notes = notes;
  }

  /** Registers this process as a needer and sets what is not set yet. */
  static acquire(root = DEFAULT_STATE_ROOT): LoopbackLease {
    const registry = new Registry(root);
    try {
      return registry.locked(() => {
        registry.liveUsers(); // drop the dead first: their originals stay for whoever restores
        const originals = registry.originals();
        const changed = setNeeded();
        // The oldest original wins: a crashed run's value is the host's, ours would be its "1".
        for (const [path, value] of changed) if (!originals.has(path)) originals.set(path, value);
        registry.saveOriginals(originals);
        registry.addUser(processId(process.pid) ?? `pid-${process.pid}-0`);
        leasesInProcess++;
        return new LoopbackLease(changed, registry, []);
      });
    } catch (err) {
      const changed = setNeeded();
      return new LoopbackLease(changed, undefined, [
        `lo settings: ${registry.dir} unusable (${(err as Error).message}); this process restores what it changed when it stops, without coordinating with other Sluice processes`,
      ]);
    }
  }

  /**
   * This process no longer needs the settings. `pinDir`: pinned state that
   * keeps forwarding without it (it needs them until `sluice detach` or a
   * later run removes it). Returns what was restored, if anything.
   */
  release(pinDir?: string): string[] {
    if (this.#released) return [];
    this.#released = true;
    const registry = this.#registry;
    if (!registry) return pinDir ? [] : restore(this.#own);
    try {
      return registry.locked(() => {
        if (--leasesInProcess > 0) {
          // Another plane of this process still needs the settings.
          if (pinDir) registry.addUser(pinEntry(pinDir), pinDir);
          return [];
        }
        registry.removeUser(processId(process.pid) ?? `pid-${process.pid}-0`);
        if (pinDir) {
          registry.addUser(pinEntry(pinDir), pinDir);
          return [];
        }
        return registry.restoreIfUnused();
      });
    } catch {
      return [];
    }
  }
}

/**
 * For `sluice detach`: the pinned state in `pinDir` is gone; restores the
 * settings if nothing else needs them (no live kernel-tier process, no
 * other pinned state). Also what undoes a crashed process's changes.
 */
export function releasePinned(pinDir: string, root = DEFAULT_STATE_ROOT): string[] {
  const registry = new Registry(root);
  if (!existsSync(registry.dir)) return [];
  return registry.locked(() => {
    registry.removeUser(pinEntry(pinDir));
    return registry.restoreIfUnused();
  });
}
