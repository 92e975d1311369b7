/**
 * The data mover's path model: RTT estimation (RFC 9002 rules, 1.5×
 * backoff) and rate control that follows the bottleneck bandwidth and is
 * not halved by random loss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RttEstimator, MIN_RTO_MS, MIN_RTT_WINDOW_MS, WindowedMin } from '../../src/tpo/protocol/rtt.js';
import { RateControl, STARTUP_GAIN } from '../../src/tpo/protocol/rate-control.js';
import { HOST_DELAY_CAP_MS } from '../../src/tpo/protocol/host-delay.js';

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

test('RTT: when the minimum expires, the best later sample of the window takes its place, not the next sample', () => {
  const m = new WindowedMin(10_000);
  m.update(100, 0);
  // Under load: samples with a queue, and now and then one near the path's delay.
  for (let t = 100; t <= 9_900; t += 100) m.update(t === 6_000 ? 102 : 130 + (t % 700) / 10, t);
  assert.equal(m.value, 100);
  assert.equal(m.update(150, 10_100), 102, 'the 100 ms sample expired; 102 ms (6 s ago) is the window minimum');
  assert.equal(m.update(160, 16_100), 130, 'the 102 ms sample expired too: the best of what is left in the window (130 ms at 7 s)');
  assert.equal(m.update(90, 16_200), 90, 'a new minimum replaces everything');
  // Nothing for longer than the window: start over from the next sample.
  assert.equal(m.update(140, 40_000), 140);
  // Brute-force check against the definition on random samples: never below the true
  // window minimum, and never above the minimum of the last half window.
  const w = new WindowedMin(1000);
  const samples: [number, number][] = [];
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let t = 0; t < 20_000; t += 1 + Math.floor(rnd() * 40)) {
    const v = 100 + rnd() * 50;
    samples.push([v, t]);
    const got = w.update(v, t);
    const inWindow = samples.filter(([, at]) => t - at <= 1000).map(([x]) => x);
    const lastHalf = samples.filter(([, at]) => t - at <= 500).map(([x]) => x);
    assert.ok(got >= Math.min(...inWindow) - 1e-9, `t=${t}: ${got} below the window's minimum`);
    assert.ok(got <= Math.max(...(lastHalf.length ? [Math.min(...lastHalf)] : [v])) + 1e-9, `t=${t}: ${got} above the last half window's minimum`);
  }
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
    for (let k = 0; k < 10; k++) rc.onDelivery(delivered, false, bytes / 10);
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
  // Window: 2 x BDP while probing, one BDP and 5 ms of queue otherwise (next tests).
  const want = rc.gain > 1 ? (2 * link * 100) / 1000 : (link * 105) / 1000;
  assert.ok(Math.abs(rc.windowBytes - want) / want < 0.06);
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
  for (let k = 0; k < 20; k++) heavy.onLoss(50_000);
  heavy.onRoundEnd(0);
  assert.ok(heavy.bandwidthBps <= before * 0.5 + 1, 'halved after a round with heavy loss');
  // A thin flow's round (a request of three segments and its parity) with one of its four datagrams
  // lost is 25 % loss but says nothing about the link: no brake (it held replies a round trip each).
  const thin = new RateControl();
  drive(thin, 6_250_000, 0, 30);
  const thinBefore = thin.bandwidthBps;
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 3; k++) thin.onDelivery(50_000, true, 1394);
    thin.onLoss(1394);
    thin.onRoundEnd(0);
  }
  assert.equal(thin.bandwidthBps, thinBefore, 'rounds of four datagrams with one lost do not brake');
  const app = new RateControl();
  drive(app, 6_250_000, 0, 30);
  const est = app.bandwidthBps;
  for (let i = 0; i < 20; i++) {
    app.onDelivery(1000, true, 100);
    app.onRoundEnd(0);
  }
  // 20 rounds of app-limited samples (more than the 10-round window): the estimate stays.
  assert.ok(app.bandwidthBps >= est * 0.9, `estimate ${app.bandwidthBps}`);
  assert.equal(new RateControl().gain, STARTUP_GAIN);
});

test('rate control: startup ends when a whole round sits 25 % above the minimum RTT and the bandwidth stopped growing', () => {
  const rc = new RateControl();
  rc.onMinRtt(100);
  rc.onDelivery(1_000_000, false, 1000);
  rc.onRoundEnd(1000, 101);
  assert.equal(rc.phase, 'startup', 'at the minimum: keep going');
  rc.onDelivery(2_000_000, false, 1000);
  rc.onRoundEnd(1000, 130);
  assert.equal(rc.phase, 'startup', 'delayed, but deliveries doubled: the path has room (a busy host delays acks too)');
  rc.onDelivery(2_100_000, false, 1000);
  rc.onRoundEnd(1000, 130);
  assert.equal(rc.phase, 'drain', 'delayed and no growth: a queue');
});

test('rate control: startup ends on a run of RTT samples above the minimum, without waiting for the round', () => {
  const rc = new RateControl();
  rc.onMinRtt(100);
  rc.onDelivery(4_000_000, false, 1000);
  // Scattered slow samples (a busy host): startup goes on.
  for (let i = 0; i < 100; i++) rc.onRttSample(i % 10 === 0 ? 140 : 103);
  assert.equal(rc.phase, 'startup');
  // 15 in a row above 100 + 12.5 ms: not yet; the 16th: a queue is building.
  for (let i = 0; i < 15; i++) rc.onRttSample(115);
  assert.equal(rc.phase, 'startup');
  rc.onRttSample(115);
  assert.equal(rc.phase, 'drain');
  assert.ok(Math.abs(rc.pacingRateBps - 4_000_000 / STARTUP_GAIN) < 1, 'drain paces below the estimate');
});

test('rate control: with the RTT known before any ack, startup paces the initial window over it', () => {
  const unknown = new RateControl({ initialWindowBytes: 14_000 });
  assert.equal(unknown.pacingRateBps, 125_000, 'RTT unknown: the configured 1 Mbit/s');
  assert.equal(unknown.windowBytes, 14_000);
  const known = new RateControl({ initialWindowBytes: 14_000 });
  known.onMinRtt(100);
  assert.ok(Math.abs(known.pacingRateBps - (STARTUP_GAIN * 14_000) / 0.1) < 1, `${known.pacingRateBps}`);
  assert.equal(known.windowBytes, 14_000);
  // A long path: the configured rate is the floor, and the window holds one RTT of it.
  const far = new RateControl({ initialWindowBytes: 14_000 });
  far.onMinRtt(600);
  assert.equal(far.pacingRateBps, 125_000);
  assert.equal(far.windowBytes, 75_000);
  // The first (tiny) samples do not pull startup below where it began.
  known.onDelivery(10_000, false, 1400);
  assert.ok(known.pacingRateBps >= (STARTUP_GAIN * 14_000) / 0.1 - 1);
});

test("rate control: an application-limited sender stays in startup (its RTT carries the other direction's queue)", () => {
  // The far gateway's direction: replies and window updates, a few KB/s, while its
  // acks queue behind the bulk going the other way (RTT 150-200 ms on a 100 ms path).
  const rc = new RateControl();
  rc.onMinRtt(100);
  for (let round = 0; round < 30; round++) {
    rc.onDelivery(4_000, true, 400);
    for (let i = 0; i < 20; i++) rc.onRttSample(170, true);
    rc.onRoundEnd(400, 170, 200, round * 170);
  }
  assert.equal(rc.phase, 'startup', 'no stalled growth, no queue signal while application-limited');
  // So a burst (a large reply) leaves at startup's rate, not at the few KB/s it was offered.
  assert.ok(rc.pacingRateBps >= 125_000, `pacing ${rc.pacingRateBps} B/s`);
  // Once it has more to send than its rate allows, the usual signals apply.
  for (let round = 0; round < 4; round++) {
    rc.onDelivery(200_000, false, 20_000);
    rc.onRoundEnd(20_000, 101, 101, 6000 + round * 100);
    assert.equal(rc.phase, round < 3 ? 'startup' : 'drain', `round ${round}`);
  }
});

test("rate control: the window holds the receiver's ack batch beyond gain × BDP, however small the BDP", () => {
  // Issue 18: a receiver that acks every 8th datagram holds up to 8 the BDP does not count. On
  // loopback (min RTT 0.2 ms) 2 × BDP fell to the 4-datagram minimum, below that batch, and every
  // round then waited for the receiver's ack timer.
  const batch = 2 * 8 * 1394;
  const loop = new RateControl({ ackAllowanceBytes: batch, minWindowBytes: 5400 });
  drive(loop, 500_000, 0, 40, 0.2);
  assert.equal(loop.phase, 'probe');
  // The allowance: both batches (the one held, the one whose ack is on its way) less what the BDP covers.
  const loopBdp = (loop.bandwidthBps * 0.2) / 1000;
  assert.ok(loopBdp < batch / 2);
  assert.ok(Math.abs(loop.windowBytes - (5400 + batch - loopBdp)) < 1e-6, `the minimum window and the ack batches on top: ${loop.windowBytes}`);
  // On a long path (BDP above a batch) the allowance is the one batch the receiver holds: the BDP covers the
  // batch whose ack is on its way (counting it again was a queue of 1.8 ms at 50 Mbit/s). Gain x BDP:
  // 2 x BDP while probing, BDP + 5 ms otherwise.
  const wan = new RateControl({ ackAllowanceBytes: batch });
  drive(wan, 6_250_000, 0, 40);
  const base = wan.gain > 1 ? (2 * wan.bandwidthBps * 100) / 1000 : (wan.bandwidthBps * 105) / 1000;
  assert.ok(Math.abs(wan.windowBytes - base - batch / 2) < 1, `window ${wan.windowBytes} = ${base} + ${batch / 2}`);
});

test('rate control: a run of delayed RTT samples while deliveries still grow (a busy host) does not end startup', () => {
  const rc = new RateControl();
  rc.onMinRtt(10);
  rc.onDelivery(4_000_000, false, 1000);
  // 40 samples 8 ms late (above 10 + 4 ms), with the delivery rate doubling meanwhile.
  for (let i = 0; i < 40; i++) {
    rc.onDelivery(4_000_000 * 2 ** (i / 16), false, 1000);
    rc.onRttSample(18);
  }
  assert.equal(rc.phase, 'startup');
  // The same delay with deliveries flat: a queue at the bottleneck (within two runs of 16: the run that
  // began while the rate still grew ends without a verdict).
  for (let i = 0; i < 32 && rc.phase === 'startup'; i++) rc.onRttSample(18);
  assert.equal(rc.phase, 'drain');
});

/**
 * A path of `linkBps` and `minRttMs` with a FIFO queue at the bottleneck:
 * each round delivers min(pacing, link) and the pacing's excess queues
 * (bounded by the window), every RTT sample carries the queue plus
 * `hostDelayMs(sample)` of scheduling delay. Returns the queue (ms) and the
 * pacing rate of every round.
 */
