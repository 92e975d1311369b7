/**
 * The IP-level WAN emulator's decisions (harness/wan/ip-lane.ts, on the
 * shared model harness/wan/model.ts): departure times, the tail-drop queue,
 * loss rates and determinism.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DROP_BURST, DROP_LOSS, DROP_QUEUE, WanLane } from '../../harness/wan/ip-lane.js';
import { Rng } from '../../harness/wan/rng.js';
import { FRONT_ENDS, checkImpairment, queueLimitBytes } from '../../harness/wan/model.js';

const IP_FLOOR = FRONT_ENDS.ip.queueFloorBytes;

test('no rate: every frame leaves exactly delayMs after it arrived', () => {
  const lane = new WanLane({ delayMs: 50, rateBps: 0, loss: 0 }, 1);
  for (const t of [0, 0, 0.1, 7.25, 1000]) assert.equal(lane.admit(t, 1500), t + 50);
});

test('rate: frames serialize back to back at the rate, then the delay is added', () => {
  // 12 Mbit/s = 1500 bytes per ms.
  const lane = new WanLane({ delayMs: 10, rateBps: 12e6, loss: 0 }, 1);
  assert.equal(lane.admit(0, 1500), 11);
  assert.equal(lane.admit(0, 1500), 12);
  assert.equal(lane.admit(0, 750), 12.5);
  // An idle link starts afresh: no credit for the idle time.
  assert.equal(lane.admit(100, 1500), 111);
});

test('departure times never decrease (the engine relies on a FIFO)', () => {
  const lane = new WanLane({ delayMs: 20, rateBps: 50e6, loss: 0.05 }, 3);
  let t = 0;
  let last = -Infinity;
  for (let i = 0; i < 20_000; i++) {
    t += (i * 7919) % 13 === 0 ? 1 : 0.1;
    const due = lane.admit(t, 40 + ((i * 31) % 1461));
    if (due < 0) continue;
    assert.ok(due >= last, `frame ${i} due ${due} before ${last}`);
    assert.ok(due >= t + 20);
    last = due;
  }
});

test('the queue holds 100 ms at the rate by default and tail-drops beyond', () => {
  const p = { delayMs: 0, rateBps: 50e6, loss: 0 };
  assert.equal(queueLimitBytes(p, IP_FLOOR), 625_000);
  const lane = new WanLane(p, 1);
  let accepted = 0;
  let dropped = 0;
  // 1000 full packets at once: 416 fit in 625 000 bytes.
  for (let i = 0; i < 1000; i++) {
    const r = lane.admit(0, 1500);
    if (r === DROP_QUEUE) dropped++;
    else accepted++;
  }
  assert.equal(accepted, 416);
  assert.equal(dropped, 584);
  assert.ok(Math.abs(lane.queuedBytes(0) - 624_000) < 1e-6);
  // The queue drains at the rate: 10 ms later 62 500 bytes have left.
  assert.ok(Math.abs(lane.queuedBytes(10) - (624_000 - 62_500)) < 1e-6);
  // An explicit limit wins; a tiny rate still holds two full packets.
  assert.equal(queueLimitBytes({ ...p, queueBytes: 3000 }, IP_FLOOR), 3000);
  assert.equal(queueLimitBytes({ ...p, rateBps: 1000 }, IP_FLOOR), 3000);
});

test('a sustained offer above the rate is cut to the rate', () => {
  const lane = new WanLane({ delayMs: 0, rateBps: 50e6, loss: 0 }, 1);
  // 80 Mbit/s of 1500-byte packets for 10 s: one every 0.15 ms.
  let bytes = 0;
  let lastDue = 0;
  for (let t = 0; t < 10_000; t += 0.15) {
    const due = lane.admit(t, 1500);
    if (due >= 0) {
      bytes += 1500;
      lastDue = due;
    }
  }
  const mbit = (bytes * 8) / (lastDue * 1000);
  assert.ok(Math.abs(mbit - 50) < 0.1, `${mbit} Mbit/s`);
});

test('random loss: about the configured fraction, after the bottleneck', () => {
  const lane = new WanLane({ delayMs: 0, rateBps: 12e6, loss: 0.03 }, 11);
  let lost = 0;
  const n = 100_000;
  let t = 0;
  for (let i = 0; i < n; i++) {
    const r = lane.admit(t, 1500);
    if (r === DROP_LOSS) lost++;
    else assert.ok(r >= 0);
    t += 1; // one packet per ms: exactly the rate, never queued
  }
  assert.ok(Math.abs(lost / n - 0.03) < 0.002, `lost ${lost / n}`);
  // A lost frame still used the link: the next frame waits for it.
  const l2 = new WanLane({ delayMs: 0, rateBps: 12e6, loss: 1 }, 1);
  assert.equal(l2.admit(0, 1500), DROP_LOSS);
  assert.equal(l2.queuedBytes(0), 1500);
});

test('ARP (exempt) is never lost, and still takes its PRNG draws', () => {
  const a = new WanLane({ delayMs: 1, rateBps: 0, loss: 0.5 }, 5);
  const b = new WanLane({ delayMs: 1, rateBps: 0, loss: 0.5 }, 5);
  for (let i = 0; i < 100; i++) assert.equal(a.admit(i, 28, true), i + 1);
  for (let i = 0; i < 100; i++) b.admit(i, 28, false);
  // Same seed, same number of draws so far: the next decisions agree.
  for (let i = 0; i < 1000; i++) assert.equal(a.admit(i, 100) < 0, b.admit(i, 100) < 0);
});

test('the k-th frame is lost when the third of its three draws is under `loss` (FRONT_ENDS.ip), whatever happened before', () => {
  const lane = new WanLane({ delayMs: 0, rateBps: 12e6, queueBytes: 3000, loss: 0.2 }, 17);
  const rng = Rng.fromSeed(17);
  let queueDrops = 0;
  for (let k = 0; k < 5000; k++) {
    const u = Array.from({ length: FRONT_ENDS.ip.drawsPerFrame }, () => rng.next());
    // Twice the rate into a two-packet queue: half the frames meet a full queue, and still take their draws.
    const r = lane.admit(k / 2, 1500);
    if (r === DROP_QUEUE) queueDrops++;
    else assert.equal(r === DROP_LOSS, u[2]! < 0.2, `frame ${k}`);
  }
  assert.ok(queueDrops > 2000, `${queueDrops} queue drops`);
});

test('same seed, same decisions; other seed, other decisions', () => {
  const run = (seed: number): number[] => {
    const lane = new WanLane({ delayMs: 0, rateBps: 0, loss: 0.1 }, seed);
    return Array.from({ length: 2000 }, (_, i) => (lane.admit(i, 100) < 0 ? 1 : 0));
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
});

test("Gilbert-Elliott: bursts with the chain's stationary loss and mean burst length", () => {
  // Good→bad 1 %, bad→good 25 %: bad 1/26 of the time, bursts of 4 on average.
  const lane = new WanLane({ delayMs: 0, rateBps: 0, loss: 0, burst: { pGoodToBad: 0.01, pBadToGood: 0.25 } }, 9);
  const n = 400_000;
  let lost = 0;
  let bursts = 0;
  let prev = false;
  for (let i = 0; i < n; i++) {
    const r = lane.admit(i, 100);
    const isLost = r === DROP_BURST;
    if (isLost) lost++;
    if (isLost && !prev) bursts++;
    prev = isLost;
  }
  assert.ok(Math.abs(lost / n - 1 / 26) < 0.004, `burst loss ${lost / n}`);
  assert.ok(Math.abs(lost / bursts - 4) < 0.3, `mean burst ${lost / bursts}`);
});

test('parameters are checked', () => {
  assert.throws(() => checkImpairment({ delayMs: -1, rateBps: 0, loss: 0 }, 'wan'), RangeError);
  assert.throws(() => checkImpairment({ delayMs: 0, rateBps: 0, loss: 1.5 }, 'wan'), RangeError);
  assert.throws(() => checkImpairment({ delayMs: 0, rateBps: 0, loss: 0, queueBytes: 0 }, 'wan'), RangeError);
  assert.throws(() => new WanLane({ delayMs: 0, rateBps: NaN, loss: 0 }, 1), RangeError);
});
