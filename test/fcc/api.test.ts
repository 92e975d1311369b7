/**
 * Fast channel change through the public API, without traffic: what the
 * policy accepts, the counters, a join with nothing cached (live), and an
 * address the policy refuses getting no burst.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sluice, PolicyValidationError } from '../../src/index.js';
import { openReceiver } from '../../harness/traffic/udp.js';

test('fastChannelChange: policy checks, counters, a join with an empty cache, a refused subscriber', async () => {
  const sluice = await Sluice.open({ tier: 'portable' });
  const rx = await openReceiver();
  try {
    const base = { type: 'replicate' as const, listen: 'udp://127.0.0.1:0', to: [] as string[], allow: 'any' };
    await assert.rejects(sluice.apply({ ...base, fastChannelChange: {} }), PolicyValidationError, 'needs a media payload');
    await assert.rejects(sluice.apply({ ...base, payload: 'mpegts', monitor: false, fastChannelChange: {} }), PolicyValidationError, 'needs the monitor');
    await assert.rejects(sluice.apply({ ...base, payload: 'mpegts', fastChannelChange: { burstRate: 17 } }), PolicyValidationError);
    const flow = await sluice.apply({ ...base, payload: 'mpegts', fastChannelChange: { burstRate: 2 } });
    assert.deepEqual(flow.stats().fastChannelChange, {
      cacheBytes: 0,
      cacheDatagrams: 0,
      randomAccessPoints: 0,
      cacheOverflows: 0,
      joins: 0,
      fastJoins: 0,
      fallbacks: 0,
      forcedJoins: 0,
    });
    // Its own listen address would be a relay loop: refused before anything is sent.
    await assert.rejects(flow.addSubscriber(flow.listenUrl), PolicyValidationError);
    assert.equal(flow.stats().fastChannelChange?.joins, 0);
    await flow.addSubscriber(rx.url);
    const s = flow.stats();
    assert.equal(s.fastChannelChange?.joins, 1);
    assert.equal(s.fastChannelChange?.fallbacks, 1, 'nothing cached: the join is live');
    assert.deepEqual(
      s.destinations.map((d) => d.to),
      [rx.url],
    );
    // Already subscribed: a no-op, not a second join.
    await flow.addSubscriber(rx.url);
    assert.equal(flow.stats().fastChannelChange?.joins, 1);
    // A flow without the field has no counters.
    const plain = await sluice.apply({ ...base, payload: 'mpegts' });
    assert.equal(plain.stats().fastChannelChange, undefined);
  } finally {
    await sluice.close();
    await rx.close();
  }
});
