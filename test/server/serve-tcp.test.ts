/**
 * tcp-redirect flows in `sluice serve` (issue 22): the serve config's
 * `flows:` validated whole with them; the daemon (a real child process)
 * starts them, relays real loopback connections, lists them with their
 * counters, exports their metrics, creates, changes and deletes them over
 * the API (refusing a change of kind, a taken name, a bad policy), keeps
 * the API's in the state file across a restart, brings them to the file
 * on SIGHUP and closes them when it stops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseServeConfigText } from '../../src/policy/serve-config.js';
import { PolicyValidationError } from '../../src/errors.js';
import { runCli } from '../../harness/process/cli.js';
import { readEvents, startApi, startServe, tempDir } from './api-helpers.js';
import { sockmapUnavailable } from '../../src/dataplane/tcp/sockmap-program.js';
import { startUpstream } from '../tcp/tcp-harness.js';

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

test('sluice serve runs tcp-redirects from its config: relays, lists, counts, changes them over the API, follows SIGHUP, closes on stop', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const echoA = await startUpstream((s) => s.pipe(s));
  const echoB = await startUpstream((s) => s.pipe(s));
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

    // Over the API: what it refuses changes nothing.
    const zPolicy = { name: 'z', type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: `tcp://127.0.0.1:${echoB.port}`, allow: '127.0.0.1' };
    for (const [method, p, body, status, code] of [
      ['PUT', '/v1/flows/a', { type: 'replicate', listen: 'udp://127.0.0.1:0', allow: 'any', to: [] }, 400, 'invalid_request'],
      ['PATCH', '/v1/flows/a', { type: 'redirect' }, 400, 'invalid_request'],
      ['PUT', '/v1/flows/u', { ...zPolicy, name: undefined }, 400, 'invalid_request'],
      ['POST', '/v1/flows/a/subscribers', { to: 'udp://127.0.0.1:9' }, 400, 'invalid_request'],
      ['POST', '/v1/flows', { ...zPolicy, allow: undefined }, 400, 'invalid_policy'],
      ['POST', '/v1/flows', { ...zPolicy, name: undefined }, 400, 'invalid_policy'],
      ['POST', '/v1/flows', { ...zPolicy, to: 'udp://127.0.0.1:9' }, 400, 'invalid_policy'],
      ['POST', '/v1/flows', { ...zPolicy, name: 'u' }, 409, 'flow_exists'],
      ['POST', '/v1/flows', { type: 'replicate', name: 'a', listen: 'udp://127.0.0.1:0', allow: 'any', to: [] }, 409, 'flow_exists'],
      ['POST', '/v1/flows', { ...zPolicy, name: 'cluster.z' }, 409, 'conflict'],
      ['PUT', '/v1/flows/nope', zPolicy, 404, 'flow_not_found'],
      ['DELETE', '/v1/flows/nope', undefined, 404, 'flow_not_found'],
    ] as const) {
      const r = await serve.call(method, p, body);
      assert.equal(r.status, status, `${method} ${p} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code ?? r.body.code, code, JSON.stringify(r.body));
    }
    assert.deepEqual(
      ((await serve.call('GET', '/v1/flows')).body.flows as any[]).map((f) => f.name),
      ['u', 'a', 'b'],
    );

    // Created, relaying, listed as the API's; PUT of the same policy leaves it (and its counters) alone.
    const created = await serve.call('POST', '/v1/flows', zPolicy);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.headers.get('location'), '/v1/flows/z');
    assert.equal(created.body.source, 'api');
    assert.equal(created.body.policy.allow, '127.0.0.1');
    assert.equal(await roundTrip(created.body.listen, 'via z'), 'via z');
    const same = await serve.call('PUT', '/v1/flows/z', (await serve.call('GET', '/v1/flows/z')).body.policy);
    assert.equal(same.status, 200, JSON.stringify(same.body));
    assert.equal(same.body.listen, created.body.listen, 'unchanged: not restarted');
    assert.equal(same.body.stats.accepted, 1);
    // PATCH: a new destination restarts it (counters from zero, its port chosen again).
    const patched = await serve.call('PATCH', '/v1/flows/z', { to: `tcp://127.0.0.1:${echoA.port}`, maxConnections: 8 });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal(patched.body.to, `tcp://127.0.0.1:${echoA.port}`);
    assert.equal(patched.body.policy.maxConnections, 8);
    assert.equal(patched.body.stats.accepted, 0);
    assert.equal(await roundTrip(patched.body.listen, 'via z again'), 'via z again');
    const deleted = await serve.call('DELETE', '/v1/flows/z');
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(deleted.body.stats.accepted, 1);
    assert.equal(deleted.body.stats.listen, patched.body.listen, 'the listen address as a URL, as GET shows it');
    assert.equal(await refused(patched.body.listen), true, 'z closed');
    assert.equal((await serve.call('GET', '/v1/flows/z')).status, 404);
    // One left for the reload below: the config file wins.
    assert.equal((await serve.call('POST', '/v1/flows', { ...zPolicy, name: 'y' })).status, 201);

    // SIGHUP: a unchanged, b removed, c added; then a changed (restarted on its new destination).
    writeConfig(dir, [udp('u'), tcp('a', echoA.port), tcp('c', echoB.port)]);
    serve.child.kill('SIGHUP');
    const r1 = await serve.waitForLog((r) => /^reloaded/.test(r.msg ?? ''));
    assert.deepEqual(r1.added, ['c']);
    assert.deepEqual(r1.removed, ['b', 'y']);
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
  const echo = await startUpstream((s) => s.pipe(s));
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

test('a tcp-redirect created over the API is in the state file and comes back after a restart; its events are flowadded / flowchanged / flowremoved', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const echo = await startUpstream((s) => s.pipe(s));
  t.after(() => echo.close());
  const config = ['tier: portable', 'flows:', tcp('conf', echo.port)].join('\n');
  const first = await startApi({ dir, config });
  const events = await readEvents(first.url, first.token);
  let listen = '';
  try {
    const r = await first.call('POST', '/v1/flows', {
      name: 'made',
      type: 'tcp-redirect',
      listen: 'tcp://127.0.0.1:0',
      to: `tcp://127.0.0.1:${echo.port}`,
      allow: 'any',
      mode: 'userspace',
      idleTimeoutMs: 60_000,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const added = await events.waitFor((e) => e.type === 'flowadded' && e.data.flow?.name === 'made');
    assert.equal(added.data.flow.type, 'tcp-redirect');
    assert.equal((await first.call('PATCH', '/v1/flows/made', { connectTimeoutMs: 2000 })).status, 200);
    const changed = await events.waitFor((e) => e.type === 'flowchanged' && e.data.flow?.name === 'made');
    assert.equal(changed.data.flow.policy.connectTimeoutMs, 2000);
    listen = changed.data.flow.listen;
    assert.equal(await roundTrip(listen, 'kept'), 'kept');
    const state = JSON.parse(readFileSync(first.service.config.state, 'utf8'));
    assert.deepEqual(
      state.tcpFlows.map((f: any) => [f.name, f.mode, f.connectTimeoutMs, f.idleTimeoutMs]),
      [
        ['conf', 'auto', 10_000, undefined],
        ['made', 'userspace', 2000, 60_000],
      ],
    );
    assert.deepEqual(state.flows, []);
  } finally {
    events.close();
    await first.close();
  }
  assert.equal(await refused(listen), true, 'closed with the service');

  // The same config and state file: both back, the API's one as changed; deleting it is an event too.
  const second = await startApi({ dir, config });
  const events2 = await readEvents(second.url, second.token);
  try {
    const flows = (await second.call('GET', '/v1/flows')).body.flows as any[];
    assert.deepEqual(
      flows.map((f) => [f.name, f.source, f.mode, f.policy.connectTimeoutMs]),
      [
        ['conf', 'config', flows[0].mode, 10_000],
        ['made', 'api', 'userspace', 2000],
      ],
    );
    assert.equal(await roundTrip(flows[1].listen, 'back'), 'back');
    assert.equal((await second.call('DELETE', '/v1/flows/made')).status, 200);
    const removed = await events2.waitFor((e) => e.type === 'flowremoved' && e.data.name === 'made');
    assert.equal(removed.data.stats.accepted, 1);
    assert.deepEqual(
      JSON.parse(readFileSync(second.service.config.state, 'utf8')).tcpFlows.map((f: any) => f.name),
      ['conf'],
    );
  } finally {
    events2.close();
    await second.close();
  }
});

test('a state file written before tcp-redirects were kept in it leaves them to the config file', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const echo = await startUpstream((s) => s.pipe(s));
  t.after(() => echo.close());
  writeFileSync(join(dir, 'serve.state.json'), JSON.stringify({ version: 1, writtenAt: new Date().toISOString(), flows: [], tpo: {} }));
  const api = await startApi({ dir, config: ['tier: portable', 'state: ./serve.state.json', 'flows:', tcp('conf', echo.port)].join('\n') });
  try {
    const flows = (await api.call('GET', '/v1/flows')).body.flows as any[];
    assert.deepEqual(
      flows.map((f) => f.name),
      ['conf'],
    );
    assert.equal(await roundTrip(flows[0].listen, 'old state'), 'old state');
  } finally {
    await api.close();
  }
});