/**
 * `path.sampleFactor`: per-ack samples that many times the rate crossing the link (bunched acks
 * overstate it); `path.loss`: that share of what crosses the bottleneck is lost after it (whole
 * datagrams: most ack intervals lost nothing and show the link's rate).
 */
function drivePath(
  rc: RateControl,
  linkBps: number,
  minRttMs: number,
  rounds: number,
  hostDelayMs: (sample: number) => number = () => 0,
  path: { sampleFactor?: number; loss?: number } = {},
) {
  const { sampleFactor = 1, loss = 0 } = path;
  const out: { queueMs: number; pacing: number; bw: number }[] = [];
  rc.onMinRtt(minRttMs);
  let queueBytes = 0;
  let t = 0;
  for (let round = 0; round < rounds; round++) {
    const rttMs = minRttMs + (queueBytes * 1000) / linkBps;
    const offered = Math.min(rc.pacingRateBps, (rc.windowBytes * 1000) / rttMs);
    const carried = Math.min(offered, linkBps);
    queueBytes = Math.max(0, queueBytes + ((offered - linkBps) * rttMs) / 1000);
    const bytes = (carried * (1 - loss) * rttMs) / 1000;
    let lowest = Infinity;
    for (let k = 0; k < 10; k++) {
      const sampleRtt = minRttMs + (queueBytes * 1000) / linkBps + hostDelayMs(round * 10 + k);
      lowest = Math.min(lowest, sampleRtt);
      rc.onDelivery(carried * sampleFactor, false, bytes / 10);
      rc.onRttSample(sampleRtt);
    }
    if (loss > 0) rc.onLoss((carried * loss * rttMs) / 1000);
    t += rttMs;
    rc.onRoundEnd(bytes, lowest, lowest, t);
    out.push({ queueMs: (queueBytes * 1000) / linkBps, pacing: rc.pacingRateBps, bw: rc.bandwidthBps });
  }
  return out;
}

