/**
 * One-shot sends through the library API (Sluice.sendAggregate and
 * Sluice.write), on loopback. Aggregates run on the portable engine and,
 * where the host has it, on the batched engine (same expectations);
 * writes use the portable engine on every tier in this build.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sluice, ClosedError, PolicyValidationError, probeTiers } from '../../src/index.js';
import { openReceiver as open, type Receiver } from '../../harness/traffic/udp.js';
import { probeBatchedIo } from '../../src/sys/probe.js';

const s = await Sluice.open({ tier: 'portable' });
const batchedProbe = (await probeTiers()).find((t) => t.tier === 'batched');
const batched = batchedProbe?.available ? await Sluice.open({ tier: 'batched' }) : undefined;
const engines: [string, Sluice | undefined, string | undefined][] = [
  ['portable engine', s, undefined],
  ['batched engine', batched, batched ? undefined : `batched tier unavailable: ${batchedProbe?.detail}`],
];
// Receivers are closed here too, so a failed assertion cannot keep the file alive.
const receivers: Receiver[] = [];
const openReceiver = async (): Promise<Receiver> => {
  const r = await open();
  receivers.push(r);
  return r;
};
after(async () => {
  for (const r of receivers) await r.close().catch(() => undefined);
  await s.close();
  await batched?.close();
});

for (const [engine, s, skip] of engines) {
  test(
    `${engine}: the design example: A..G for two users and two videos, sequence 3,1,5,4,2,6,7, leave in sequence order, each to its user, in one call`,
    { skip },
    async () => {
      const user1 = await openReceiver();
      const user2 = await openReceiver();
      const msg = (label: string, to: string, stream: string) => ({ to, data: Buffer.from(label), stream });
      const result = await s!.sendAggregate({
        messages: [
          msg('A', user1.url, 'video1'),
          msg('B', user2.url, 'video2'),
          msg('C', user1.url, 'video2'),
          msg('D', user2.url, 'video1'),
          msg('E', user1.url, 'video1'),
          msg('F', user2.url, 'video2'),
          msg('G', user1.url, 'video2'),
        ],
        schedule: { kind: 'sequence', sequence: [3, 1, 5, 4, 2, 6, 7], tickMs: 2 },
      });
      // Transmission order is sequence order, B E A D C F G, each at its tick.
      assert.deepEqual(
        result.messages.map((m) => 'ABCDEFG'[m.index]),
        ['B', 'E', 'A', 'D', 'C', 'F', 'G'],
      );
      assert.deepEqual(
        result.messages.map((m) => m.dueMs),
        [0, 2, 4, 6, 8, 10, 12],
      );
      for (let i = 1; i < result.messages.length; i++) assert.ok(result.messages[i]!.sentAtMs >= result.messages[i - 1]!.sentAtMs);
      assert.ok(
        result.messages.every((m) => m.sentAtMs >= m.dueMs),
        'nothing leaves early',
      );
      assert.equal(result.sent, 7);
      assert.equal(result.dropped, 0);
      await user1.waitFor(4);
      await user2.waitFor(3);
      assert.deepEqual(
        user1.received.map((r) => r.data.toString()),
        ['E', 'A', 'C', 'G'],
      );
      assert.deepEqual(
        user2.received.map((r) => r.data.toString()),
        ['B', 'D', 'F'],
      );
      assert.deepEqual(result.streams, {
        video1: { sent: 3, late: result.streams.video1!.late, dropped: 0, bytes: 3, lateness: result.streams.video1!.lateness },
        video2: { sent: 4, late: result.streams.video2!.late, dropped: 0, bytes: 4, lateness: result.streams.video2!.lateness },
      });
      assert.deepEqual(Object.keys(result.destinations).sort(), [user1.url, user2.url].sort());
      assert.equal(result.destinations[user1.url]!.sent, 4);
      assert.equal(result.destinations[user2.url]!.bytes, 3);
      for (const c of [...Object.values(result.streams), ...Object.values(result.destinations)]) {
        assert.ok(c.lateness.p50 <= c.lateness.p99 && c.lateness.p99 <= c.lateness.max, 'per-flow lateness percentiles are ordered');
      }
      assert.deepEqual({ ...result }.messages, result.messages, 'a spread result carries its messages');
      await user1.close();
      await user2.close();
    },
  );

  test(`${engine}: delays and remap: each message at its delay after the start; what was addressed to X goes to Y`, { skip }, async () => {
    const x = await openReceiver();
    const y = await openReceiver();
    await x.close(); // X must receive nothing: it is closed, and remapped anyway
    const r = await s!.sendAggregate({
      messages: [0, 1, 2].map((i) => ({ to: x.url, data: Buffer.from([i]) })),
      schedule: { kind: 'delays', delaysMs: [0, 15, 30] },
      remap: [{ from: x.url, to: y.url }],
    });
    await y.waitFor(3);
    assert.deepEqual(
      y.received.map((d) => d.data[0]),
      [0, 1, 2],
    );
    assert.ok(r.messages.every((m) => m.to === y.url));
    assert.ok(r.messages[2]!.sentAtMs >= 30 && r.elapsedMs >= 30);
    await y.close();
  });

  test(`${engine}: a message later than maxLatenessMs is dropped and counted; the others are sent`, { skip }, async () => {
    const rx = await openReceiver();
    // A range that started 5 s ago: the first two are 5 and 4 s late, far
    // beyond maxLatenessMs; the others are due 300 and 400 ms from now and
    // would have to wait 2 s more on a busy machine to count as late.
    const r = await s!.sendAggregate({
      messages: [0, 1, 2, 3].map((i) => ({ to: rx.url, data: Buffer.from([i]), stream: 's' })),
      schedule: { kind: 'range', startAt: Date.now() - 5000, durationMs: 6000, offsetsMs: [0, 1000, 5300, 5400] },
      maxLatenessMs: 2000,
    });
    assert.deepEqual(
      r.messages.map((m) => [m.index, m.status, m.reason]),
      [
        [0, 'dropped', 'late'],
        [1, 'dropped', 'late'],
        [2, 'sent', undefined],
        [3, 'sent', undefined],
      ],
    );
    assert.equal(r.dropped, 2);
    assert.equal(r.streams.s!.dropped, 2);
    await rx.waitFor(2);
    assert.deepEqual(
      rx.received.map((d) => d.data[0]),
      [2, 3],
    );
    await rx.close();
  });
}

test(
  'batched engine: messages due together leave in one sendmmsg, destinations in turns of `burst`, each turn one GSO message; the engine says which it was',
  { skip: engines[1]![2] },
  async () => {
    const rx = await Promise.all([0, 1, 2, 3, 4].map(() => openReceiver()));
    const messages = Array.from({ length: 500 }, (_, i) => ({ to: rx[i % 5]!.url, data: Buffer.from([i & 0xff, i >> 8]) }));
    const r = await batched!.sendAggregate({ messages, schedule: { kind: 'delays', delaysMs: messages.map(() => 0) } });
    assert.equal(r.engine, 'batched');
    assert.equal(r.sent, 500);
    assert.equal(r.sendCalls, 1, `500 messages due at once took ${r.sendCalls} sendmmsg calls`);
    // Default burst 64: 100 per destination go in turns of 64 and 36: two GSO messages each.
    if (probeBatchedIo().gso) assert.equal(r.gsoMessages, 10, 'turns of 64 per destination, each one GSO message');
    for (const x of rx) await x.waitFor(100);
    // Each receiver got its 100 in order.
    for (const [k, x] of rx.entries())
      assert.deepEqual(
        x.received.map((d) => d.data[0]! | (d.data[1]! << 8)),
        Array.from({ length: 100 }, (_, j) => j * 5 + k),
      );
    // burst 16: turns of 16, 16, ..., 4: seven GSO messages each.
    for (const x of rx) x.received.length = 0;
    const sixteen = await batched!.sendAggregate({ messages, schedule: { kind: 'delays', delaysMs: messages.map(() => 0) }, burst: 16 });
    if (probeBatchedIo().gso) assert.equal(sixteen.gsoMessages, 35);
    for (const x of rx) await x.waitFor(100);
    // burst 1: strict turns, no GSO, still one call.
    for (const x of rx) x.received.length = 0;
    const strict = await batched!.sendAggregate({ messages, schedule: { kind: 'delays', delaysMs: messages.map(() => 0) }, burst: 1 });
    assert.equal(strict.sendCalls, 1);
    assert.equal(strict.gsoMessages, 0);
    for (const x of rx) await x.waitFor(100);
  },
);

test('batched engine: close() rejects a send still in flight with ClosedError (it used to never settle)', { skip: engines[1]![2] }, async () => {
  const own = await Sluice.open({ tier: 'batched' });
  // Two messages a minute apart: the job is still running when the Sluice closes.
  const sending = own.sendAggregate({
    messages: [0, 1].map(() => ({ to: 'udp://127.0.0.1:9', data: new Uint8Array(8) })),
    schedule: { kind: 'delays', delaysMs: [0, 60_000] },
  });
  const settled = sending.then(
    () => 'resolved',
    (e: unknown) => e,
  );
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  await own.close();
  const outcome = await settled;
  assert.ok(outcome instanceof ClosedError, `the send settled with ${String(outcome)}`);
  assert.equal(outcome.code, 'SLUICE_ERR_CLOSED');
  assert.match(outcome.message, /batched send engine .*'sluice-sender'.* is closed/);
  assert.ok(performance.now() - t0 < 10_000, 'close() did not wait for the job');
});

test('write: entries cut into packets, destinations strictly interleaved, one completion with counters', async () => {
  const a = await openReceiver();
  const b = await openReceiver();
  const dataA = Buffer.alloc(2500, 0xaa);
  const dataB = Buffer.alloc(1000, 0xbb);
  const r = await s.write(
    [
      { to: a.url, data: dataA },
      { to: b.url, data: dataB },
    ],
    { packetSize: 600 },
  );
  assert.equal(r.packets, 5 + 2);
  assert.equal(r.sent, 7);
  assert.equal(r.bytes, 3500);
  assert.deepEqual(
    r.destinations.map((d) => [d.packets, d.bytes]),
    [
      [5, 2500],
      [2, 1000],
    ],
  );
  await a.waitFor(5);
  await b.waitFor(2);
  assert.deepEqual(
    a.received.map((d) => d.data.length),
    [600, 600, 600, 600, 100],
  );
  assert.deepEqual(
    b.received.map((d) => d.data.length),
    [600, 400],
  );
  assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(dataA));
  await a.close();
  await b.close();
});

test(
  "batched engine write: packets cut from the caller's buffers in place, strict interleave, then GSO runs with burst > 1",
  { skip: engines[1]![2] },
  async () => {
    const a = await openReceiver();
    const b = await openReceiver();
    const dataA = Buffer.from(Array.from({ length: 30_000 }, (_, i) => (i * 7) & 0xff));
    const dataB = Buffer.from(Array.from({ length: 12_345 }, (_, i) => (i * 13) & 0xff));
    const strict = await batched!.write(
      [
        { to: a.url, data: dataA },
        { to: b.url, data: dataB },
      ],
      { packetSize: 1000 },
    );
    assert.equal(strict.engine, 'batched');
    assert.equal(strict.packets, 30 + 13);
    assert.equal(strict.sent, 43);
    assert.equal(strict.gsoMessages, 0, 'burst 1: one packet per message');
    assert.ok(strict.sendCalls! <= 2, `43 messages took ${strict.sendCalls} sendmmsg calls`);
    await a.waitFor(30);
    await b.waitFor(13);
    assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(dataA));
    assert.ok(Buffer.concat(b.received.map((d) => d.data)).equals(dataB));
    assert.deepEqual(b.received.map((d) => d.data.length).slice(-2), [1000, 345]);

    a.received.length = 0;
    b.received.length = 0;
    const gso = await batched!.write(
      [
        { to: a.url, data: dataA },
        { to: b.url, data: dataB },
      ],
      { packetSize: 1000, burst: 8 },
    );
    assert.equal(gso.sent, 43);
    assert.ok(gso.gsoMessages! > 0, 'runs of 8 went as GSO messages');
    await a.waitFor(30);
    await b.waitFor(13);
    // The kernel cut the GSO runs back into the same datagrams, in order.
    assert.ok(Buffer.concat(a.received.map((d) => d.data)).equals(dataA));
    assert.ok(a.received.every((d, i, all) => d.data.length === (i === all.length - 1 ? 30_000 - 29 * 1000 : 1000)));
    assert.ok(Buffer.concat(b.received.map((d) => d.data)).equals(dataB));
  },
);

test('invalid aggregates and writes are refused with the field named', async () => {
  await assert.rejects(
    s.sendAggregate({ messages: [{ to: 'udp://127.0.0.1:9', data: Buffer.from('x') }], schedule: { kind: 'sequence', sequence: [1, 2] } }),
    (e: unknown) => e instanceof PolicyValidationError && /schedule\.sequence/.test(e.message),
  );
  await assert.rejects(s.write([{ to: 'udp://127.0.0.1:9', data: Buffer.from('x') }], { packetSize: 0 }), PolicyValidationError);
});
