/**
 * The dashboard's tcp-redirect cards and live fan-out panel, end to end as
 * dashboard-browser.test.ts does it: a real `sluice serve` (a child process)
 * whose config has a tcp-redirect (user-space path, loopback, to an echo
 * server here) and a `fanout:` section (an HTTP front and a named input on
 * loopback), and Debian's headless Chromium driven by playwright-core.
 *
 * A connection held through the relay sends bytes: the card shows what GET
 * /v1/flows/web says (open connections, joined in all, bytes each way, to the
 * byte in the title) and follows it when more bytes go, with a rate while
 * they flow. A tcp-redirect created over the API gets its card from the
 * flowadded event and loses it on DELETE. An HTTP client of the fan-out (GET
 * /cam) and datagrams to its input: the panel shows the client with its peer
 * and bytes sent as GET /v1/fanout says, the input with its name, and a
 * refused request. The config's `interface:` (free text the daemon accepts,
 * here markup) is shown as text: no element made from it. Views with markup
 * where the schema would not allow it (a name, an address, a peer, a failure;
 * served to the page through request interception) are text as well. On a
 * daemon with neither, both sections stay hidden. Skipped, with the reason,
 * without chromium or without splice(2)/tee(2) (the fan-out needs them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { spliceUnavailable } from '../../src/sys/splice.js';
import { freeUdpPort } from '../tpo/gateway-helpers.js';
import { portOf, receiver, sendSeq, type Receiver } from '../fanout/fanout-helpers.js';
import { startServe, type Serve } from './api-helpers.js';
import { login, openPage } from './dashboard-page.js';
import { startUpstream, type Upstream } from '../tcp/tcp-harness.js';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT_DIR = join(tmpdir(), 'sluice-test-output');
const HOSTILE = '<img src=x id=pwned>';
const en = (n: number) => n.toLocaleString('en-US');

/** What the page shows of the tcp-redirects and the fan-out, read from its DOM. */
const READ_PAGE = `(() => {
  const text = (el) => (el ? el.textContent.trim() : '');
  const tcp = document.getElementById('tcp-section');
  const fan = document.getElementById('fanout-section');
  return {
    tcpHidden: tcp.hidden,
    fanoutHidden: fan.hidden,
    cards: [...tcp.querySelectorAll('article.tcp-relay')].map((a) => {
      const q = (role) => a.querySelector('[data-role="' + role + '"]');
      return {
        name: a.dataset.tcpFlow, title: text(a.querySelector('h3')), mode: text(q('mode')), source: text(q('source')), route: text(q('route')),
        active: text(q('active')), accepted: text(q('accepted')), upRate: text(q('up-rate')), downRate: text(q('down-rate')),
        up: q('up-bytes')?.title ?? '', down: q('down-bytes')?.title ?? '', refused: text(q('refused')), failure: text(q('failure')),
      };
    }),
    http: text(fan.querySelector('[data-role="fanout-http"]')),
    iface: text(fan.querySelector('[data-role="fanout-interface"]')),
    failure: text(fan.querySelector('[data-role="fanout-failure"]')),
    refused: text(fan.querySelector('[data-role="fanout-refused"]')),
    inputs: [...fan.querySelectorAll('table.fanout-inputs tbody tr')].map((tr) => ({
      key: tr.dataset.input, name: text(tr.querySelector('[data-role="input-name"]')), clients: text(tr.querySelector('[data-role="clients"]')),
    })),
    clients: [...fan.querySelectorAll('details.fanout-clients tbody tr')].map((tr) => ({
      peer: text(tr.querySelector('[data-role="peer"]')), input: text(tr.querySelector('[data-role="input"]')),
      sent: tr.querySelector('[data-role="sent"]')?.title ?? '', rate: text(tr.querySelector('[data-role="rate"]')),
    })),
    udpCards: document.querySelectorAll('#flows article').length,
    injected: document.querySelectorAll('img, b, [id^="pwned"]').length + (document.body.dataset.pwned ? 1 : 0),
  };
})()`;

