/**
 * A crashed engine under the daemon (issue 19: "a crashed engine shows up as
 * an event, a log line, a metric and in /v1/health"): the batched tier's
 * worker thread is terminated from outside, as a crash would end it, and the
 * API reports it everywhere; later changes are refused with 503.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { captureEngineWorker } from '../../harness/process/worker-killer.js';
import { createMetrics } from '../../src/server/metrics.js';
import { readEvents, startApi } from './api-helpers.js';

test('the batched engine dies: an enginefailed event, health degraded, sluice_engine_failed, a log line, changes refused with 503', async (t) => {
  const capture = captureEngineWorker('add');
  t.after(() => capture.restore());
  const lines: string[] = [];
  const logSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const api = await startApi({ config: 'tier: batched\n', logDestination: logSink });
  t.after(() => api.close());
  const events = await readEvents(api.url, api.token);
  t.after(() => events.close());

  const created = await api.call('POST', '/v1/flows', { name: 'f', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const worker = await capture.engine;
  assert.equal((await api.call('GET', '/v1/health')).body.status, 'ok');

  await worker.terminate();
  const failed = await events.waitFor((e) => e.type === 'enginefailed', 10_000);
  assert.equal(typeof failed.data.engine, 'string');
  assert.match(String(failed.data.message), /\S/);

  const health = (await api.call('GET', '/v1/health')).body;
  assert.equal(health.status, 'degraded');
  assert.equal(health.failures.length, 1);
  assert.equal(health.failures[0].engine, failed.data.engine);

  const service = api.service;
  const metrics = createMetrics({ flows: () => service.statsSnapshot(), gateways: () => service.gateways(), failures: () => service.health().failures });
  const text = await metrics.render();
  assert.match(text, /^sluice_engine_failures 1$/m);
  assert.ok(
    text.split('\n').includes(`sluice_engine_failed{engine="${failed.data.engine}"} 1`),
    text
      .split('\n')
      .filter((l) => l.includes('engine'))
      .join('\n'),
  );

  const refused = await api.call('POST', '/v1/flows', { name: 'g', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [] });
  assert.equal(refused.status, 503, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'engine_failed');

  const logged = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((r) => r.level === 'error' || r.level === 'fatal');
  assert.ok(logged.length > 0, `an error logged for the failure; log: ${lines.join('\n')}`);
});