test('rate control: on a short path, a busy host delaying acks by 0-15 ms neither ends startup early nor holds the rate down', () => {
  const link = 25_000_000; // 200 Mbit/s
  const rc = new RateControl({ initialWindowBytes: 14_000 });
  let seed = 3;
  // Mostly late: a quarter of the samples within 4 ms, the rest 4-15 ms late (the 2-core host of issue 18: srtt 15-40 ms on a 10.7 ms path).
  const jitter = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 < 0.25 ? 0 : 4 + (11 * seed) / 2 ** 31);
  const rounds = drivePath(rc, link, 10, 300, jitter);
  assert.equal(rc.phase, 'probe');
  const late = rounds.slice(-80);
  const mean = late.reduce((a, r) => a + r.pacing, 0) / late.length;
  assert.ok(mean >= link * 0.9, `mean pacing ${(mean * 8) / 1e6} Mbit/s on a 200 Mbit/s link`);
});

test('rate control: a queue of a few ms that stands (the estimate a little above the bottleneck) is cut, so the path stays nearly empty', () => {
  // The estimate 8 % above the link (late, bunched acks): without a hold the
  // pacing would keep a queue up to the window (a BDP more).
  const link = 6_250_000; // 50 Mbit/s
  const rc = new RateControl();
  rc.onMinRtt(100);
  const rounds = drivePath(rc, link, 100, 120);
  // Overstate the bottleneck by 8 % from now on: every sample says 1.08 × what arrives.
  let queueBytes = 0;
  let t = 100_000;
  const queues: number[] = [];
  for (let round = 0; round < 200; round++) {
    const rttMs = 100 + (queueBytes * 1000) / link;
    const offered = Math.min(rc.pacingRateBps, (rc.windowBytes * 1000) / rttMs);
    const delivered = Math.min(offered, link);
    queueBytes = Math.max(0, queueBytes + ((offered - link) * rttMs) / 1000);
    const sample = 100 + (queueBytes * 1000) / link;
    for (let k = 0; k < 10; k++) {
      rc.onDelivery(delivered * 1.08, false, (delivered * rttMs) / 10_000);
      rc.onRttSample(sample);
    }
    t += rttMs;
    rc.onRoundEnd((delivered * rttMs) / 1000, sample, sample, t);
    queues.push((queueBytes * 1000) / link);
  }
  assert.ok(rounds.length === 120);
  const late = queues.slice(-100).sort((a, b) => a - b);
  assert.ok(late[50]! <= 10, `median queue ${late[50]} ms`);
});