interface PageView {
  tcpHidden: boolean;
  fanoutHidden: boolean;
  cards: Record<
    'name' | 'title' | 'mode' | 'source' | 'route' | 'active' | 'accepted' | 'upRate' | 'downRate' | 'up' | 'down' | 'refused' | 'failure',
    string
  >[];
  http: string;
  iface: string;
  failure: string;
  refused: string;
  inputs: { key: string; name: string; clients: string }[];
  clients: { peer: string; input: string; sent: string; rate: string }[];
  udpCards: number;
  injected: number;
}

const read = async (page: Page) => (await page.evaluate(READ_PAGE)) as PageView;

/** Polls until `ok` holds of the page and the API's answer (both read again each round); throws with both when it never does. */
async function until<A>(page: Page, ask: () => Promise<A>, ok: (v: PageView, a: A) => boolean, what: string, timeoutMs = 45_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await ask();
    const v = await read(page);
    if (ok(v, a)) return { v, a };
    if (Date.now() > deadline) throw new Error(`timed out: ${what}; page ${JSON.stringify(v)}; API ${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('dashboard tcp-redirect cards and fan-out panel in Chromium against a real sluice serve', { timeout: 300_000 }, async (t) => {
  const skip = !existsSync(CHROMIUM) ? `${CHROMIUM} not installed (Debian package chromium; .ci/run installs it)` : spliceUnavailable();
  if (skip) {
    console.log(`# skipped: ${skip}`);
    t.skip(skip);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'sluice-dashboard-tcp-fanout-'));
  const daemons: Serve[] = [];
  const sockets: Socket[] = [];
  const clients: Receiver[] = [];
  let echo: Upstream | undefined;
  let browser: Browser | undefined;
  let trickle: ReturnType<typeof setInterval> | undefined;
  try {
    echo = await startUpstream((s) => s.pipe(s));
    const inputPort = await freeUdpPort();
    const tcpFlow = `{ name: web, type: tcp-redirect, listen: "tcp://127.0.0.1:0", to: "tcp://127.0.0.1:${echo.port}", allow: 127.0.0.1, mode: userspace }`;
    const fanoutSection = ['fanout:', '  http: 127.0.0.1:0', `  inputs: ["cam=udp://127.0.0.1:${inputPort}"]`, `  interface: ${JSON.stringify(HOSTILE)}`];
    const [serve, plain] = await Promise.all([
      startDaemon(dir, 'main', ['flows:', `  - ${tcpFlow}`, ...fanoutSection]),
      startDaemon(dir, 'plain', ['flows: []']),
    ]);
    daemons.push(serve, plain);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60_000 });
    const problems: string[] = [];
    const page = await openPage(browser, serve, problems);

    // The config's tcp-redirect: its card says what the API says; no UDP card for it.
    const web = (await serve.call('GET', '/v1/flows/web')).body;
    assert.equal(web.type, 'tcp-redirect', JSON.stringify(web));
    await page.locator('article.tcp-relay[data-tcp-flow="web"]').waitFor({ timeout: 30_000 });
    let card = (await read(page)).cards.find((c) => c.name === 'web')!;
    assert.deepEqual(
      [card.title, card.mode, card.source, card.route, card.refused],
      ['web', 'userspace', `source ${web.source}`, `${web.listen} → ${web.to}`, 'no refusals'],
    );
    assert.equal(web.mode, 'userspace');
    assert.equal((await read(page)).udpCards, 0, 'a tcp-redirect gets no UDP card');

    // A connection held through the relay, 3000 bytes echoed: open 1, joined 1, 3,000 bytes each way.
    const conn = createConnection({ host: '127.0.0.1', port: portOf(String(web.listen)) });
    sockets.push(conn);
    conn.on('error', () => {}); // reset when the daemon stops
    await once(conn, 'connect');
    let echoed = 0;
    conn.on('data', (d: Buffer) => (echoed += d.byteLength));
    conn.write(Buffer.alloc(3000, 0x61));
    await waitUntil(
      () => echoed >= 3000,
      30_000,
      () => `echoed ${echoed}`,
    );
    const tcpStats = async () => (await serve.call('GET', '/v1/flows/web')).body.stats;
    const cardMatches = (want: number) => (v: PageView, s: any) => {
      const c = v.cards.find((x) => x.name === 'web');
      return (
        s.bytesToUpstream === want &&
        s.bytesToClient === want &&
        c !== undefined &&
        [c.active, c.accepted, c.up, c.down].join('|') === [en(s.active), en(s.accepted), `${en(want)} bytes`, `${en(want)} bytes`].join('|')
      );
    };
    const first = await until(page, tcpStats, cardMatches(3000), 'the card shows 3,000 bytes each way');
    assert.deepEqual([first.a.active, first.a.accepted], [1, 1]);

    // More bytes, a few seconds' worth: a rate while they flow, then the new totals.
    let sent = 3000;
    trickle = setInterval(() => {
      if (sent >= 3000 + 120 * 1000) return clearInterval(trickle);
      conn.write(Buffer.alloc(1000, 0x62));
      sent += 1000;
    }, 50);
    await until(page, tcpStats, (v) => /[kM]bit\/s$/.test(v.cards.find((c) => c.name === 'web')?.upRate ?? ''), 'a rate to upstream');
    await waitUntil(
      () => echoed >= 123_000,
      30_000,
      () => `echoed ${echoed}`,
    );
    await until(page, tcpStats, cardMatches(123_000), 'the card follows to 123,000 bytes');
    card = (await read(page)).cards.find((c) => c.name === 'web')!;

    // A tcp-redirect created over the API: its card comes with the flowadded event, goes with flowremoved.
    const made = await serve.call('POST', '/v1/flows', {
      type: 'tcp-redirect',
      name: 'made',
      listen: 'tcp://127.0.0.1:0',
      to: `tcp://127.0.0.1:${echo.port}`,
      allow: '127.0.0.1',
      mode: 'userspace',
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const madeCard = page.locator('article.tcp-relay[data-tcp-flow="made"]');
    await madeCard.waitFor({ timeout: 30_000 });
    assert.equal(((await madeCard.locator('[data-role="source"]').textContent()) ?? '').trim(), `source ${made.body.source}`);
    assert.deepEqual(
      (await read(page)).cards.map((c) => c.name),
      ['made', 'web'],
      'name order',
    );
    assert.equal((await serve.call('DELETE', '/v1/flows/made')).status, 200);
    await madeCard.waitFor({ state: 'detached', timeout: 30_000 });

    // The fan-out: its front and the hostile interface as text.
    const fan = async () => (await serve.call('GET', '/v1/fanout')).body;
    const f0 = await fan();
    await page.locator('#fanout-section:not([hidden])').waitFor({ timeout: 30_000 });
    let view = await read(page);
    assert.deepEqual([view.http, view.iface, view.failure, view.refused], [f0.http, HOSTILE, '', 'no refusals']);
    assert.deepEqual(view.inputs, [{ key: `udp://127.0.0.1:${inputPort}`, name: 'cam', clients: 'closed' }]);
    assert.equal(view.injected, 0, 'no element made from the interface name');

    // A client (GET /cam) and datagrams to its input: the client with its peer and bytes, as the API says.
    const r = await receiver(portOf(String(f0.http)), { path: '/cam' });
    clients.push(r);
    const peer = `127.0.0.1:${r.socket.localPort}`;
    const apiClient = (s: any) => s.stats.clients.find((c: any) => c.peer === peer);
    await until(page, fan, (_v, s) => apiClient(s) !== undefined, 'the API lists the client');
    await sendSeq(inputPort, 0, 40);
    const clientMatches = (v: PageView, s: any) => {
      const c = apiClient(s);
      const row = v.clients.find((x) => x.peer === peer);
      return c !== undefined && c.bytesSent > 0 && row !== undefined && row.sent === `${en(c.bytesSent)} bytes` && row.input === `cam (${c.input})`;
    };
    const got = await until(page, fan, clientMatches, 'the client row shows its bytes');
    const before = apiClient(got.a).bytesSent as number;
    assert.deepEqual(got.v.inputs, [{ key: `udp://127.0.0.1:${inputPort}`, name: 'cam', clients: '1' }]);
    await sendSeq(inputPort, 40, 120);
    await until(page, fan, (v, s) => clientMatches(v, s) && apiClient(s).bytesSent > before, 'the client row follows more bytes');

    // A request for no input: refused, counted on the panel.
    const lost = await receiver(portOf(String(f0.http)), { path: '/nothing-here' });
    clients.push(lost);
    await lost.closed;
    assert.equal(lost.status(), 404);
    await until(page, fan, (v, s) => s.stats.front.refused.notFound === 1 && v.refused === 'refused: notFound 1', 'the refusal on the panel');

    view = await read(page);
    assert.equal(view.injected, 0);
    assert.doesNotMatch(await page.locator('main').innerText(), /\bnull\b|\bundefined\b|NaN|\[object /, 'no placeholder of a missing value');
    await mkdir(OUTPUT_DIR, { recursive: true });
    const shot = join(OUTPUT_DIR, 'dashboard-tcp-fanout.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# dashboard tcp/fan-out screenshot: ${shot}`);

    // A daemon with neither: GET /v1/fanout answers 404 and both sections stay hidden.
    const page0 = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page0.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    const fanoutAnswer = page0.waitForResponse((res) => new URL(res.url()).pathname === '/v1/fanout', { timeout: 60_000 });
    await login(page0, plain);
    assert.equal((await fanoutAnswer).status(), 404);
    // A few stats events later (each may ask for the tcp-redirects or the fan-out again).
    await new Promise((r) => setTimeout(r, 4000));
    const none = await read(page0);
    assert.deepEqual([none.tcpHidden, none.fanoutHidden, none.cards.length], [true, true, 0]);
    assert.equal(await page0.locator('#fanout-section').isVisible(), false);
    assert.equal(await page0.locator('#tcp-section').isVisible(), false);

    // Markup where the schema allows none (the daemon never sends it): served to a page by interception, still text.
    const pageX = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    pageX.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    const evil = '<img src=x id=pwned><script>document.body.dataset.pwned=1</script>';
    const tcpView = { ...web, name: HOSTILE, to: `tcp://${evil}:1`, mode: '<b id=pwned-mode>x</b>', source: evil, failure: evil, stats: first.a };
    await pageX.route('**/v1/flows', (route) => route.fulfill({ json: { flows: [tcpView] } }));
    const fanView = {
      ...f0,
      http: evil,
      stats: { ...got.a.stats, clients: [{ ...apiClient(got.a), peer: evil, input: '<b id=pwned-input>' }] },
      failure: evil,
    };
    await pageX.route('**/v1/fanout', (route) => route.fulfill({ json: fanView }));
    await login(pageX, plain);
    await pageX.locator('article.tcp-relay').waitFor({ timeout: 30_000 });
    await pageX.locator('#fanout-section:not([hidden])').waitFor({ timeout: 30_000 });
    const x = await until(
      pageX,
      async () => null,
      (v) => v.clients.length === 1,
      'the hostile client row',
    );
    const xc = x.v.cards[0]!;
    assert.deepEqual(
      [xc.name, xc.title, xc.mode, xc.source, xc.route, xc.failure],
      [HOSTILE, HOSTILE, '<b id=pwned-mode>x</b>', `source ${evil}`, `${web.listen} → tcp://${evil}:1`, `failed: ${evil}`],
    );
    assert.deepEqual([x.v.http, x.v.failure, x.v.clients[0]!.peer, x.v.clients[0]!.input], [evil, `the fan-out stopped: ${evil}`, evil, '<b id=pwned-input>']);
    assert.equal(x.v.injected, 0, 'no element made from any of it');

    assert.deepEqual(problems, []);
    t.diagnostic(`card: ${JSON.stringify(card)}`);
    for (const d of daemons) assert.equal(await d.stop(), 0, d.stderr().slice(-2000));
  } finally {
    if (trickle) clearInterval(trickle);
    await browser?.close().catch(() => {});
    for (const s of sockets) s.destroy();
    for (const c of clients) c.socket.destroy();
    for (const d of daemons) await d.stop().catch(() => {});
    await echo?.close();
    await rm(dir, { recursive: true, force: true });
  }
});

async function startDaemon(dir: string, name: string, lines: string[]): Promise<Serve> {
  const config = join(dir, `${name}.serve.yaml`);
  const tokenFile = join(dir, `${name}.token`);
  const api = ['api:', '  listen: 127.0.0.1:0', `  tokenFile: ${tokenFile}`, `state: ${join(dir, `${name}.state.json`)}`];
  await writeFile(config, ['tier: portable', ...lines, ...api, ''].join('\n'));
  return startServe(config, ['--log-level', 'info'], tokenFile);
}

async function waitUntil(done: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
