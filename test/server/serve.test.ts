/**
 * `sluice serve` as a real child process (from source, through tsx):
 * start-up (token file, `ready`), SIGTERM/SIGINT exit 0, changes made
 * through the API surviving a restart (state file), SIGHUP with the
 * config changed (the file wins), a 100 MB body refused without being
 * read while a flow keeps moving, the CLI as a client, IPv6 and TLS, and
 * the batched tier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../../harness/process/cli.js';
import { openReceiver, openSender, sendSequence, seqOf } from '../../harness/traffic/udp.js';
import { readEvents, startServe, tempDir } from './api-helpers.js';

function config(dir: string, lines: string[]): string {
  const path = join(dir, 'serve.yaml');
  writeFileSync(path, [...lines, 'api:', '  listen: 127.0.0.1:0', '  tokenFile: ./api.token', ''].join('\n'));
  return path;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

test('start: token file created (0600 in a 0700 folder) and its path printed, ready logged; SIGTERM and SIGINT exit 0', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'serve.yaml');
  writeFileSync(path, ['tier: portable', 'api:', '  listen: 127.0.0.1:0', '  tokenFile: ./secret/api.token', ''].join('\n'));
  const serve = await startServe(path);
  const tokenFile = join(dir, 'secret', 'api.token');
  assert.match(serve.stderr(), new RegExp(`API token in ${tokenFile} \\(new\\)`));
  assert.equal(serve.ready.tokenFile, tokenFile);
  assert.equal(serve.ready.tier, 'portable');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'secret')).mode & 0o777, 0o700);
  assert.equal((await serve.call('GET', '/v1/health')).body.status, 'ok');
  assert.equal(await serve.stop('SIGTERM'), 0);
  assert.ok(serve.records().some((r) => r.msg === 'stopped'));

  const again = await startServe(path);
  assert.doesNotMatch(again.stderr(), /\(new\)/);
  assert.equal(again.token, serve.token, 'the same token on the next start');
  assert.equal(await again.stop('SIGINT'), 0);

  // A token file others may read: refused, with the fix.
  chmodSync(tokenFile, 0o644);
  const refused = await runCli(['serve', '--config', path], 60_000);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /mode 0644 .*chmod 600/);
});

test('serve without --config: a usage error naming --config unless it is a cluster node', async () => {
  const r = await runCli(['serve'], 60_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--config: required \(a cluster node, started with --cluster, may leave it out\)/);
});

test('restart: flows and subscribers changed through the API are there after a restart (state file), and carry traffic', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = config(dir, ['tier: portable', 'flows:', '  - { name: cfg, type: replicate, listen: "udp://127.0.0.1:0", allow: any, to: [] }']);
  const sub = await openReceiver();
  const sender = await openSender();
  t.after(async () => {
    await sub.close();
    await sender.close();
  });
  const first = await startServe(path);
  let port: number;
  try {
    const created = await first.call('POST', '/v1/flows', { name: 'api', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [] });
    assert.equal(created.status, 201);
    port = Number(created.body.listen.split(':').pop());
    assert.equal((await first.call('POST', '/v1/flows/api/subscribers', { to: sub.url })).status, 201);
    assert.equal((await first.call('DELETE', '/v1/flows/cfg')).status, 200);
    assert.equal((await first.call('PATCH', '/v1/flows/api', { listen: `udp://127.0.0.1:${port}` })).status, 200, 'pin the port for the restart');
  } finally {
    assert.equal(await first.stop(), 0);
  }
  const state = JSON.parse(readFileSync(join(dir, 'serve.state.json'), 'utf8'));
  assert.equal(state.version, 1);
  assert.deepEqual(
    state.flows.map((f: any) => f.name),
    ['api'],
  );

  const second = await startServe(path);
  try {
    assert.ok(second.records().some((r) => r.level === 'warn' && /using state file .* the config file's flows are ignored until SIGHUP/.test(r.msg)));
    const flows = (await second.call('GET', '/v1/flows')).body.flows;
    assert.deepEqual(
      flows.map((f: any) => f.name),
      ['api'],
      'the deleted config flow stays deleted',
    );
    assert.deepEqual(flows[0].policy.to, [sub.url]);
    assert.equal(flows[0].listen, `udp://127.0.0.1:${port}`);
    await sendSequence(sender, { port, address: '127.0.0.1' }, 10);
    await sub.waitFor(10);
  } finally {
    assert.equal(await second.stop(), 0);
  }
});

test('SIGHUP: the changed config file wins over API changes, the state file is rewritten; a bad file changes nothing', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const flow = (name: string, to: string[]) =>
    `  - { name: ${name}, type: replicate, listen: "udp://127.0.0.1:0", allow: any, to: [${to.map((x) => `"${x}"`).join(', ')}] }`;
  const path = config(dir, ['tier: portable', 'flows:', flow('a', ['udp://127.0.0.1:7001'])]);
  const serve = await startServe(path);
  try {
    const events = await readEvents(serve.url, serve.token);
    t.after(() => events.close());
    await serve.call('POST', '/v1/flows', { name: 'b', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: 'any', to: [] });
    await serve.call('POST', '/v1/flows/a/subscribers', { to: 'udp://127.0.0.1:7002' });

    config(dir, ['tier: portable', 'log: { level: debug }', 'flows:', flow('a', ['udp://127.0.0.1:7003']), flow('c', [])]);
    serve.child.kill('SIGHUP');
    const reloaded = await serve.waitForLog((r) => /^reloaded/.test(r.msg ?? ''));
    assert.deepEqual(reloaded.added, ['c']);
    assert.deepEqual(reloaded.updated, ['a']);
    assert.deepEqual(reloaded.removed, ['b']);
    const flows = (await serve.call('GET', '/v1/flows')).body.flows;
    assert.deepEqual(flows.map((f: any) => f.name).sort(), ['a', 'c']);
    assert.deepEqual(flows.find((f: any) => f.name === 'a').policy.to, ['udp://127.0.0.1:7003']);
    const state = JSON.parse(readFileSync(join(dir, 'serve.state.json'), 'utf8'));
    assert.deepEqual(state.flows.map((f: any) => f.name).sort(), ['a', 'c'], 'state rewritten to match');
    await events.waitFor((e) => e.type === 'flowremoved' && e.data.name === 'b');
    await events.waitFor((e) => e.type === 'flowadded' && e.data.flow.name === 'c');
    await events.waitFor((e) => e.type === 'flowchanged' && e.data.flow.name === 'a');
    // The log level followed the file: request lines (debug) now appear.
    await serve.call('GET', '/v1/health');
    await serve.waitForLog((r) => r.level === 'debug' && r.msg === 'request', 10_000);

    writeFileSync(path, 'flows: [ { name: a, type: nope } ]\n');
    serve.child.kill('SIGHUP');
    const failed = await serve.waitForLog((r) => /^reload failed/.test(r.msg ?? ''));
    assert.match(failed.msg, /type/);
    assert.deepEqual((await serve.call('GET', '/v1/flows')).body.flows.map((f: any) => f.name).sort(), ['a', 'c'], 'nothing changed');
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});

/**
 * POSTs up to `max` bytes, announced with Content-Length and `Expect: 100-continue` (as curl does for large bodies)
 * or chunked, writing only while no answer came. Resolves with the status (or the connection's error code when the
 * server closed it first) and the bytes written.
 */
