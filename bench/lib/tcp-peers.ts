/**
 * The TCP proxies the tcp suite compares (bench/lib/tcp-suite.ts): Sluice's
 * tcp-redirect (splice path and user-space path), nginx's stream proxy,
 * HAProxy (as shipped, and with `option splice-auto`), socat, and "direct"
 * (no proxy, the baseline). Each listens on 127.0.0.1 and forwards to the
 * sink's port; each is pinned to one CPU with taskset. Configurations are
 * the packages' defaults apart from one worker / thread (one core each).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clockTicks, processTree } from './cpu.js';
import { nginxRequirement, nginxStreamConfig, nginxVersion } from './nginx.js';
import { commandExists, versionOf, type Requirement } from './install.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface RunningProxy {
  /** Where clients connect. */
  port: number;
  /** The proxy's main process (undefined: direct). */
  pid: number | undefined;
  stop(): Promise<void>;
  /** After stop(): the proxy's last counters, where it prints them (Sluice's peers: `{"event":"final",…}`). */
  final?(): Record<string, unknown> | undefined;
}

export interface TcpPeer {
  name: string;
  description: string;
  requirement?: Requirement;
  version(): string;
  start(o: { sinkPort: number; cpu: number }): Promise<RunningProxy>;
}

/** A free TCP port on 127.0.0.1 (the OS's pick, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Runs `cmd args` pinned to `cpu`; keeps the last 4 KiB of its output for error messages. */
export function spawnOn(cpu: number, cmd: string, args: readonly string[]): { child: ChildProcess; output: () => string } {
  const child = spawn('taskset', ['-c', String(cpu), cmd, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-4096));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output: () => out };
}

/** Resolves with the first stdout line that parses as JSON with event 'ready'. */
export function readyLine(child: ChildProcess, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('no ready line in time')), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before ready`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n').slice(0, -1)) {
        if (!line.startsWith('{')) continue;
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.event === 'ready') {
          clearTimeout(timer);
          resolve(j);
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
  });
}

function listening(port: number): boolean {
  const r = spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim().length > 0;
}

async function waitListening(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const until = Date.now() + 15_000;
  while (!listening(port)) {
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${output().trim().slice(-400)}`);
    if (Date.now() > until) throw new Error(`not listening on ${port} after 15 s: ${output().trim().slice(-400)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * CPU time of `pid` and its live descendants, seconds: each live thread's
 * on-CPU time from schedstat (ns resolution), plus cutime + cstime (clock
 * ticks) for children already reaped (socat's per-connection forks).
 * Falls back to utime + stime where schedstat is unreadable.
 */
export function treeCpuSeconds(pid: number): number {
  let s = 0;
  for (const p of processTree(pid)) {
    try {
      const text = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      s += (Number(f[13]) + Number(f[14])) / clockTicks();
      let ns = 0;
      try {
        for (const tid of readdirSync(`/proc/${p}/task`)) ns += Number(readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        s += ns / 1e9;
      } catch {
        s += (Number(f[11]) + Number(f[12])) / clockTicks();
      }
    } catch {
      /* exited between listing and reading */
    }
  }
  return s;
}

/** Threads of `pid` (nginx/haproxy: 1 by configuration). */
export function threadCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

function configured(name: string, cmd: string, args: (dir: string, port: number, sinkPort: number) => { file: string; text: string; argv: string[] }) {
  return async (o: { sinkPort: number; cpu: number }): Promise<RunningProxy> => {
    const dir = mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`));
    const port = await freePort();
    const c = args(dir, port, o.sinkPort);
    writeFileSync(c.file, c.text);
    const { child, output } = spawnOn(o.cpu, cmd, c.argv);
    const stop = async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await waitListening(port, child, output);
    } catch (err) {
      await stop();
      throw err;
    }
    return { port, pid: child.pid, stop };
  };
}

const SLUICE_PATHS = {
  sockmap:
    ': sockmap, an sk_skb verdict redirects each received skb to the peer socket in the kernel (bpf/tcp_redirect.c); Node forwards what arrives before a direction is armed or while a slow reader throttles it',
  splice: ': splice(2) socket → pipe → socket in a worker thread, 64 KiB pipe per direction',
  userspace: ': node:net streams, pipe() both ways',
} as const;

