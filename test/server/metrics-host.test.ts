/**
 * `sluice_host_backlog_drops_total`: the kernel tier's host backlog drops
 * (HostDrops, host-wide) as the daemon exposes them; absent elsewhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from '../../src/server/metrics.js';
import type { HostDrops } from '../../src/index.js';

const source = (hostDrops?: () => HostDrops | undefined) => ({ flows: () => [], gateways: () => [], ...(hostDrops ? { hostDrops } : {}) });

test('sluice_host_backlog_drops_total follows the kernel tier count, as a counter without labels', async () => {
  let n = 0;
  const m = createMetrics(
    source(() => ({ hostBacklog: n })),
    { processMetrics: false },
  );
  assert.match(await m.render(), /^# TYPE sluice_host_backlog_drops_total counter$/m);
  assert.match(await m.render(), /^sluice_host_backlog_drops_total 0$/m);
  n = 4321;
  assert.match(await m.render(), /^sluice_host_backlog_drops_total 4321$/m);
});

test('no series on a tier without host drops, and no family without a source', async () => {
  const other = await createMetrics(
    source(() => undefined),
    { processMetrics: false },
  ).render();
  assert.doesNotMatch(other, /^sluice_host_backlog_drops_total /m);
  const none = await createMetrics(source(), { processMetrics: false }).render();
  assert.doesNotMatch(none, /sluice_host_backlog_drops_total/);
});