function hugePost(url: string, token: string, announce: number | undefined, max: number): Promise<{ status: number | string; body: string; written: number }> {
  return new Promise((resolve) => {
    const u = new URL(`${url}/v1/flows`);
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        ...(announce !== undefined ? { 'content-length': String(announce), expect: '100-continue' } : {}),
      },
    });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let written = 0;
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, written }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) resolve({ status: err.code ?? String(err), body: '', written });
      answered = true;
    });
    const pump = () => {
      while (!answered && written < max) {
        written += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    if (announce !== undefined) req.once('continue', pump);
    else pump();
    req.flushHeaders();
  });
}

test('a 100 MB body is refused (413) without being read, while a flow keeps moving', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = config(dir, ['tier: portable']);
  const serve = await startServe(path);
  const sub = await openReceiver();
  const sender = await openSender();
  let traffic: Promise<void> | undefined;
  try {
    const f = await serve.call('POST', '/v1/flows', { name: 'live', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [sub.url] });
    const port = Number(f.body.listen.split(':').pop());
    const rss0 = rssKiB(serve.child.pid!);
    const total = 2000;
    traffic = sendSequence(sender, { port, address: '127.0.0.1' }, total, { burst: 10, gapMs: 2 });
    const hundred = 100 * 1024 * 1024;
    const announced = await hugePost(serve.url, serve.token, hundred, hundred);
    assert.equal(announced.status, 413);
    assert.equal(JSON.parse(announced.body).error.code, 'body_too_large');
    assert.equal(announced.written, 0, 'refused before the client sent any of it');
    // Chunked, no Content-Length: refused once the limit (1 MiB) arrived, its connection closed (the client may see
    // the 413 or, still writing, the reset).
    const chunked = await hugePost(serve.url, serve.token, undefined, hundred);
    assert.ok([413, 'EPIPE', 'ECONNRESET'].includes(chunked.status), String(chunked.status));
    assert.ok(chunked.written < 32 * 1024 * 1024, `refused after ${chunked.written} bytes, not after the whole body`);
    await traffic;
    await sub.waitFor(total, 20_000);
    assert.deepEqual(
      sub.received.map(seqOf),
      Array.from({ length: total }, (_, i) => i),
      'the flow lost nothing meanwhile',
    );
    const grew = rssKiB(serve.child.pid!) - rss0;
    assert.ok(grew < 64 * 1024, `the daemon's memory grew by ${grew} KiB, not by the body`);
    assert.equal((await serve.call('GET', '/v1/health')).status, 200);
  } finally {
    await traffic?.catch(() => undefined);
    await sub.close();
    await sender.close();
    assert.equal(await serve.stop(), 0);
  }
});

