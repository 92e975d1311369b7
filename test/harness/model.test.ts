/**
 * The impairment model both WAN emulators share (harness/wan/model.ts):
 * parameter checks, the Gilbert-Elliott chain, the bottleneck. The front
 * ends' own decisions are tested in ip-lane.test.ts and udp-emulator.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Bottleneck, FRONT_ENDS, GilbertElliott, QUEUE_FULL, checkImpairment, queueLimitBytes } from '../../harness/wan/model.js';

test('checkImpairment names the front end and the first bad parameter, common or extra', () => {
  const ok = { delayMs: 0, rateBps: 0, loss: 0 };
  checkImpairment({ ...ok, queueBytes: 1, burst: { pGoodToBad: 0, pBadToGood: 1 } }, 'here', { nonNeg: { jitterMs: 0 }, prob: { duplicate: 1 } });
  assert.throws(() => checkImpairment({ ...ok, delayMs: Infinity }, 'here'), {
    name: 'RangeError',
    message: 'here: delayMs must be a finite number >= 0, got Infinity',
  });
  assert.throws(() => checkImpairment({ ...ok, queueBytes: 0 }, 'here'), { message: 'here: queueBytes must be > 0, got 0' });
  assert.throws(() => checkImpairment(ok, 'link', { nonNeg: { jitterMs: -1 } }), { message: 'link: jitterMs must be a finite number >= 0, got -1' });
  assert.throws(() => checkImpairment(ok, 'link', { prob: { duplicate: NaN } }), { message: 'link: duplicate must be in 0..1, got NaN' });
  assert.throws(() => checkImpairment({ ...ok, burst: { pGoodToBad: 0.1, pBadToGood: 0.5, lossInBad: 2 } }, 'w'), {
    message: 'w: burst.lossInBad must be in 0..1, got 2',
  });
});

test('queue limit: explicit bytes, else 100 ms at the rate, at least the front end floor', () => {
  const p = { delayMs: 0, rateBps: 8e6, loss: 0 };
  assert.equal(queueLimitBytes(p, FRONT_ENDS.ip.queueFloorBytes), 100_000);
  assert.equal(queueLimitBytes(p, FRONT_ENDS.udp.queueFloorBytes), 100_000);
  assert.equal(queueLimitBytes({ ...p, rateBps: 1e6 }, FRONT_ENDS.ip.queueFloorBytes), 12_500);
  assert.equal(queueLimitBytes({ ...p, rateBps: 1e6 }, FRONT_ENDS.udp.queueFloorBytes), 65_536);
  assert.equal(queueLimitBytes({ ...p, queueBytes: 10 }, FRONT_ENDS.udp.queueFloorBytes), 10);
});

test('Gilbert-Elliott: loses by the state it is in, then steps; off means good and silent', () => {
  const ge = new GilbertElliott({ pGoodToBad: 0.5, pBadToGood: 0.5, lossInGood: 0.1, lossInBad: 0.9 });
  assert.equal(ge.step(0.05, 0.9), true); // good: 0.05 < 0.1 lost; stays good
  assert.equal(ge.step(0.5, 0.1), false); // good: kept; goes bad
  assert.equal(ge.step(0.5, 0.9), true); // bad: 0.5 < 0.9 lost; stays bad
  ge.configure({ pGoodToBad: 0, pBadToGood: 0 }); // new parameters: still bad
  assert.equal(ge.step(0.99, 0), true); // lossInBad defaults to 1
  ge.configure(null);
  assert.equal(ge.step(0, 0), false);
  ge.configure({ pGoodToBad: 0, pBadToGood: 0 }); // switched off and on again: good
  assert.equal(ge.step(0, 0), false); // lossInGood defaults to 0
});

test('bottleneck: serializes at the rate, tail-drops, and keeps its queue across a new rate', () => {
  const b = new Bottleneck(8e6, 3000); // 1000 bytes per ms
  assert.equal(b.admit(10, 1000), 11);
  assert.equal(b.admit(10, 2000), 13);
  assert.equal(b.admit(10, 1), QUEUE_FULL);
  assert.equal(b.queuedBytes(12), 1000);
  b.configure(16e6, 3000); // what is queued drains at the new rate
  assert.equal(b.queuedBytes(12), 2000);
  assert.equal(b.admit(13, 500), 13.25);
  b.configure(0, 3000); // unlimited: no queue, no delay
  assert.equal(b.admit(13, 1e9), 13);
  assert.equal(b.queuedBytes(13), 0);
});