function sluice(mode: keyof typeof SLUICE_PATHS): TcpPeer {
  return {
    name: `sluice-${mode}`,
    description: `Sluice tcp-redirect, mode '${mode}' (TcpRelay via bench/tools/tcp-relay-peer.ts)${SLUICE_PATHS[mode]}`,
    version: () => versionOf('git', ['-C', ROOT, 'describe', '--always', '--dirty']),
    async start(o) {
      const { child, output } = spawnOn(o.cpu, process.execPath, ['--import', 'tsx', 'bench/tools/tcp-relay-peer.ts', mode, String(o.sinkPort)]);
      let ready: Record<string, unknown>;
      try {
        ready = await readyLine(child, 30_000);
      } catch (err) {
        await stopChild(child);
        throw new Error(`${(err as Error).message}: ${output().trim().slice(-400)}`);
      }
      if (ready.mode !== mode) {
        await stopChild(child);
        throw new Error(`asked for ${mode}, got ${String(ready.mode)}`);
      }
      const final = (): Record<string, unknown> | undefined => {
        const line = output()
          .split('\n')
          .findLast((l) => l.includes('"event":"final"'));
        try {
          return line === undefined ? undefined : (JSON.parse(line) as Record<string, unknown>);
        } catch {
          return undefined;
        }
      };
      return { port: Number(ready.port), pid: child.pid, stop: () => stopChild(child), final };
    },
  };
}

const direct: TcpPeer = {
  name: 'direct',
  description: 'no proxy: the client connects to the sink (the baseline)',
  version: () => '',
  start: (o) => Promise.resolve({ port: o.sinkPort, pid: undefined, stop: () => Promise.resolve() }),
};

const nginx: TcpPeer = {
  name: 'nginx',
  description: 'nginx stream proxy: worker_processes 1; listen 127.0.0.1:P; proxy_pass 127.0.0.1:S (proxy_buffer_size default 16k)',
  requirement: nginxRequirement,
  version: nginxVersion,
  start: configured('nginx', 'nginx', (dir, port, sinkPort) => {
    const file = join(dir, 'nginx.conf');
    const text = nginxStreamConfig(dir, [`  server { listen 127.0.0.1:${port}; proxy_pass 127.0.0.1:${sinkPort}; }`]);
    return { file, text, argv: ['-p', dir, '-e', join(dir, 'error.log'), '-c', file] };
  }),
};

function haproxy(splice: boolean): TcpPeer {
  return {
    name: splice ? 'haproxy-splice' : 'haproxy',
    description: `HAProxy mode tcp, nbthread 1${splice ? ', option splice-auto (its kernel splice path)' : ' (as shipped: no splice)'}`,
    requirement: { what: 'haproxy', present: () => commandExists('haproxy'), packages: ['haproxy'] },
    version: () => versionOf('haproxy', ['-v'], /HAProxy version/),
    start: configured(splice ? 'haproxy-splice' : 'haproxy', 'haproxy', (dir, port, sinkPort) => {
      const file = join(dir, 'haproxy.cfg');
      const text = [
        'global',
        '  nbthread 1',
        '  maxconn 1024',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 120s',
        '  timeout server 120s',
        ...(splice ? ['  option splice-auto'] : []),
        'listen bench',
        `  bind 127.0.0.1:${port}`,
        `  server sink 127.0.0.1:${sinkPort}`,
        '',
      ].join('\n');
      return { file, text, argv: ['-db', '-f', file] };
    }),
  };
}

const socat: TcpPeer = {
  name: 'socat',
  description: 'socat -b 65536 TCP4-LISTEN:P,bind=127.0.0.1,reuseaddr,fork TCP4:127.0.0.1:S (a process per connection; its CPU counted through the parent)',
  requirement: { what: 'socat', present: () => commandExists('socat'), packages: ['socat'] },
  version: () => versionOf('socat', ['-V'], /socat version/),
  start: configured('socat', 'socat', (dir, port, sinkPort) => ({
    file: join(dir, 'unused'),
    text: '',
    argv: ['-b', '65536', `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `TCP4:127.0.0.1:${sinkPort}`],
  })),
};

export const TCP_PEERS: readonly TcpPeer[] = [direct, sluice('sockmap'), sluice('splice'), sluice('userspace'), nginx, haproxy(false), haproxy(true), socat];
