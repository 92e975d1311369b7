/**
 * tcp-redirect flows in `sluice serve` (issue 22): the serve config's
 * `flows:` validated whole with them; the daemon (a real child process)
 * starts them, relays real loopback connections, lists them with their
 * counters, exports their metrics, refuses to change them over the API,
 * brings them to the file on SIGHUP and closes them when it stops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseServeConfigText } from '../../src/policy/serve-config.js';
import { PolicyValidationError } from '../../src/errors.js';
import { runCli } from '../../harness/process/cli.js';
import { startServe, tempDir } from './api-helpers.js';
import { sockmapUnavailable } from '../../src/dataplane/tcp/sockmap-program.js';

async function echoServer(): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as { port: number }).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Connects to `url` (tcp://127.0.0.1:PORT), writes `text`, ends, resolves with all it read back. */
async function roundTrip(url: string, text: string): Promise<string> {
  const port = Number(/:(\d+)$/.exec(url)![1]);
  const sock = createConnection({ host: '127.0.0.1', port });
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.end(text);
  await once(sock, 'close');
  return Buffer.concat(chunks).toString();
}

function refused(url: string): Promise<boolean> {
  const port = Number(/:(\d+)$/.exec(url)![1]);
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });
}

function writeConfig(dir: string, flows: string[]): string {
  const path = join(dir, 'serve.yaml');
  writeFileSync(path, ['tier: portable', 'flows:', ...flows, 'api:', '  listen: 127.0.0.1:0', '  tokenFile: ./api.token', ''].join('\n'));
  return path;
}

const tcp = (name: string, to: number, extra = '') =>
  `  - { name: ${name}, type: tcp-redirect, listen: "tcp://127.0.0.1:0", to: "tcp://127.0.0.1:${to}", allow: 127.0.0.1${extra} }`;
const udp = (name: string) => `  - { name: ${name}, type: replicate, listen: "udp://127.0.0.1:0", allow: any, to: [] }`;

test('serve config: tcp-redirect entries taken out of flows and validated whole with the UDP ones (paths by index in the file)', () => {
  const ok = parseServeConfigText(['flows:', udp('u'), tcp('t', 9)].join('\n'));
  assert.deepEqual(
    ok.flows.map((f) => f.name),
    ['u'],
  );
  assert.deepEqual(
    ok.tcpFlows?.map((f) => f.name),
    ['t'],
  );
  assert.equal(parseServeConfigText(['flows:', udp('u')].join('\n')).tcpFlows, undefined);
  assert.throws(
    () =>
      parseServeConfigText(
        ['flows:', udp('x'), tcp('x', 9), '  - { name: bad, type: tcp-redirect, listen: "tcp://127.0.0.1:0", to: "udp://127.0.0.1:9" }'].join('\n'),
      ),
    (err: unknown) => {
      assert.ok(err instanceof PolicyValidationError);
      assert.match(err.message, /^invalid serve config/);
      const paths = err.issues.map((i) => i.path);
      assert.ok(paths.includes('flows[1].name'), paths.join(','));
      assert.ok(
        paths.some((p) => p.startsWith('flows[2].to')),
        paths.join(','),
      );
      return true;
    },
  );
});

