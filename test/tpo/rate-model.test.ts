/**
 * The data mover's path model: RTT estimation (RFC 9002 rules, 1.5×
 * backoff) and rate control that follows the bottleneck bandwidth and is
 * not halved by random loss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RttEstimator, MIN_RTO_MS, MIN_RTT_WINDOW_MS } from '../../src/tpo/rtt.js';
import { RateControl, STARTUP_GAIN } from '../../src/tpo/rate-control.js';

test('RTT: first sample sets SRTT, later ones smooth; ack delay subtracted only above the minimum', () => {
  const r = new RttEstimator();
  r.sample(100, 0, 0);
  assert.equal(r.srttMs, 100);
  assert.equal(r.rttvarMs, 50);
  r.sample(120, 10, 1);
  assert.equal(r.latestMs, 110, 'ack delay subtracted');
  assert.equal(r.srttMs, 0.875 * 100 + 0.125 * 110);
  r.sample(105, 10, 2);
  assert.equal(r.latestMs, 105, 'subtracting would go below the minimum of 100: not subtracted');
  assert.equal(r.minRttMs, 100);
});

test('RTT: the minimum is re-learned after its window; RTO backs off 1.5x per timeout and resets on a sample', () => {
  const r = new RttEstimator();
  r.sample(50, 0, 0);
  r.sample(80, 0, MIN_RTT_WINDOW_MS + 1);
  assert.equal(r.minRttMs, 80, 'an old minimum expires');
  const rto = r.rtoMs;
  assert.ok(rto >= MIN_RTO_MS);
  r.onTimeout();
  assert.equal(r.rtoMs, rto * 1.5);
  r.onTimeout();
  assert.equal(r.rtoMs, rto * 2.25);
  r.sample(80, 0, MIN_RTT_WINDOW_MS + 2);
  assert.ok(r.rtoMs < rto * 1.5);
});

/** Drives a RateControl over a simulated path of `linkBps` with `lossRate` random loss for `rounds` round trips. */
function drive(rc: RateControl, linkBps: number, lossRate: number, rounds: number, rttMs = 100): number[] {
  const rates: number[] = [];
  rc.onMinRtt(rttMs);
  for (let round = 0; round < rounds; round++) {
    // The path delivers min(pacing rate, link rate); the loss removes a share of it.
    const offered = rc.pacingRateBps;
    const delivered = Math.min(offered, linkBps) * (1 - lossRate);
    const bytes = (delivered * rttMs) / 1000;
    for (let k = 0; k < 10; k++) rc.onDelivery({ bytesPerSecond: delivered, appLimited: false }, bytes / 10);
    rc.onLoss((Math.min(offered, linkBps) * lossRate * rttMs) / 1000);
    rc.onRoundEnd(bytes);
    rates.push(rc.pacingRateBps);
  }
  return rates;
}

test('rate control: startup finds the bottleneck, then probes around it', () => {
  const link = 6_250_000; // 50 Mbit/s
  const rc = new RateControl();
  const rates = drive(rc, link, 0, 40);
  assert.equal(rc.phase, 'probe');
  const bw = rc.bandwidthBps;
  assert.ok(Math.abs(bw - link) / link < 0.05, `bandwidth estimate ${bw} for a ${link} link`);
  const late = rates.slice(-16);
  assert.ok(Math.max(...late) <= link * 1.3 && Math.min(...late) >= link * 0.7, `pacing ${Math.min(...late)}..${Math.max(...late)}`);
  // Window: 2 x BDP.
  assert.ok(Math.abs(rc.windowBytes - (2 * link * 100) / 1000) / ((2 * link * 100) / 1000) < 0.06);
});

test('rate control: random loss of 1 % and 3 % does not cut the rate (TCP would fall to ~1/(RTT·√loss))', () => {
  const link = 6_250_000;
  for (const loss of [0.01, 0.03]) {
    const rc = new RateControl();
    drive(rc, link, loss, 60);
    // The estimate follows what arrives: (1 - loss) of the link, not half of it.
    assert.ok(rc.bandwidthBps >= link * (1 - loss) * 0.95, `loss ${loss}: estimate ${rc.bandwidthBps}`);
  }
});

test('rate control: heavy loss (the link is saturated by others) brakes; the operator cap holds; app-limited samples do not lower the estimate', () => {
  const rc = new RateControl({ maxRateBps: 1_000_000 });
  drive(rc, 6_250_000, 0, 30);
  assert.ok(rc.pacingRateBps <= 1_000_000, 'capped');
  const heavy = new RateControl();
  drive(heavy, 6_250_000, 0, 30);
  const before = heavy.bandwidthBps;
  heavy.onLoss(1_000_000);
  heavy.onRoundEnd(0);
  assert.ok(heavy.bandwidthBps <= before * 0.5 + 1, 'halved after a round with heavy loss');
  const app = new RateControl();
  drive(app, 6_250_000, 0, 30);
  const est = app.bandwidthBps;
  for (let i = 0; i < 20; i++) {
    app.onDelivery({ bytesPerSecond: 1000, appLimited: true }, 100);
    app.onRoundEnd(0);
  }
  // 20 rounds of app-limited samples (more than the 10-round window): the estimate stays.
  assert.ok(app.bandwidthBps >= est * 0.9, `estimate ${app.bandwidthBps}`);
  assert.equal(new RateControl().gain, STARTUP_GAIN);
});

test('rate control: startup ends when a whole round sits 25 % above the minimum RTT (a queue is building)', () => {
  const rc = new RateControl();
  rc.onMinRtt(100);
  rc.onDelivery({ bytesPerSecond: 1_000_000, appLimited: false }, 1000);
  rc.onRoundEnd(1000, 101);
  assert.equal(rc.phase, 'startup', 'at the minimum: keep going');
  rc.onDelivery({ bytesPerSecond: 2_000_000, appLimited: false }, 1000);
  rc.onRoundEnd(1000, 130);
  assert.equal(rc.phase, 'drain');
});
