import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { FastJoin } from '../../src/control/fast-join.js';
import type { CachedDatagram } from '../../src/media/rap-cache.js';

const d = (index: number): Uint8Array => Uint8Array.of(index & 0xff, index >>> 8);
const cached = (from: number, to: number, spacingMs = 10): CachedDatagram[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ bytes: d(from + i), index: from + i, atMs: i * spacingMs }));
const indexOf = (b: Uint8Array): number => b[0]! | (b[1]! << 8);

test('the PAT/PMT first, then the cache, then live datagrams; the plane takes over right after the last one sent', async () => {
  const sent: number[] = [];
  const asked: { after: number; force: boolean }[] = [];
  let live = 21;
  const join = new FastJoin({
    snapshot: { prefix: Uint8Array.of(0xff, 0xff), datagrams: cached(11, 20) },
    lastIndex: 20,
    burstRate: 4,
    send: (b) => sent.push(b[0] === 0xff ? -1 : indexOf(b)),
    join: async (after, force) => {
      asked.push({ after, force });
      // The first time the plane is two datagrams ahead (in flight to the tap): refused.
      if (asked.length === 1) return { applied: false, count: after + 2, overlap: 0 };
      return { applied: true, count: after, overlap: 0 };
    },
  });
  join.start();
  assert.deepEqual(sent, [-1, 11], 'the prefix and the first cached datagram leave at once; the rest is paced');
  const feeding = (async () => {
    for (let i = 0; i < 4; i++) {
      await sleep(15);
      join.onDatagram(d(live), live, 100 + i * 10);
      live++;
    }
  })();
  const outcome = await join.result;
  await feeding;
  const last = sent.at(-1)!;
  assert.deepEqual(sent, [-1, ...Array.from({ length: last - 10 }, (_, i) => 11 + i)], 'no gap, no duplicate, in order');
  assert.equal(outcome.boundary, last + 1);
  assert.equal(outcome.forced, false);
  assert.equal(outcome.burst, 10);
  assert.ok(asked.length >= 2);
  assert.ok(asked[1]!.after >= asked[0]!.after + 2, 'asks again only once the tap delivered what the plane had counted');
});

test('forced after refusals: the feeder forwards up to the plane count, then stops', async () => {
  const sent: number[] = [];
  let calls = 0;
  const join = new FastJoin({
    snapshot: undefined,
    lastIndex: 5,
    burstRate: 4,
    maxAttempts: 3,
    send: (b) => sent.push(indexOf(b)),
    join: async (after, force) => {
      calls++;
      return force ? { applied: true, count: after + 3, overlap: 0 } : { applied: false, count: after, overlap: 0 };
    },
  });
  join.start();
  for (let i = 6; i <= 12; i++) {
    await sleep(2);
    join.onDatagram(d(i), i, i);
  }
  const outcome = await join.result;
  assert.equal(calls, 3);
  assert.equal(outcome.forced, true);
  assert.equal(outcome.burst, 0);
  assert.deepEqual(
    sent,
    Array.from({ length: outcome.boundary - 6 }, (_, i) => 6 + i),
    'live from the next datagram up to the plane count',
  );
});

test('cancel: the result rejects and nothing more is sent', async () => {
  const sent: number[] = [];
  const join = new FastJoin({
    snapshot: { prefix: undefined, datagrams: cached(1, 50, 100) },
    lastIndex: 50,
    burstRate: 1,
    send: (b) => sent.push(indexOf(b)),
    join: async () => ({ applied: true, count: 0, overlap: 0 }),
  });
  join.start();
  join.cancel(new Error('removed'));
  await assert.rejects(join.result, /removed/);
  const n = sent.length;
  join.onDatagram(d(51), 51, 0);
  await sleep(20);
  assert.equal(sent.length, n);
});