test('sluice serve runs tcp-redirects from its config: relays, lists, counts, refuses API changes, follows SIGHUP, closes on stop', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const echoA = await echoServer();
  const echoB = await echoServer();
  t.after(() => Promise.all([echoA.close(), echoB.close()]));
  const path = writeConfig(dir, [udp('u'), tcp('a', echoA.port), tcp('b', echoA.port, ', mode: userspace')]);
  const serve = await startServe(path);
  let listenA = '';
  let listenC = '';
  try {
    const list = (await serve.call('GET', '/v1/flows')).body.flows as any[];
    assert.deepEqual(
      list.map((f) => `${f.name}:${f.type}`),
      ['u:replicate', 'a:tcp-redirect', 'b:tcp-redirect'],
    );
    const a = list.find((f) => f.name === 'a');
    listenA = a.listen;
    assert.match(listenA, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(a.to, `tcp://127.0.0.1:${echoA.port}`);
    assert.equal(a.source, 'config');
    const b = list.find((f) => f.name === 'b');
    assert.equal(b.mode, 'userspace');

    // Real connections through the daemon, both modes.
    const payload = 'x'.repeat(100_000);
    assert.equal(await roundTrip(listenA, payload), payload);
    assert.equal(await roundTrip(b.listen, 'hello'), 'hello');

    const one = (await serve.call('GET', '/v1/flows/a')).body;
    assert.equal(one.type, 'tcp-redirect');
    assert.equal(one.stats.accepted, 1);
    assert.equal(one.stats.bytesToUpstream, 100_000);
    const stats = (await serve.call('GET', '/v1/flows/a/stats')).body;
    assert.equal(stats.bytesToClient, 100_000);
    assert.equal(stats.listen, listenA);

    const metrics = await (await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } })).text();
    assert.match(metrics, /sluice_tcp_connections_total\{flow="a",result="accepted"\} 1\b/);
    assert.match(metrics, /sluice_tcp_bytes_total\{flow="a",direction="to_upstream"\} 100000\b/);
    assert.match(metrics, /sluice_tcp_bytes_total\{flow="b",direction="to_client"\} 5\b/);
    assert.match(metrics, /sluice_tcp_active_connections\{flow="a"\} 0\b/);
    assert.match(metrics, /sluice_tcp_closed_connections_total\{flow="a",end="closed"\} 1\b/);

    // `sluice flows` (the CLI as a client): the UDP flows' table, then the tcp-redirects'.
    const cli = await runCli(['flows', '--url', serve.url, '--token-file', join(dir, 'api.token')], 60_000);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /\bu\s+replicate\b/);
    assert.match(cli.stdout, /\ba\s+tcp-redirect\s+\S+\s+tcp:\/\/127\.0\.0\.1:\d+\s+tcp:\/\/127\.0\.0\.1:\d+\s+0\s+1\s+100000\s+100000\b/);

    // The API does not change them; the config file does.
    for (const [method, p, body] of [
      ['PUT', '/v1/flows/a', { type: 'replicate', listen: 'udp://127.0.0.1:0', allow: 'any', to: [] }],
      ['PATCH', '/v1/flows/a', { allow: 'any' }],
      ['DELETE', '/v1/flows/a', undefined],
      ['POST', '/v1/flows/a/subscribers', { to: 'udp://127.0.0.1:9' }],
    ] as const) {
      const r = await serve.call(method, p, body);
      assert.equal(r.status, 409, `${method} ${p}: ${JSON.stringify(r.body)}`);
      assert.match(JSON.stringify(r.body), /config file/);
    }
    const post = await serve.call('POST', '/v1/flows', { name: 'z', type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: 'tcp://127.0.0.1:9' });
    assert.ok(post.status >= 400 && post.status < 600 && post.status !== 500, `POST tcp-redirect: ${post.status}`);
    assert.equal((await serve.call('GET', '/v1/flows/z')).status, 404);

    // SIGHUP: a unchanged, b removed, c added; then a changed (restarted on its new destination).
    writeConfig(dir, [udp('u'), tcp('a', echoA.port), tcp('c', echoB.port)]);
    serve.child.kill('SIGHUP');
    const r1 = await serve.waitForLog((r) => /^reloaded/.test(r.msg ?? ''));
    assert.deepEqual(r1.added, ['c']);
    assert.deepEqual(r1.removed, ['b']);
    assert.deepEqual(r1.replaced, []);
    assert.equal(await refused(b.listen), true, 'b closed');
    const after = (await serve.call('GET', '/v1/flows')).body.flows as any[];
    assert.deepEqual(
      after.map((f) => f.name),
      ['u', 'a', 'c'],
    );
    assert.equal(after.find((f) => f.name === 'a').stats.accepted, 1, 'a left running (its counters kept)');
    listenC = after.find((f) => f.name === 'c').listen;
    assert.equal(await roundTrip(listenC, 'to b'), 'to b');

    writeConfig(dir, [udp('u'), tcp('a', echoB.port), tcp('c', echoB.port)]);
    serve.child.kill('SIGHUP');
    await serve.waitForLog((r) => /^reloaded/.test(r.msg ?? '') && (r.replaced ?? []).includes('a'));
    const a2 = (await serve.call('GET', '/v1/flows/a')).body;
    assert.equal(a2.to, `tcp://127.0.0.1:${echoB.port}`);
    assert.equal(a2.stats.accepted, 0);
    listenA = a2.listen;
    assert.equal(await roundTrip(listenA, 'again'), 'again');
    assert.equal((await serve.call('GET', '/v1/health')).body.flows, 3);
  } finally {
    assert.equal(await serve.stop(), 0);
  }
  assert.equal(await refused(listenA), true, 'a closed with the daemon');
  assert.equal(await refused(listenC), true, 'c closed with the daemon');
});

const noSockmap = process.getuid?.() === 0 ? sockmapUnavailable() : 'needs root (eBPF programs and a cgroup attachment)';

test('sluice serve runs a sockmap tcp-redirect: relays, and its metrics say who moved the bytes', { skip: noSockmap }, async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const echo = await echoServer();
  t.after(() => echo.close());
  const serve = await startServe(writeConfig(dir, [udp('u'), tcp('s', echo.port, ', mode: sockmap')]));
  try {
    const s = (await serve.call('GET', '/v1/flows/s')).body;
    assert.equal(s.mode, 'sockmap');
    const payload = 'y'.repeat(200_000);
    assert.equal(await roundTrip(s.listen, payload), payload);
    const stats = (await serve.call('GET', '/v1/flows/s/stats')).body;
    // The echo comes back on the direction armed before the upstream connected: all of it in the kernel.
    assert.ok(stats.sockmap.kernelBytes >= payload.length, JSON.stringify(stats.sockmap));
    assert.equal(stats.sockmap.kernelBytes + stats.sockmap.userBytes, 2 * payload.length, JSON.stringify(stats.sockmap));
    const metrics = await (await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } })).text();
    const kernel = Number(/sluice_tcp_sockmap_bytes_total\{flow="s",path="kernel"\} (\d+)/.exec(metrics)?.[1]);
    const node = Number(/sluice_tcp_sockmap_bytes_total\{flow="s",path="node"\} (\d+)/.exec(metrics)?.[1]);
    assert.equal(
      kernel + node,
      2 * payload.length,
      metrics
        .split('\n')
        .filter((l) => l.includes('sockmap'))
        .join('\n'),
    );
    assert.match(metrics, /sluice_tcp_sockmap_throttles_total\{flow="s"\} 0\b/);
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});
