/**
 * `fanout:` in the serve config: the daemon (a real child process) runs a
 * live fan-out; a real HTTP client gets an input's datagrams; its status at
 * GET /v1/fanout, its metrics; SIGHUP stops it when the section goes; a
 * bad section is refused with its path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
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
