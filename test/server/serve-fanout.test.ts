/**
 * `fanout:` in the serve config: the daemon (a real child process) runs a
 * live fan-out; a real HTTP client gets an input's datagrams; its status at
 * GET /v1/fanout, its metrics; SIGHUP stops it when the section goes; a
 * bad section is refused with its path. Named inputs added and removed
 * over the API (PUT/DELETE /v1/fanout/inputs/NAME) without a restart, kept
 * in the state file across one, and given back to the file by SIGHUP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spliceUnavailable } from '../../src/sys/splice.js';
import { resolveServeConfig } from '../../src/server/config-file.js';
import { PolicyValidationError } from '../../src/errors.js';
import { freeUdpPort } from '../tpo/gateway-helpers.js';
import { DATAGRAM, portOf, receiver, sendSeq, waitFor } from '../fanout/fanout-helpers.js';
import { startServe, tempDir } from './api-helpers.js';

const skip = spliceUnavailable();
if (skip) console.log(`# serve fan-out test skipped: ${skip}`);

function writeConfig(dir: string, extra: string[]): string {
  const path = join(dir, 'serve.yaml');
  writeFileSync(path, ['tier: portable', 'api:', '  listen: 127.0.0.1:0', '  tokenFile: ./api.token', ...extra, ''].join('\n'));
  return path;
}

test('serve config fanout: bad addresses and inputs refused under fanout.', () => {
  assert.throws(
    () => resolveServeConfig('fanout: { http: "nope", inputs: ["udp://127.0.0.1:0"] }\n', '/tmp/serve.yaml'),
    (err: unknown) => err instanceof PolicyValidationError && err.issues.some((i) => i.path.startsWith('fanout.http')),
  );
  assert.throws(() => resolveServeConfig('fanout: { http: "127.0.0.1:0", extra: 1 }\n', '/tmp/serve.yaml'), PolicyValidationError);
  assert.equal(resolveServeConfig('fanout: { http: "127.0.0.1:0" }\n', '/tmp/serve.yaml').fanout?.http, '127.0.0.1:0');
});

test('sluice serve runs the fanout: section: a client gets the stream, GET /v1/fanout, metrics, SIGHUP stops it', { skip, timeout: 120_000 }, async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freeUdpPort();
  const path = writeConfig(dir, ['fanout:', '  http: 127.0.0.1:0', `  inputs: ["cam=udp://127.0.0.1:${port}"]`, '  limits: { maxClients: 8 }']);
  const serve = await startServe(path);
  try {
    const st = await serve.call('GET', '/v1/fanout');
    assert.equal(st.status, 200);
    assert.match(st.body.http, /^127\.0\.0\.1:\d+$/);
    assert.equal(st.body.config.limits.maxClients, 8);
    const r = await receiver(portOf(st.body.http), { path: '/cam' });
    t.after(() => r.socket.destroy());
    assert.ok(await waitFor(async () => (await serve.call('GET', '/v1/fanout')).body.stats.totals.clients === 1, 10_000));
    await sendSeq(port, 0, 40);
    assert.ok(await waitFor(() => r.body().byteLength >= 40 * DATAGRAM, 10_000), 'the client got the stream');
    const metrics = await (await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } })).text();
    assert.match(metrics, /^sluice_fanout_clients 1$/m);
    assert.match(metrics, new RegExp(`^sluice_fanout_bytes_total ${40 * DATAGRAM}$`, 'm'));
    assert.match(metrics, /^sluice_fanout_skipped_chunks_total 0$/m);
    assert.match(metrics, /^sluice_fanout_refused_total\{reason="notFound"\} 0$/m);

    writeConfig(dir, []);
    serve.child.kill('SIGHUP');
    const reloaded = await serve.waitForLog((x) => /^reloaded/.test(x.msg ?? ''));
    assert.equal(reloaded.fanout, 'stopped');
    assert.equal((await serve.call('GET', '/v1/fanout')).status, 404);
    await r.closed; // the stream ended with the fan-out
    assert.doesNotMatch(
      await (await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } })).text(),
      /^sluice_fanout_clients /m,
      'no fan-out series once it stopped',
    );
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});

test(
  'fan-out inputs over the API: PUT adds or repoints a name, DELETE ends its streams; kept across a restart; SIGHUP gives the file back',
  { skip, timeout: 180_000 },
  async (t) => {
    const dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const [p1, p2] = [await freeUdpPort(), await freeUdpPort()];
    const path = writeConfig(dir, ['fanout:', '  http: 127.0.0.1:0', `  inputs: ["cam=udp://127.0.0.1:${p1}"]`]);
    let serve = await startServe(path);
    try {
      const front = portOf((await serve.call('GET', '/v1/fanout')).body.http);
      const cam = await receiver(front, { path: '/cam' });
      t.after(() => cam.socket.destroy());
      assert.ok(await waitFor(async () => (await serve.call('GET', '/v1/fanout')).body.stats.totals.clients === 1, 10_000));

      // Refusals: each with its status and code, nothing changed.
      const bad = await serve.call('PUT', '/v1/fanout/inputs/news', { input: 'tcp://127.0.0.1:1' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_policy');
      assert.equal((await serve.call('PUT', '/v1/fanout/inputs/news', { url: 'udp://127.0.0.1:1' })).body.error.code, 'invalid_request');
      assert.equal((await serve.call('PUT', '/v1/fanout/inputs/a%20b', { input: 'udp://127.0.0.1:1' })).body.error.code, 'invalid_request');
      assert.equal((await serve.call('DELETE', '/v1/fanout/inputs/news')).status, 404);

      const added = await serve.call('PUT', '/v1/fanout/inputs/news', { input: `udp://127.0.0.1:${p2}` });
      assert.equal(added.status, 201);
      assert.deepEqual(added.body.config.inputs, [`cam=udp://127.0.0.1:${p1}`, `news=udp://127.0.0.1:${p2}`]);
      assert.equal(portOf(added.body.http), front, 'same front, no restart');
      assert.equal(added.body.stats.totals.clients, 1, "cam's client kept");
      assert.equal((await serve.call('PUT', '/v1/fanout/inputs/news', { input: `udp://127.0.0.1:${p2}` })).status, 200);
      const news = await receiver(front, { path: '/news' });
      t.after(() => news.socket.destroy());
      await sendSeq(p1, 0, 30);
      await sendSeq(p2, 0, 30);
      assert.ok(await waitFor(() => cam.body().byteLength >= 30 * DATAGRAM && news.body().byteLength >= 30 * DATAGRAM, 10_000));
      const state = JSON.parse(readFileSync(join(dir, 'serve.state.json'), 'utf8'));
      assert.deepEqual(state.fanout.inputs, [`cam=udp://127.0.0.1:${p1}`, `news=udp://127.0.0.1:${p2}`]);

      const removed = await serve.call('DELETE', '/v1/fanout/inputs/cam');
      assert.equal(removed.status, 200);
      await cam.closed;
      assert.ok(await waitFor(async () => (await serve.call('GET', '/v1/fanout')).body.stats.totals.ended.removed === 1, 10_000));
      assert.equal((await serve.call('GET', '/v1/fanout')).body.stats.totals.clients, 1, "news's client kept");
      const metrics = await (await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${serve.token}` } })).text();
      assert.match(metrics, /^sluice_fanout_clients_ended_total\{reason="removed"\} 1$/m);
      assert.match(metrics, /^sluice_fanout_clients_ended_total\{reason="dropped"\} 0$/m);
      assert.equal(await serve.stop(), 0);

      // Restarted on the same config and state file: the API's inputs, not the file's.
      serve = await startServe(path);
      assert.deepEqual((await serve.call('GET', '/v1/fanout')).body.config.inputs, [`news=udp://127.0.0.1:${p2}`]);
      // SIGHUP: the file wins again.
      serve.child.kill('SIGHUP');
      const reloaded = await serve.waitForLog((x) => /^reloaded/.test(x.msg ?? ''));
      assert.equal(reloaded.fanout, 'updated');
      assert.deepEqual((await serve.call('GET', '/v1/fanout')).body.config.inputs, [`cam=udp://127.0.0.1:${p1}`]);
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  },
);