test("rate control: a round's estimate is at most what the round delivered, the path's random loss counted back in", () => {
  // A 50 Mbit/s, 100 ms path: the medians of the estimate (× the link) and the queue after the first 100 rounds.
  const run = (path: { sampleFactor?: number; loss?: number }) => {
    const rounds = drivePath(new RateControl(), 6_250_000, 100, 300, undefined, path).slice(100);
    const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1]!;
    return { bw: median(rounds.map((r) => r.bw / 6_250_000)), queueMs: median(rounds.map((r) => r.queueMs)) };
  };
  // Samples 8 % high: the estimate is the link's rate, so no queue stands (with 10 % of slack
  // the estimate sat 0.9 % above the link and the median queue was 5 ms, held there by the standing-queue cuts).
  const bunched = run({ sampleFactor: 1.08 });
  assert.ok(bunched.bw >= 0.97 && bunched.bw <= 1.005, `bunched acks: estimate ${bunched.bw} × the link`);
  assert.ok(bunched.queueMs <= 1, `bunched acks: median queue ${bunched.queueMs} ms`);
  // 3 % random loss: the estimate stays at the link's rate, not the 97 % that arrives.
  const lossy = run({ loss: 0.03 });
  assert.ok(lossy.bw >= 0.99 && lossy.bw <= 1.01, `3 % loss: estimate ${lossy.bw} × the link`);
});

test('rate control: outside the probe round the window holds at most 5 ms of queue beyond one BDP (2 x BDP on short paths)', () => {
  const link = 6_250_000;
  const rc = new RateControl();
  drive(rc, link, 0, 40);
  let sawProbe = false;
  let sawCruise = false;
  for (let i = 0; i < 8; i++) {
    const bw = rc.bandwidthBps;
    if (rc.gain > 1) {
      sawProbe = true;
      assert.ok(Math.abs(rc.windowBytes - (2 * bw * 100) / 1000) < 1, 'probing: 2 x BDP');
    } else {
      sawCruise = true;
      assert.ok(Math.abs(rc.windowBytes - (bw * 105) / 1000) < 1, `gain ${rc.gain}: BDP + 5 ms`);
    }
    drive(rc, link, 0, 1);
  }
  assert.ok(sawProbe && sawCruise);
  const short = new RateControl();
  drive(short, 25_000_000, 0, 40, 4);
  assert.ok(Math.abs(short.windowBytes - (2 * short.bandwidthBps * 4) / 1000) < 1, 'a 4 ms path: 2 x BDP whatever the gain');
  const ten = new RateControl();
  drive(ten, 25_000_000, 0, 40, 10);
  const tenWant = ten.gain > 1 ? (2 * ten.bandwidthBps * 10) / 1000 : (ten.bandwidthBps * 15) / 1000;
  assert.ok(Math.abs(ten.windowBytes - tenWant) < 1, `a 10 ms path, gain ${ten.gain}: BDP + 5 ms outside the probe`);
});

