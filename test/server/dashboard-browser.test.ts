/**
 * The dashboard (issue 19), end to end: a real `sluice serve` and Debian's
 * headless Chromium driven by playwright-core. The page is given the token,
 * shows a flow created through the API, shows its rate move while this test
 * sends UDP packets to it, adds a subscriber from its form (a real UDP socket
 * that must then receive packets), shows the API's error for a duplicate, and
 * removes the subscriber with its button. A screenshot goes under the test
 * output folder (printed). Skipped, with the reason, only when chromium is
 * not installed (CI installs it: .ci/run).
 *
 * Also here, without a browser: the static files' headers, content types and
 * the refusal of any path outside the fixed list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createSocket, type Socket } from 'node:dgram';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import Fastify from 'fastify';
import { chromium, type Browser, type Locator } from 'playwright-core';
import { DASHBOARD_CSP, DASHBOARD_DIR, dashboardPlugin } from '../../src/server/http/dashboard.js';
import { startCli } from '../../harness/process/cli.js';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT_DIR = join(tmpdir(), 'sluice-test-output');

test('dashboard static files: content types, CSP, ETag, nothing outside the fixed list', async () => {
  const app = Fastify();
  await app.register(dashboardPlugin);
  try {
    const index = await app.inject({ method: 'GET', url: '/' });
    assert.equal(index.statusCode, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(index.headers['content-security-policy'], DASHBOARD_CSP);
    assert.match(DASHBOARD_CSP, /default-src 'self'/);
    assert.equal(index.headers['x-content-type-options'], 'nosniff');
    assert.match(index.body, /<script type="module" src="\/assets\/app\.js"><\/script>/);

    const types: Record<string, string> = {
      '/assets/app.js': 'text/javascript; charset=utf-8',
      '/assets/style.css': 'text/css; charset=utf-8',
      '/assets/uPlot.esm.js': 'text/javascript; charset=utf-8',
      '/assets/uPlot.min.css': 'text/css; charset=utf-8',
      '/assets/icon.svg': 'image/svg+xml',
    };
    for (const [url, type] of Object.entries(types)) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, url);
      assert.equal(res.headers['content-type'], type, url);
      assert.equal(res.headers['content-security-policy'], DASHBOARD_CSP, url);
    }

    const again = await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': String(index.headers.etag) } });
    assert.equal(again.statusCode, 304);

    for (const url of [
      '/assets/..%2fpackage.json',
      '/assets/%2e%2e%2fpackage.json',
      '/assets/..%5cpackage.json',
      '/assets/../package.json',
      '/assets/index.html',
      '/assets/.hidden.js',
      '/assets/app.js%00.css',
      '/assets/',
      '/assets/dir/app.js',
      '/index.html',
      '/package.json',
      '/node_modules/uplot/dist/uPlot.esm.js',
    ]) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 404, url);
      assert.doesNotMatch(res.body, /"name":\s*"sluice"/, url);
    }
  } finally {
    await app.close();
  }
});

test('dashboard sources: no inline script or style, no HTML built from strings', async () => {
  const html = await readFile(join(DASHBOARD_DIR, 'index.html'), 'utf8');
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'inline <script>');
  assert.doesNotMatch(html, /\sstyle=|<style|\son[a-z]+=/i, 'inline style or handler');
  const assets = join(DASHBOARD_DIR, 'assets');
  for (const name of await readdir(assets)) {
    if (!name.endsWith('.js')) continue;
    // Code only: the comments may name what the code must not do.
    const js = (await readFile(join(assets, name), 'utf8')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/, name);
    assert.doesNotMatch(js, /https?:\/\//, `${name}: no other origin`);
  }
});

test('dashboard event-stream parser: any chunking, LF, CRLF or CR line ends, comments, multi-line data', async () => {
  // The page's own module, plain browser JavaScript that runs in Node as well (untyped here: no DOM types in this project).
  const { EventStreamParser } = (await import(pathToFileURL(join(DASHBOARD_DIR, 'assets', 'events.js')).href)) as {
    EventStreamParser: new () => { push(chunk: string, onEvent: (type: string, data: string, id: string | undefined) => void): void };
  };
  const body = ': keepalive\n\nevent: stats\nid: 7\ndata: {"t":1,\ndata: "flows":[]}\n\nevent: flowremoved\ndata: {"name":"a b"}\n\ndata: plain\n\n';
  const expected = [
    ['stats', '{"t":1,\n"flows":[]}', '7'],
    ['flowremoved', '{"name":"a b"}', '7'],
    ['message', 'plain', '7'],
  ];
  for (const eol of ['\n', '\r\n', '\r']) {
    const text = body.replaceAll('\n', eol);
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new EventStreamParser();
      const got: (string | undefined)[][] = [];
      const onEvent = (type: string, data: string, id: string | undefined) => got.push([type, data, id]);
      parser.push(text.slice(0, cut), onEvent);
      parser.push(text.slice(cut), onEvent);
      assert.deepEqual(got, expected, `line end ${JSON.stringify(eol)}, cut at ${cut}`);
    }
  }
});

test('dashboard number formats: SI prefixes without losing an integer part, rates from counters', async () => {
  const format = (await import(pathToFileURL(join(DASHBOARD_DIR, 'assets', 'format.js')).href)) as Record<string, (v: number | null) => string>;
  const rates = (await import(pathToFileURL(join(DASHBOARD_DIR, 'assets', 'rates.js')).href)) as {
    perSecond(prev: number | undefined, cur: number, dtS: number): number | null;
    eventTimeMs(t: unknown): number;
  };
  const cases: [number, string, string][] = [
    [0, '0 bit/s', '0 pkt/s'],
    [7.5, '60 bit/s', '7.5 pkt/s'],
    [370, '2.96 kbit/s', '370 pkt/s'],
    [1500, '12 kbit/s', '1.5k pkt/s'],
    [125_000, '1 Mbit/s', '125k pkt/s'],
    [1_562_500, '12.5 Mbit/s', '1.56M pkt/s'],
  ];
  for (const [value, bits, packets] of cases) {
    assert.equal(format.bitRate!(value), bits, `bitRate(${value})`);
    assert.equal(format.packetRate!(value), packets, `packetRate(${value})`);
  }
  assert.equal(format.bitRate!(null), '–');
  assert.equal(rates.perSecond(1000, 3000, 2), 1000);
  assert.equal(rates.perSecond(undefined, 3000, 1), null);
  assert.equal(rates.perSecond(5000, 10, 1), null, 'a counter that went back (flow replaced): no rate');
  assert.equal(rates.eventTimeMs(1_700_000_000_000), 1_700_000_000_000);
  assert.equal(rates.eventTimeMs(1_700_000_000), 1_700_000_000_000);
});

interface Serve {
  readonly child: ChildProcessWithoutNullStreams;
  readonly url: string;
  readonly token: string;
  stderr(): string;
}

test('dashboard in Chromium against a real sluice serve', { timeout: 180_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    const reason = `${CHROMIUM} not installed (Debian package chromium; .ci/run installs it)`;
    console.log(`# skipped: ${reason}`);
    t.skip(reason);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'sluice-dashboard-'));
  const sockets: Socket[] = [];
  let serve: Serve | undefined;
  let browser: Browser | undefined;
  let sender: ReturnType<typeof setInterval> | undefined;
  try {
    serve = await startServe(dir);
    const api = apiClient(serve);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60_000 });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const urls: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('request', (req) => urls.push(req.url()));
    page.setDefaultTimeout(30_000);

    await page.goto(serve.url);
    await page.locator('#token-input').fill(serve.token);
    await page.locator('#token-form button[type=submit]').click();
    await page.locator('#conn[data-state="open"]').waitFor();

    // A flow created through the API appears.
    const created = await api('POST', '/v1/flows', { name: 'cam-1', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const listenPort = portOf(String(created.body.stats?.listen ?? created.body.listen));
    assert.ok(listenPort > 0, `the flow's bound port: ${JSON.stringify(created.body)}`);
    const card = page.locator('article.flow[data-flow="cam-1"]');
    await card.waitFor();

    // Its rate moves while packets flow: ~100 datagrams of 1000 bytes a second.
    const source = await udpSocket(sockets);
    const payload = Buffer.alloc(1000, 0x47);
    sender = setInterval(() => source.send(payload, listenPort, '127.0.0.1'), 10);
    const inRate = card.locator('[data-role="in-rate"]');
    await pollText(inRate, (text) => /kbit\/s|Mbit\/s/.test(text), 30_000);

    // A subscriber added from the page receives packets.
    const subscriber = await udpSocket(sockets);
    let received = 0;
    subscriber.on('message', () => (received += 1));
    const to = `udp://127.0.0.1:${subscriber.address().port}`;
    await card.locator('input[name="to"]').fill(to);
    await card.locator('form.add-sub button[type=submit]').click();
    await card.locator(`tr[data-to="${to}"]`).waitFor();
    await waitUntil(
      () => received >= 20,
      15_000,
      () => `the subscriber received ${received} datagrams`,
    );
    // Its counters on the page: packets (third cell) past zero.
    await pollText(card.locator(`tr[data-to="${to}"] td:nth-child(3)`), (text) => /^[1-9][\d,]*$/.test(text), 15_000);

    // The API's refusal is shown where the user acted: a duplicate, then an invalid address (with its field path).
    await card.locator('input[name="to"]').fill(to);
    await card.locator('form.add-sub button[type=submit]').click();
    await card.locator('form.add-sub .error').getByText('subscriber_exists').waitFor();
    await card.locator('input[name="to"]').fill('udp://nowhere');
    await card.locator('form.add-sub button[type=submit]').click();
    await card
      .locator('form.add-sub .error code', { hasText: /invalid/ })
      .first()
      .waitFor();

    await mkdir(OUTPUT_DIR, { recursive: true });
    const shot = join(OUTPUT_DIR, 'dashboard-browser.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# dashboard screenshot: ${shot}`);
    t.diagnostic(`screenshot: ${shot}`);

    // Removed with its button (two clicks: the first only arms it): the row goes, the API no longer lists it.
    const remove = card.locator(`tr[data-to="${to}"] button.remove`);
    await remove.click();
    await remove.click();
    await card.locator(`tr[data-to="${to}"]`).waitFor({ state: 'detached' });
    const after = await api('GET', '/v1/flows/cam-1');
    assert.deepEqual(
      (after.body.stats.destinations as { to: string }[]).map((d) => d.to),
      [],
    );

    assert.deepEqual(problems, []);
    assert.ok(!urls.some((u) => u.includes(serve!.token)), 'the token never appears in a URL');
  } finally {
    if (sender) clearInterval(sender);
    await browser?.close().catch(() => {});
    for (const s of sockets) s.close();
    if (serve) await stopServe(serve);
    await rm(dir, { recursive: true, force: true });
  }
});

async function startServe(dir: string): Promise<Serve> {
  const config = join(dir, 'serve.yaml');
  const tokenFile = join(dir, 'api.token');
  await writeFile(
    config,
    ['tier: portable', 'flows: []', 'api:', '  listen: 127.0.0.1:0', `  tokenFile: ${tokenFile}`, `state: ${join(dir, 'serve.state.json')}`, ''].join('\n'),
  );
  const child = startCli(['serve', '--config', config, '--log-level', 'info']);
  let stderr = '';
  child.stdout.resume();
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'ready' log line within 60 s; stderr: ${stderr}`)), 60_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const line of stderr.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const record = JSON.parse(line) as Record<string, unknown>;
          if (record.msg === 'ready') {
            clearTimeout(timer);
            resolve(record);
            return;
          }
        } catch {
          // a line still arriving
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sluice serve exited (${code}) before ready; stderr: ${stderr}`));
    });
  });
  const record = await ready;
  const url = String(record.url ?? record.listen);
  assert.match(url, /^http:\/\/127\.0\.0\.1:[1-9]\d*\/?$/, `the ready line's URL: ${JSON.stringify(record)}`);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  return { child, url: url.endsWith('/') ? url : `${url}/`, token, stderr: () => stderr };
}

async function stopServe(serve: Serve): Promise<void> {
  const { child } = serve;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 0, `sluice serve's exit code after SIGTERM; stderr: ${serve.stderr().slice(-2000)}`);
}

function apiClient(serve: Serve) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(new URL(path, serve.url), {
      method,
      headers: { authorization: `Bearer ${serve.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

async function udpSocket(sockets: Socket[]): Promise<Socket> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket;
}

function portOf(endpoint: string): number {
  const match = /:(\d+)$/.exec(endpoint);
  return match ? Number(match[1]) : 0;
}

/** Polls a locator's text until it passes (playwright-core has no expect()). */
async function pollText(locator: Locator, ok: (text: string) => boolean, timeoutMs: number): Promise<void> {
  let last = '';
  await waitUntil(
    () => ok(last),
    timeoutMs,
    () => `text now ${JSON.stringify(last)}`,
    async () => {
      last = ((await locator.textContent({ timeout: timeoutMs })) ?? '').trim();
    },
  );
}

async function waitUntil(done: () => boolean, timeoutMs: number, describe: () => string, refresh?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await refresh?.();
    if (done()) return;
    if (Date.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
