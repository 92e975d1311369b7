/**
 * The library script of docs/TPO.md ("## Library") runs as written (issue
 * 17, item 7): taken from the document, its `'sluice/tpo'` import pointed
 * at the source entry (tests run from source; dist/ may not exist), run
 * under tsx as both sites of the quick start (examples/tpo-site-{a,b}.yaml,
 * copied with free ports). The two pair, carry a TCP connection, and stop
 * on SIGINT with 'closed' and exit status 0. Every wait is bounded; one
 * that passes names itself and shows both outputs and, for a process that
 * will not exit, what holds it (a Node report, or its threads when its
 * loop does not answer). This is how a gateway that printed 'closed' and
 * then never exited was found: a socket reset while its shutdown was
 * pending (src/sys/tcp-reset.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freeTcpPort, freeUdpPort } from './gateway-helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = pathToFileURL(join(ROOT, 'src/tpo/index.ts')).href;

/** The first ```js block under "## Library" in docs/TPO.md. */
function libraryScript(): string {
  const doc = readFileSync(join(ROOT, 'docs/TPO.md'), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Library\n'));
  assert.ok(section, 'docs/TPO.md has a "## Library" section');
  const m = /^```js\n([\s\S]*?)^```$/m.exec(section);
  assert.ok(m, 'the Library section shows a ```js script');
  return m[1]!;
}

/** A process's output, line by line, with a wait for a line. */
function watch(child: ChildProcessWithoutNullStreams): { out: () => string; line: (re: RegExp, ms?: number) => Promise<string> } {
  let out = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      const hit = out.split('\n').find((l) => w.re.test(l));
      if (hit !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  };
  child.stdout.on('data', (d) => {
    out += d;
    check();
  });
  child.stderr.on('data', (d) => {
    out += d;
    check();
  });
  return {
    out: () => out,
    line: (re, ms = 45_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${ms} ms; output:\n${out}`)), ms);
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        check();
      }),
  };
}

const exited = (child: ChildProcessWithoutNullStreams) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

/** `p`, or a rejection after `ms` naming `what` and carrying `explain()`: no wait in this test is unbounded. */
async function within<T>(p: Promise<T>, ms: number, what: string, explain: () => Promise<string> | string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  try {
    const r = await Promise.race([p, late]);
    if (r !== 'late') return r as T;
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`${what}: not within ${ms} ms\n${await explain()}`);
}

/** Each thread of `pid` as the kernel sees it: name, wait channel and system call (number, first argument). */
function threads(pid: number | undefined): string {
  try {
    const dir = `/proc/${pid}/task`;
    return readdirSync(dir)
      .map((t) => {
        const read = (f: string) => {
          try {
            return readFileSync(`${dir}/${t}/${f}`, 'utf8').trim();
          } catch {
            return '?';
          }
        };
        return `${read('comm')} [${read('wchan')}; syscall ${read('syscall').split(' ').slice(0, 2).join(' ')}]`;
      })
      .join(', ');
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  }
}

/**
 * A Node diagnostic report of a child that will not exit (it runs with
 * --report-on-signal): what keeps its loop alive (libuv handles) and where
 * its JavaScript is, or a note that the loop never answered the signal.
 */
async function aliveReport(child: ChildProcessWithoutNullStreams, dir: string, name: string): Promise<string> {
  const file = join(dir, `${name}.report.json`);
  child.kill('SIGUSR2');
  for (let i = 0; i < 50 && !existsSync(file); i++) await sleep(100);
  if (!existsSync(file)) return `${name}: no report within 5 s of SIGUSR2 (its event loop is blocked); threads: ${threads(child.pid)}`;
  await sleep(200);
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as {
      javascriptStack?: { message?: string; stack?: string[] };
      libuv?: { type: string; is_active?: boolean; is_referenced?: boolean; localEndpoint?: unknown; remoteEndpoint?: unknown }[];
      workers?: unknown[];
    };
    const handles = (r.libuv ?? [])
      .filter((h) => h.is_active && h.is_referenced)
      .map(
        (h) => `${h.type}${h.localEndpoint ? ` ${JSON.stringify(h.localEndpoint)}` : ''}${h.remoteEndpoint ? ` > ${JSON.stringify(h.remoteEndpoint)}` : ''}`,
      );
    return `${name}: referenced active handles: ${handles.join('; ') || 'none'}; workers: ${r.workers?.length ?? 0}; stack: ${(r.javascriptStack?.stack ?? []).slice(0, 8).join(' | ')}`;
  } catch (e) {
    return `${name}: report unreadable (${(e as Error).message})`;
  }
}

test('the docs/TPO.md library script is at most 20 lines and imports sluice/tpo', () => {
  const script = libraryScript();
  assert.ok(script.trimEnd().split('\n').length <= 20, `the script has ${script.trimEnd().split('\n').length} lines`);
  assert.match(script, /from 'sluice\/tpo'/);
});

test('the docs/TPO.md library script runs both quick-start sites: they pair, carry a connection, and stop on SIGINT', { timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-doc-'));
  const children: ChildProcessWithoutNullStreams[] = [];
  // Runs even when the test times out: no gateway outlives it (a live child would hold the file open).
  t.after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end('hello from site b\n');
  });
  try {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const serverPort = (server.address() as net.AddressInfo).port;
    // The examples' fixed ports, replaced by free ones (others may be running the quick start).
    const ports: Record<string, number> = {
      '7400': await freeUdpPort(),
      '7500': await freeUdpPort(),
      '8080': await freeTcpPort(),
      '5353': await freeUdpPort(),
      '9090': serverPort,
    };
    const copy = (name: string) => {
      const text = readFileSync(join(ROOT, 'examples', name), 'utf8').replace(/127\.0\.0\.1:(\d+)/g, (all, p: string) =>
        ports[p] ? `127.0.0.1:${ports[p]}` : all,
      );
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const script = join(dir, 'gateway.mjs');
    writeFileSync(script, libraryScript().replace(`'sluice/tpo'`, `'${ENTRY}'`));
    const run = (config: string) => {
      const name = config.endsWith('a.yaml') ? 'site-a' : 'site-b';
      const report = ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${dir}`, `--report-filename=${name}.report.json`];
      const child = spawn(process.execPath, [...report, '--import', 'tsx', script, config], { cwd: ROOT, stdio: 'pipe' });
      children.push(child);
      return { child, ...watch(child), exit: exited(child) };
    };
    const b = run(copy('tpo-site-b.yaml'));
    const a = run(copy('tpo-site-a.yaml'));
    await a.line(new RegExp(`^gateway site-a: peers on udp 127\\.0\\.0\\.1:${ports['7400']}$`));
    await a.line(/^peer site-b up$/);
    await b.line(/^peer site-a up$/);

    const outputs = () => `site-a:\n${a.out()}\nsite-b:\n${b.out()}`;
    let got = '';
    const client = net.connect(ports['8080']!, '127.0.0.1');
    const reply = await within(
      new Promise<string>((resolve, reject) => {
        client.on('data', (d) => (got += d));
        client.on('end', () => resolve(got));
        client.on('error', reject);
      }),
      30_000,
      'the reply through the pair',
      async () => `received ${JSON.stringify(got)}\n${await aliveReport(a.child, dir, 'site-a')}\n${await aliveReport(b.child, dir, 'site-b')}\n${outputs()}`,
    ).finally(() => client.destroy());
    assert.equal(reply, 'hello from site b\n');
    await a.line(/^source flow tcp 127\.0\.0\.1:\d+ > 127\.0\.0\.1:\d+ via site-b$/);
    await b.line(/^destination flow tcp 127\.0\.0\.1:\d+ > 127\.0\.0\.1:\d+ via site-a$/);

    for (const g of [a, b]) g.child.kill('SIGINT');
    for (const [name, g] of [
      ['site-a', a],
      ['site-b', b],
    ] as const) {
      const exit = await within(g.exit, 30_000, `${name}'s exit after SIGINT`, async () => `${await aliveReport(g.child, dir, name)}\n${outputs()}`);
      assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGINT; output:\n${g.out()}`);
      assert.match(g.out(), /^closed$/m);
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
