/* eslint-disable max-lines -- the safety model in one file: what creates namespaces and veths and what is sure to delete them (registry, exit handlers, stale sweep) are read together */
/**
 * Multi-host test topologies built from Linux network namespaces and veth
 * pairs.
 *
 * Safety model (the whole point of this file): every `ip` command here runs
 * either as `ip -n <ns> ...` or `ip netns exec <ns> ...` against a namespace
 * this module created itself, and veth pairs are created *inside* a test
 * namespace with the peer placed straight into another test namespace, so
 * no interface, address or route ever exists in the root namespace, not even
 * for a moment. Deleting a namespace destroys its veth ends, so cleanup is
 * "kill the processes inside, then `ip netns del`".
 *
 * Cleanup runs on `destroy()`, in `withTopology`'s finally, on process
 * `exit` (synchronously), on SIGINT/SIGTERM, and, for a process that was
 * SIGKILLed, at the next `createTopology()` of any later run (namespaces
 * carry the creating pid in their name; those whose pid is gone are swept).
 */
import { execFile, execFileSync, spawn as spawnChild, type SpawnOptions } from 'node:child_process';
import { liveChildren, NsProcess } from './ns-process.js';

export { NsProcess, waitForLine, type ExitInfo, type WaitForLineOptions } from './ns-process.js';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Every namespace this helper creates starts with this (tests assert none is left). */
export const NETNS_PREFIX = 'sluice-t-';

/** Repo root, so `node --import tsx` resolves tsx from our node_modules. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How long to wait for stdout/stderr to close after the child exited. */
const IFNAME_MAX = 15; // IFNAMSIZ - 1
const LOGICAL_NAME = /^[a-z0-9][a-z0-9_]{0,15}$/i;
const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;

// ---------------------------------------------------------------------------
// Spec types

export interface LinkEnd {
  /** Logical namespace name (one of `TopologySpec.namespaces`). */
  ns: string;
  /** Interface name inside that namespace; default `v<link#>-<peer>` cut to 15 chars. */
  ifname?: string;
  /** IPv4 CIDR(s), e.g. `10.201.1.2/24`. The first is the primary address. */
  ipv4?: string | readonly string[];
  /** IPv6 CIDR(s), e.g. `fd00:201:1::2/64`. Added with `nodad`, usable at once. */
  ipv6?: string | readonly string[];
}

export interface LinkSpec {
  a: LinkEnd;
  b: LinkEnd;
  mtu?: number;
}

export interface RouteSpec {
  /** Logical namespace. */
  ns: string;
  /**
   * Arguments after `ip route add`, e.g. `['10.201.2.0/24', 'via', '10.201.1.1']`
   * or `['unreachable', '10.9.0.0/16']`. `ip` picks the family from the prefix.
   */
  args: readonly string[];
}

export interface TopologySpec {
  /** Logical namespace names: short, `[a-z0-9_]`. */
  namespaces: readonly string[];
  links?: readonly LinkSpec[];
  /** Added after all links are up (a `via` needs a connected route first). */
  routes?: readonly RouteSpec[];
  /** Namespaces in which IPv4 and IPv6 forwarding are enabled. */
  forwarding?: readonly string[];
}

// ---------------------------------------------------------------------------
// Module-level registry, used by the synchronous crash cleanup.

/** Real names of namespaces created and not yet deleted by this process. */
const liveNamespaces = new Set<string>();

let handlersInstalled = false;

/**
 * Synchronous last-resort cleanup. Must not throw and must not be async:
 * on 'exit' the event loop is gone.
 */
function cleanupSync(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const ns of [...liveNamespaces]) {
    deleteNamespaceSync(ns);
    liveNamespaces.delete(ns);
  }
}

/** Kill whatever still runs inside `ns`, then delete it. Best effort. */
function deleteNamespaceSync(ns: string): void {
  // A namespace whose name was deleted stays alive while any process is in
  // it (keeping its veths and addresses), so processes go first.
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* raced with its exit */
      }
    }
  } catch {
    /* namespace already gone */
  }
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupSync);
  // node:test's own SIGINT/SIGTERM handlers call process.exit() (so 'exit'
  // above runs), but a plain script has none: then the signal would kill us
  // without 'exit'. Clean up, and if nobody else handles the signal, re-raise
  // it so the process still dies of that signal as it would have.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupSync();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.once(sig, onSignal);
  }
}

function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Real names of every namespace on the host that this helper created (any run). */
export function listTestNamespaces(): string[] {
  let out = '';
  try {
    out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return [];
  }
  // Lines look like `name` or `name (id: 3)`.
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX));
}

/**
 * Delete namespaces left behind by test processes that no longer exist
 * (e.g. SIGKILLed, so no exit handler ran). Only names with our prefix and a
 * dead creator pid are touched. Returns the names it deleted.
 */