test('rate control: on a path with random loss the window holds the same 5 ms of queue outside the probe round', () => {
  // Issue 18: without the cap at 1 % loss a 12-26 ms queue stood and request/response took 118-131 ms
  // against direct BBR's 101.
  const rc = new RateControl();
  drive(rc, 6_250_000, 0.01, 60);
  for (let i = 0; i < 8; i++) {
    const bw = rc.bandwidthBps;
    const want = rc.gain > 1 ? (2 * bw * 100) / 1000 : (bw * 105) / 1000;
    assert.ok(Math.abs(rc.windowBytes - want) < 1, `gain ${rc.gain}`);
    drive(rc, 6_250_000, 0.01, 1);
  }
});

test('rate control: the cycle’s drain (gain 0.75) ends once what is in flight fits one BDP, and the round’s end does not skip a cruising round', () => {
  const rc = new RateControl();
  drive(rc, 6_250_000, 0, 40);
  // Go round the cycle to its drain.
  let guard = 0;
  while (rc.gain >= 1 && guard++ < 20) drive(rc, 6_250_000, 0, 1);
  assert.equal(rc.gain, 0.75);
  const bdp = (rc.bandwidthBps * 100) / 1000;
  rc.onAcked(bdp * 1.2);
  assert.equal(rc.gain, 0.75, 'a queue is still in flight: the drain goes on');
  rc.onAcked(bdp * 0.99);
  assert.equal(rc.gain, 1, 'drained: cruising at once');
  rc.onAcked(bdp * 0.5);
  assert.equal(rc.gain, 1);
  // The round ends: the cycle does not move again, so six cruising rounds follow before the next probe.
  const gains: number[] = [];
  for (let i = 0; i < 7; i++) {
    drive(rc, 6_250_000, 0, 1);
    gains.push(rc.gain);
  }
  assert.deepEqual(gains, [1, 1, 1, 1, 1, 1, 1.25]);
  // Outside the drain an ack changes nothing.
  const before = rc.gain;
  rc.onAcked(0);
  assert.equal(rc.gain, before);
});

test('rate control: the window covers the host delay (the peer’s ack delay plus this side’s wait) at the estimated rate, the mean per round, capped', () => {
  // Issue 18: on loopback (min RTT 0.6 ms) the gateways held acks 2-20 ms under load; 2 x BDP
  // then capped the pair at 160-260 Mbit/s with each main thread half idle. The cap keeps a CPU-bound
  // receiver's backlog (a queue interactive flows wait in) short.
  const batch = 2 * 8 * 1394;
  const rc = new RateControl({ ackAllowanceBytes: batch, minWindowBytes: 5400 });
  drive(rc, 60_000_000, 0, 20, 0.6);
  const before = rc.windowBytes;
  // One round: most acks 1 ms late, one timer ack 30 ms late: the mean counts, each sample capped.
  assert.ok(HOST_DELAY_CAP_MS > 1 && HOST_DELAY_CAP_MS < 30);
  for (let i = 0; i < 9; i++) rc.onHostDelay(1);
  rc.onHostDelay(30);
  drive(rc, 60_000_000, 0, 1, 0.6);
  const mean = (9 * 1 + HOST_DELAY_CAP_MS) / 10;
  assert.ok(Math.abs(rc.hostDelayMs - mean) < 1e-9, `host delay ${rc.hostDelayMs}`);
  const host = (rc.bandwidthBps * mean) / 1000;
  assert.ok(host > batch, 'at this rate the host delay is more than the ack batch');
  assert.ok(rc.windowBytes > before + host - batch - 1, `window ${rc.windowBytes} (was ${before}, host ${host})`);
  // Rounds without such delay: after the bandwidth window's 10 rounds it no longer counts.
  for (let r = 0; r < 12; r++) {
    rc.onHostDelay(0.1);
    drive(rc, 60_000_000, 0, 1, 0.6);
  }
  assert.ok(rc.hostDelayMs < 0.2, `host delay ${rc.hostDelayMs} after quiet rounds`);
});