test('the CLI as a client: sluice flows, subscribers add|rm, status --url; /metrics and the dashboard mounted', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = config(dir, ['tier: portable', 'flows:', '  - { name: tv, type: replicate, listen: "udp://127.0.0.1:0", allow: any, to: [] }']);
  const serve = await startServe(path);
  const common = ['--url', serve.url, '--token-file', join(dir, 'api.token')];
  try {
    const add = await runCli(['subscribers', 'add', 'tv', 'udp://127.0.0.1:6000', ...common], 60_000);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /added udp:\/\/127\.0\.0\.1:6000 to tv: 1 subscriber/);
    const again = await runCli(['subscribers', 'add', 'tv', 'udp://127.0.0.1:6000', ...common], 60_000);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /subscriber_exists/);
    const flows = await runCli(['flows', ...common], 60_000);
    assert.equal(flows.code, 0, flows.stderr);
    assert.match(flows.stdout, /tv\s+replicate\s+portable\s+udp:\/\/127\.0\.0\.1:\d+\s+1\s/);
    const json = await runCli(['flows', '--json', ...common], 60_000);
    assert.equal(JSON.parse(json.stdout).flows[0].name, 'tv');
    const status = await runCli(['status', ...common], 60_000);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /: ok, tier portable/);
    // /metrics with the token (the metrics module), the dashboard without it.
    assert.equal((await fetch(`${serve.url}/metrics`)).status, 401);
    const metrics = await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await metrics.text(), /sluice_flow_packets_total\{[^}]*flow="tv"/);
    const page = await fetch(`${serve.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const rm = await runCli(['subscribers', 'rm', 'tv', 'udp://127.0.0.1:6000', ...common], 60_000);
    assert.equal(rm.code, 0, rm.stderr);
    const bad = await runCli(['subscribers', 'add', 'tv', 'nope', ...common], 60_000);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid_policy/);
  } finally {
    assert.equal(await serve.stop(), 0);
  }
  const down = await runCli(['flows', ...common], 60_000);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach the daemon .*ECONNREFUSED/);
});

test('IPv6 and TLS: --listen [::1]:0 with the certificate and key of the config', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:::1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  assert.ok(existsSync(join(dir, 'cert.pem')));
  const path = join(dir, 'serve.yaml');
  writeFileSync(path, ['tier: portable', 'api:', '  tokenFile: ./api.token', '  tls: { cert: cert.pem, key: key.pem }', ''].join('\n'));
  const serve = await startServe(path, ['--listen', '[::1]:0']);
  try {
    assert.match(serve.url, /^https:\/\/\[::1\]:\d+$/);
    const u = new URL(serve.url);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(
          { host: '::1', port: u.port, path: '/v1/health', ca: readFileSync(join(dir, 'cert.pem')), headers: { authorization: `Bearer ${serve.token}` } },
          (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve(b));
          },
        )
        .on('error', reject);
    });
    assert.equal(JSON.parse(body).status, 'ok');
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});

test('batched tier: a flow made through the API relays; a subscriber that refuses is suspended, as an event', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = config(dir, ['tier: batched']);
  const serve = await startServe(path);
  const sub = await openReceiver();
  const sender = await openSender();
  try {
    assert.equal(serve.ready.tier, 'batched');
    const events = await readEvents(serve.url, serve.token);
    t.after(() => events.close());
    const closed = await openReceiver();
    const closedUrl = closed.url;
    await closed.close(); // a port nobody listens on: ICMP port unreachable
    const f = await serve.call('POST', '/v1/flows', {
      name: 'b',
      type: 'replicate',
      listen: 'udp://127.0.0.1:0',
      allow: '127.0.0.1',
      to: [sub.url, closedUrl],
      suspendAfterErrors: 2,
    });
    assert.equal(f.status, 201, JSON.stringify(f.body));
    assert.equal(f.body.tier, 'batched');
    const port = Number(f.body.listen.split(':').pop());
    await sendSequence(sender, { port, address: '127.0.0.1' }, 50, { burst: 5, gapMs: 5 });
    await sub.waitFor(50);
    const suspended = await events.waitFor((e) => e.type === 'subscribersuspended');
    assert.equal(suspended.data.flow, 'b');
    assert.equal(suspended.data.to, closedUrl);
    assert.ok(suspended.data.until > Date.now() - 60_000);
    const stats = (await serve.call('GET', '/v1/flows/b/stats')).body;
    assert.equal(stats.packetsIn, 50);
    await sleep(10);
  } finally {
    await sub.close();
    await sender.close();
    assert.equal(await serve.stop(), 0);
  }
});