export function sweepStaleNamespaces(): string[] {
  const swept: string[] = [];
  for (const ns of listTestNamespaces()) {
    const m = /^sluice-t-(\d+)-/.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isPidAlive(pid)) continue;
    deleteNamespaceSync(ns);
    swept.push(ns);
  }
  return swept;
}

let sweptOnce = false;

function uniqueNsName(logical: string, runId: string): string {
  return `${NETNS_PREFIX}${process.pid}-${runId}-${logical}`;
}

// ---------------------------------------------------------------------------
// Skip probe

let skipReasonCache: { value: string | undefined } | undefined;

/**
 * Why namespace tests cannot run here, or undefined when they can. Use as
 * `test('...', { skip: rootSkipReason() }, ...)`. Probes for real (creates
 * and deletes a throwaway namespace) because being root is not enough in
 * e.g. an unprivileged container.
 */
export function rootSkipReason(): string | undefined {
  skipReasonCache ??= { value: probe() };
  const value = skipReasonCache.value;
  // CI runs as root precisely so that these tests run: there a failed probe
  // is a broken machine (or .ci/run), not a reason to skip quietly.
  if (value !== undefined && process.env.CI === 'true' && process.getuid?.() === 0) {
    throw new Error(`CI=true as root, so the namespace tests must run, but they cannot: ${value}`);
  }
  return value;
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (platform is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return `needs root to create network namespaces (uid is ${process.getuid()}); run as root to enable`;
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return "iproute2 'ip' command not found (install iproute2)";
  }
  const name = uniqueNsName('probe', randomBytes(3).toString('hex'));
  try {
    execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    return `'ip netns add' failed (${stderr || (err as Error).message}); namespaces unavailable here`;
  }
  return probeInside(name);
}

/** Second half of the probe; always deletes the probe namespace. */
function probeInside(name: string): string | undefined {
  installExitHandlers();
  liveNamespaces.add(name);
  try {
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    deleteNamespaceSync(name);
    liveNamespaces.delete(name);
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    return `cannot configure a network namespace (${stderr || (err as Error).message})`;
  }
  try {
    // Topologies set per-namespace sysctls (DAD off, forwarding) this way.
    execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-n', 'net.ipv4.ip_forward'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    return `cannot run sysctl inside a namespace (${stderr || (err as Error).message}); install procps`;
  } finally {
    deleteNamespaceSync(name);
    liveNamespaces.delete(name);
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Child processes inside a namespace

// ---------------------------------------------------------------------------
// Topology

export interface ExecOptions {
  /** Milliseconds; default 30 000. */
  timeoutMs?: number;
  input?: string;
}

export interface NsSpawnOptions {
  cwd?: string;
  /** Merged over this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** 'pipe' to talk to the child with writeLine()/endInput(); default 'ignore'. */
  stdin?: 'ignore' | 'pipe';
}

interface LinkInfo {
  a: { ns: string; ifname: string };
  b: { ns: string; ifname: string };
}

/** Child env: ours minus node:test's marker, which would confuse a child node. */
function childEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

export class Topology {
  readonly #real = new Map<string, string>();
  readonly #processes = new Set<NsProcess>();
  readonly #linkInfo: LinkInfo[] = [];
  #destroyPromise: Promise<void> | undefined;

  /** @internal use createTopology() */
  constructor(readonly runId: string) {}

  /** Logical names of the namespaces. */
  get namespaces(): string[] {
    return [...this.#real.keys()];
  }

  /** Real (`ip netns`) names of the namespaces. */
  get realNames(): string[] {
    return [...this.#real.values()];
  }

  /** Real `ip netns` name of a logical namespace. */
  nsName(ns: string): string {
    const r = this.#real.get(ns);
    if (r === undefined) throw new Error(`unknown namespace '${ns}' (have: ${this.namespaces.join(', ')})`);
    if (this.#destroyPromise) throw new Error(`topology already destroyed (namespace '${ns}')`);
    return r;
  }

  /**
   * Interface name in `ns` of the (first) link towards `peer`, e.g. to add
   * an address or read counters.
   */
  ifname(ns: string, peer: string): string {
    for (const l of this.#linkInfo) {
      if (l.a.ns === ns && l.b.ns === peer) return l.a.ifname;
      if (l.b.ns === ns && l.a.ns === peer) return l.b.ifname;
    }
    throw new Error(`no link between '${ns}' and '${peer}'`);
  }

  /** `ip -n <ns> ...args`; resolves with stdout. */
  ip(ns: string, args: readonly string[], opts?: ExecOptions): Promise<string> {
    return run('ip', ['-n', this.nsName(ns), ...args], opts);
  }

  /**
   * Run `cmd args` inside `ns` to completion; resolves with stdout, rejects
   * with an error that includes stderr.
   */
  exec(ns: string, cmd: string, args: readonly string[] = [], opts?: ExecOptions): Promise<string> {
    return run('ip', ['netns', 'exec', this.nsName(ns), cmd, ...args], opts, { env: childEnv() });
  }

  /**
   * Start a long-running `cmd args` inside `ns`. `ip netns exec` execs the
   * command in place, so the child's pid is the command's pid and signals
   * reach it directly. Tracked: destroy() and the exit handler kill it.
   */
  spawn(ns: string, cmd: string, args: readonly string[] = [], opts: NsSpawnOptions = {}): NsProcess {
    const real = this.nsName(ns);
    const spawnOpts: SpawnOptions = {
      cwd: opts.cwd ?? REPO_ROOT,
      env: childEnv(opts.env),
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    };
    const child = spawnChild('ip', ['netns', 'exec', real, cmd, ...args], spawnOpts);
    const proc = new NsProcess(child, ns, `[${ns}] ${cmd} ${args.join(' ')}`);
    this.#processes.add(proc);
    void proc.exited.then(() => this.#processes.delete(proc));
    return proc;
  }

  /** Spawn `node --import tsx <script> ...args` inside `ns` (cwd: repo root). */
  runNode(ns: string, scriptPath: string, args: readonly string[] = [], opts: NsSpawnOptions = {}): NsProcess {
    return this.spawn(ns, process.execPath, ['--import', 'tsx', scriptPath, ...args], opts);
  }

  /** Add an address to an interface in `ns` (IPv6 with `nodad`, usable at once). */
  async addAddress(ns: string, ifname: string, cidr: string): Promise<void> {
    const v6 = cidr.includes(':');
    await this.ip(ns, [...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', ifname, ...(v6 ? ['nodad'] : [])]);
  }

  /** `ip route add ...args` inside `ns`. */
  async addRoute(ns: string, args: readonly string[]): Promise<void> {
    await this.ip(ns, ['route', 'add', ...args]);
  }

  /** Turn on IPv4 and IPv6 forwarding inside `ns` (never in the root namespace). */
  async enableForwarding(ns: string): Promise<void> {
    await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  }

  /**
   * Kill every spawned child (SIGTERM, then SIGKILL after `graceMs`) and
   * delete every namespace. Idempotent; concurrent calls share one run.
   */
  destroy(graceMs = 2_000): Promise<void> {
    this.#destroyPromise ??= this.#doDestroy(graceMs);
    return this.#destroyPromise;
  }

  async #doDestroy(graceMs: number): Promise<void> {
    const procs = [...this.#processes];
    await Promise.all(procs.map((p) => p.terminate(graceMs)));
    for (const real of this.#real.values()) {
      // SIGKILLs what is still inside (grandchildren, a stuck exec()) before
      // deleting: a namespace with live processes outlives `ip netns del`.
      deleteNamespaceSync(real);
      liveNamespaces.delete(real);
    }
    // Grandchildren are dead now, so the pipes close and output is complete.
    await Promise.all(procs.map((p) => p.exited));
  }

  /** @internal */
  async build(spec: TopologySpec): Promise<void> {
    for (const ns of spec.namespaces) {
      if (!LOGICAL_NAME.test(ns)) throw new Error(`bad namespace name '${ns}': use 1-16 chars of [a-z0-9_]`);
      if (this.#real.has(ns)) throw new Error(`duplicate namespace '${ns}'`);
      const real = uniqueNsName(ns, this.runId);
      await run('ip', ['netns', 'add', real]);
      // Registered the moment it exists, so a failure below still cleans it.
      liveNamespaces.add(real);
      this.#real.set(ns, real);
      await this.ip(ns, ['link', 'set', 'lo', 'up']);
      // Set before any veth exists so new interfaces inherit it: no DAD
      // means IPv6 addresses (link-local too) are usable immediately instead
      // of ~1-2 s later.
      await this.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    }

    (spec.links ?? []).forEach((link, i) => {
      if (link.a.ns === link.b.ns) throw new Error(`link ${i}: both ends in '${link.a.ns}'`);
      const a = { ns: link.a.ns, ifname: link.a.ifname ?? `v${i}-${link.b.ns}`.slice(0, IFNAME_MAX) };
      const b = { ns: link.b.ns, ifname: link.b.ifname ?? `v${i}-${link.a.ns}`.slice(0, IFNAME_MAX) };
      for (const end of [a, b]) {
        if (!IFNAME.test(end.ifname)) throw new Error(`link ${i}: bad interface name '${end.ifname}' (max 15 chars)`);
      }
      this.#linkInfo.push({ a, b });
    });

    for (const [i, link] of (spec.links ?? []).entries()) {
      const info = this.#linkInfo[i]!;
      // Created inside namespace a with the peer placed straight into
      // namespace b: neither end ever appears in the root namespace.
      await this.ip(info.a.ns, [
        'link',
        'add',
        info.a.ifname,
        ...(link.mtu ? ['mtu', String(link.mtu)] : []),
        'type',
        'veth',
        'peer',
        'name',
        info.b.ifname,
        'netns',
        this.nsName(info.b.ns),
      ]);
      for (const [end, ifname] of [
        [link.a, info.a.ifname],
        [link.b, info.b.ifname],
      ] as const) {
        if (link.mtu) await this.ip(end.ns, ['link', 'set', ifname, 'mtu', String(link.mtu)]);
        for (const cidr of asList(end.ipv4)) await this.addAddress(end.ns, ifname, cidr);
        for (const cidr of asList(end.ipv6)) await this.addAddress(end.ns, ifname, cidr);
        await this.ip(end.ns, ['link', 'set', ifname, 'up']);
      }
    }

    for (const ns of spec.forwarding ?? []) await this.enableForwarding(ns);
    for (const r of spec.routes ?? []) await this.addRoute(r.ns, r.args);
    for (const [i, link] of (spec.links ?? []).entries()) {
      const info = this.#linkInfo[i]!;
      await this.#primeNeighbours(info.a.ns, info.a.ifname, link.a, link.b);
      await this.#primeNeighbours(info.b.ns, info.b.ifname, link.b, link.a);
    }
  }

  /**
   * Resolves the peer's addresses (ARP / IPv6 ND) before a test sends.
   * Until a neighbour resolves, the kernel parks only ~200 KB of packets
   * for it and drops the oldest beyond that, so a test that starts with a
   * fast burst on a fresh veth would see start-up loss that has nothing to
   * do with the code under test (seen on IPv6 under CPU load). One datagram
   * to the discard port triggers resolution; we then wait for the entry.
   */
  async #primeNeighbours(ns: string, ifname: string, self: LinkEnd, peer: LinkEnd): Promise<void> {
    // An end without an address of a family cannot resolve peers of that
    // family (e.g. a bridge port such as the WAN emulator's, see
    // wan-topology.ts): nothing to prime there.
    const mine = [...(asList(self.ipv4).length ? asList(peer.ipv4) : []), ...(asList(self.ipv6).length ? asList(peer.ipv6) : [])];
    for (const cidr of mine) {
      const addr = cidr.split('/')[0]!;
      const deadline = Date.now() + 5_000;
      for (;;) {
        await this.exec(ns, 'bash', ['-c', `echo prime > /dev/udp/${addr}/9`]).catch(() => undefined);
        const state = await this.ip(ns, ['neigh', 'show', addr, 'dev', ifname]);
        if (/\b(REACHABLE|STALE|DELAY|PROBE|PERMANENT)\b/.test(state)) break;
        if (Date.now() > deadline) throw new Error(`neighbour ${addr} on ${ns}/${ifname} did not resolve: '${state.trim()}'`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

function asList(v: string | readonly string[] | undefined): readonly string[] {
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

async function run(cmd: string, args: readonly string[], opts: ExecOptions = {}, extra: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const timeout = opts.timeoutMs ?? 30_000;
  try {
    const p = execFileAsync(cmd, [...args], {
      encoding: 'utf8',
      timeout,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024,
      cwd: REPO_ROOT,
      ...(extra.env ? { env: extra.env } : {}),
    });
    if (opts.input !== undefined) {
      p.child.stdin?.end(opts.input);
    }
    const { stdout } = await p;
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean; signal?: string };
    const why = e.killed ? `killed after ${timeout} ms timeout` : e.code !== undefined ? `exit ${e.code}` : e.message;
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed (${why}): ${(e.stderr ?? '').trim() || e.message}`, {
      cause: err,
    });
  }
}

/**
 * Build the namespaces, veths, addresses, forwarding and routes of `spec`.
 * On any failure, what was created is destroyed before the error propagates.
 */
export async function createTopology(spec: TopologySpec): Promise<Topology> {
  installExitHandlers();
  if (!sweptOnce) {
    sweptOnce = true;
    sweepStaleNamespaces();
  }
  const topo = new Topology(randomBytes(3).toString('hex'));
  try {
    await topo.build(spec);
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

/** createTopology + try/finally destroy. */
export async function withTopology<T>(spec: TopologySpec, body: (topo: Topology) => Promise<T>): Promise<T> {
  const topo = await createTopology(spec);
  try {
    return await body(topo);
  } finally {
    await topo.destroy();
  }
}
