/**
 * StreamScheduler: streams grouped by time interval. Most tests drive it
 * with a fake write function on real time; the last ones go through a
 * real Sluice to loopback receivers. Bounds are loose: this runs on noisy
 * 2-core VMs.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Sluice,
  StreamScheduler,
  streamTickMs,
  probeTiers,
  ClosedError,
  ConflictError,
  InvalidArgumentError,
  PolicyValidationError,
  type StreamStats,
  type StreamWriteEntry,
  type StreamWriteOptions,
  type WriteResult,
} from '../../src/index.js';
import { openReceiver, type Receiver } from '../../harness/traffic/udp.js';

interface Call {
  at: number;
  entries: StreamWriteEntry[];
  options: StreamWriteOptions;
}

/** A write function that records its calls; `delayMs` makes it slow. */
function fakeWrite(opts: { delayMs?: number; fail?: Error } = {}) {
  const calls: Call[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const write = async (entries: StreamWriteEntry[], options: StreamWriteOptions): Promise<WriteResult> => {
    calls.push({ at: performance.now(), entries, options });
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (opts.delayMs) await sleep(opts.delayMs);
      if (opts.fail) throw opts.fail;
      const destinations = entries.map((e) => ({ to: e.to, packets: Math.ceil(e.data.byteLength / options.packetSize), bytes: e.data.byteLength, errors: 0 }));
      const packets = destinations.reduce((n, d) => n + d.packets, 0);
      const bytes = destinations.reduce((n, d) => n + d.bytes, 0);
      return { engine: 'portable', tier: 'portable', packets, sent: packets, bytes, errors: 0, destinations, elapsedMs: 0 };
    } finally {
      inFlight--;
    }
  };
  return { write, calls, maxInFlight: () => maxInFlight };
}

/** Bytes per destination in calls[0..n), concatenated in order. */
function delivered(calls: readonly Call[], to: string, n = calls.length): Buffer {
  return Buffer.concat(calls.slice(0, n).flatMap((c) => c.entries.filter((e) => e.to === to).map((e) => e.data)));
}

const pattern = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

const dest = (i: number) => `udp://127.0.0.1:${6000 + i}`;

test('tick rule: 64 packets at the aggregate packet rate, clamped to [1, 10] ms, recomputed on add and remove; tickMs overrides', async () => {
  // One 4 Mbit/s stream of 1316-byte packets: 380 packets/s, 64 of them take 168 ms → 10.
  assert.equal(streamTickMs(4e6, 1316), 10);
  // 1000 of them: 0.17 ms → 1.
  assert.equal(streamTickMs(1000 * 4e6, 1316), 1);
  // 100 of them: 64 × 1316 × 8 / 400 Mbit/s = 1.684 ms.
  assert.ok(Math.abs(streamTickMs(100 * 4e6, 1316) - 1.68448) < 1e-6);
  assert.equal(streamTickMs(0, 1316), 10);

  const { write } = fakeWrite();
  const sched = new StreamScheduler(write, { packetSize: 1316 });
  try {
    const data = new Uint8Array(1316 * 100);
    sched.add({ id: 's0', to: dest(0), bitrate: 4e6, data });
    assert.equal(sched.tickMs, 10);
    for (let i = 1; i < 100; i++) sched.add({ id: `s${i}`, to: dest(i % 1000), bitrate: 4e6, data });
    assert.ok(Math.abs(sched.tickMs - 1.68448) < 1e-6, String(sched.tickMs));
    for (let i = 100; i < 1000; i++) sched.add({ id: `s${i}`, to: dest(i % 1000), bitrate: 4e6, data });
    assert.equal(sched.tickMs, 1);
    for (let i = 1; i < 1000; i++) assert.ok(sched.remove(`s${i}`));
    assert.equal(sched.tickMs, 10);
    assert.equal(sched.stats().streams, 1);
  } finally {
    await sched.close();
  }

  const fixed = new StreamScheduler(write, { packetSize: 1316, tickMs: 5 });
  try {
    assert.equal(fixed.tickMs, 5);
    for (let i = 0; i < 1000; i++) fixed.add({ id: `s${i}`, to: dest(i), bitrate: 4e6, data: new Uint8Array(1316) });
    assert.equal(fixed.tickMs, 5);
  } finally {
    await fixed.close();
  }
});

test('three streams for ~1 s: one write per tick carrying every stream with due data, never ahead of its bitrate, never behind by more than a packet', async () => {
  const { write, calls } = fakeWrite();
  const packetSize = 1316;
  const sched = new StreamScheduler(write, { packetSize, burst: 4 });
  const rates = [1e6, 3e6, 8e6];
  const data = rates.map((r, i) => pattern(Math.ceil((r / 8) * 3), i)); // 3 s worth: none finishes
  const added: number[] = [];
  const handles = rates.map((bitrate, i) => {
    added.push(performance.now());
    return sched.add({ id: `v${i}`, to: dest(i), bitrate, data: data[i]! });
  });
  assert.equal(sched.tickMs, 10); // 12 Mbit/s of 1316-byte packets: 1140 packets/s, 64 take 56 ms
  await sleep(1000);
  // Each stream's own start (its first tick, which a busy machine delays past add()).
  const startedAt = handles.map((h) => performance.now() - h.stats().elapsedMs);
  const stats = handles.map((h) => h.stats());
  const s = sched.stats();
  await sched.close();

  const given = rates.map(() => 0);
  for (const c of calls) {
    assert.deepEqual(c.options, { packetSize, burst: 4 });
    const tos = c.entries.map((e) => e.to);
    assert.equal(new Set(tos).size, tos.length, 'a stream appears at most once per write');
    for (const e of c.entries) {
      const i = rates.findIndex((_, k) => dest(k) === e.to);
      // No copies: a view into the stream's own buffer, at the next offset.
      assert.equal(e.data.buffer, data[i]!.buffer);
      assert.equal(e.data.byteOffset, data[i]!.byteOffset + given[i]!);
      assert.equal(e.data.byteLength % packetSize, 0, 'whole packets');
      given[i]! += e.data.byteLength;
    }
    for (let i = 0; i < rates.length; i++) {
      // Never ahead, by the test's clock from add() (earlier than the stream's start).
      const dueSinceAdd = ((c.at - added[i]!) * rates[i]!) / 8000;
      assert.ok(given[i]! <= dueSinceAdd + 1e-6, `stream ${i} ahead of its bitrate: ${given[i]} > ${dueSinceAdd}`);
      // Everything due went with this write, by the stream's own start: less
      // than a packet is left over, plus what falls due between the
      // scheduler's clock reading and the write (one tick allowed: a busy
      // machine may preempt the process in between).
      const due = Math.max(0, ((c.at - startedAt[i]!) * rates[i]!) / 8000);
      assert.ok(due - given[i]! < packetSize + (10 * rates[i]!) / 8000, `stream ${i} left behind: ${given[i]} of ${due}`);
    }
  }
  for (let i = 0; i < rates.length; i++) {
    const st = stats[i]!;
    assert.equal(st.status, 'running');
    const ideal = (rates[i]! * st.elapsedMs) / 8000;
    // Never ahead; the shortfall is what fell due since the last tick, which
    // the per-write check above already bounds (a late last tick only adds).
    assert.ok(st.bytes <= ideal, `stream ${i}: ${st.bytes} bytes vs ${ideal.toFixed(0)} ideal`);
    assert.ok(st.achievedBitrate <= rates[i]! * 1.001, `stream ${i}: ${st.achievedBitrate} bit/s`);
    process.stdout.write(
      `# stream ${i}: ${(st.achievedBitrate / 1e6).toFixed(3)} of ${rates[i]! / 1e6} Mbit/s, lateness p50 ${st.lateness.p50} max ${st.lateness.max} ms\n`,
    );
    assert.equal(st.bytes % packetSize, 0);
    assert.equal(st.packets, st.bytes / packetSize);
    assert.ok(st.lateness.max >= st.lateness.p50, `lateness ${JSON.stringify(st.lateness)}`);
    assert.ok(st.lateness.p50 <= st.lateness.p99 && st.lateness.p99 <= st.lateness.max);
  }
  // One write per tick (each tick has something due from the 8 Mbit/s stream), no overruns with an instant write.
  assert.equal(s.overruns, 0);
  assert.ok(s.writes >= s.ticks - 2 && s.writes <= s.ticks, JSON.stringify(s));
  // At most one per 10 ms grid slot (late timers skip slots, never add any).
  assert.ok(s.ticks >= 1 && s.ticks <= 102, `~100 ticks of 10 ms in 1 s: ${s.ticks}`);
  process.stdout.write(`# ${s.ticks} ticks in 1 s (100 on an idle machine)\n`);
  assert.equal(calls.length, s.writes);
  for (const h of handles) assert.equal((await h.done).status, 'closed');
});

test('a slow write: at most one in flight, ticks that find it running count as overruns, the next write carries all that is due, data complete and in order', async () => {
  const { write, calls, maxInFlight } = fakeWrite({ delayMs: 25 });
  const sched = new StreamScheduler(write, { packetSize: 1000, tickMs: 5 });
  const a = pattern(50_000, 1); // 200 ms at 2 Mbit/s
  const b = pattern(25_000, 2);
  const t0 = performance.now();
  const ha = sched.add({ id: 'a', to: dest(0), bitrate: 2e6, data: a });
  const hb = sched.add({ id: 'b', to: dest(1), bitrate: 1e6, data: b });
  const [fa, fb] = await Promise.all([ha.done, hb.done]);
  const elapsed = performance.now() - t0;
  const s = await sched.close();
  assert.equal(maxInFlight(), 1);
  assert.ok(s.overruns > 0, JSON.stringify(s));
  assert.equal(s.ticks, s.writes + s.overruns + (s.ticks - s.writes - s.overruns));
  assert.ok(s.writes <= Math.ceil(elapsed / 25) + 1, `writes ${s.writes} in ${elapsed} ms`);
  assert.ok(s.writeMs.p50 >= 20, JSON.stringify(s.writeMs));
  assert.ok(elapsed >= 199, `elapsed ${elapsed}: the 200 ms stream ended early`);
  // Catching up: each write carries everything due by the time it starts,
  // however long the previous one (or a busy machine) held it up: by write
  // k, stream a has all its bytes due at calls[k].at (2 Mbit/s = 250 bytes
  // per ms from t0, which is before the stream's start) but for the packet
  // being cut and one tick, and never more than is due.
  let sentA = 0;
  for (const c of calls) {
    sentA += c.entries.filter((e) => e.to === dest(0)).reduce((n, e) => n + e.data.byteLength, 0);
    const dueByNow = Math.min(a.byteLength, (c.at - t0) * 250);
    assert.ok(
      sentA >= Math.min(a.byteLength, dueByNow - 2 * 1000 - 5 * 250),
      `write at ${(c.at - t0).toFixed(1)} ms: ${sentA} bytes sent of ${dueByNow.toFixed(0)} due`,
    );
    assert.ok(sentA <= dueByNow + 1000, `write at ${(c.at - t0).toFixed(1)} ms: ${sentA} bytes sent, ahead of the ${dueByNow.toFixed(0)} due`);
  }
  process.stdout.write(`# ended after ${elapsed.toFixed(1)} ms (ideal 200) with ${s.writes} writes and ${s.overruns} overruns\n`);
  assert.ok(delivered(calls, dest(0)).equals(a));
  assert.ok(delivered(calls, dest(1)).equals(b));
  assert.equal(fa.status, 'finished');
  assert.equal(fa.bytes, a.byteLength);
  assert.equal(fa.packets, 50);
  assert.equal(fb.bytes, b.byteLength);
  // A write of 25 ms every ~30 ms: data waits up to about that long.
  assert.ok(fa.lateness.max >= 20 && fa.lateness.max < 150, JSON.stringify(fa.lateness));
});

test('streams added and removed while running: the tick follows, a removed stream stops and reports, ids are freed', async () => {
  const { write, calls } = fakeWrite();
  const packetSize = 1316;
  const sched = new StreamScheduler(write, { packetSize });
  const big = pattern(15_000_000, 3); // 100 Mbit/s for 1.2 s
  const ends: StreamStats[] = [];
  sched.on('end', (s) => ends.push(s));
  const a = sched.add({ id: 'a', to: dest(0), bitrate: 100e6, data: big });
  const tickA = (64 * packetSize * 8 * 1000) / 100e6; // 6.74 ms
  assert.ok(Math.abs(sched.tickMs - tickA) < 1e-9);
  await sleep(150);
  const b = sched.add({ id: 'b', to: dest(1), bitrate: 100e6, data: big });
  assert.ok(Math.abs(sched.tickMs - tickA / 2) < 1e-9);
  assert.throws(() => sched.add({ id: 'b', to: dest(2), bitrate: 1e6, data: big }), ConflictError);
  await sleep(150);
  const removedAtCall = calls.length;
  assert.ok(a === sched.stream('a'));
  a.remove();
  assert.equal(sched.stream('a'), undefined);
  assert.ok(Math.abs(sched.tickMs - tickA) < 1e-9);
  const fa = await a.done;
  assert.equal(fa.status, 'removed');
  assert.ok(Math.abs(fa.bytes - (100e6 * 0.3) / 8) < (100e6 * 0.1) / 8, `a sent ${fa.bytes}`);
  // The id is free again; the new stream starts from offset 0 at its own start.
  const a2 = sched.add({ id: 'a', to: dest(2), bitrate: 1e6, data: pattern(100_000, 4) });
  await sleep(120);
  assert.ok(
    calls.slice(removedAtCall).every((c) => c.entries.every((e) => e.to !== dest(0))),
    'nothing for a removed stream',
  );
  assert.ok(calls.some((c) => c.entries.some((e) => e.to === dest(1))) && calls.some((c) => c.entries.some((e) => e.to === dest(2))));
  assert.equal(b.stats().status, 'running');
  assert.ok(delivered(calls, dest(1)).equals(big.subarray(0, b.stats().bytes)));
  assert.ok(sched.remove('b'));
  assert.equal(sched.remove('b'), false);
  a2.remove();
  await Promise.all([b.done, a2.done]);
  assert.deepEqual(
    ends.map((e) => `${e.id}:${e.status}`),
    ['a:removed', 'b:removed', 'a:removed'],
  );
  assert.equal(sched.stats().streams, 0);
  await sched.close();
});

test('finishing: done and the end event with the final counters, on time; a looping stream starts over; the scheduler idles when nothing runs', async () => {
  const { write, calls } = fakeWrite();
  const sched = new StreamScheduler(write, { packetSize: 500 });
  const data = pattern(20_001, 5); // 160 ms at 1 Mbit/s; a short last packet
  const ended: string[] = [];
  sched.on('end', (s) => ended.push(s.id));
  const t0 = performance.now();
  const h = sched.add({ id: 'f', to: dest(0), bitrate: 1e6, data });
  const loop = sched.add({ id: 'l', to: dest(1), bitrate: 2e6, data: pattern(3000, 6), loop: true }); // a pass every 12 ms
  const empty = sched.add({ id: 'e', to: dest(2), bitrate: 1e6, data: new Uint8Array(0) });
  assert.equal((await empty.done).status, 'finished');
  const f = await h.done;
  const elapsed = performance.now() - t0;
  assert.equal(f.status, 'finished');
  assert.equal(f.bytes, data.byteLength);
  assert.equal(f.packets, 41);
  assert.equal(f.size, data.byteLength);
  // Not early and not faster than asked; how soon after 160 ms it ends is
  // the host's timer latency (a busy machine only makes it later).
  assert.ok(elapsed >= 160, `finished after ${elapsed} ms`);
  assert.ok(f.achievedBitrate <= 1e6 * 1.02, String(f.achievedBitrate));
  process.stdout.write(`# finished after ${elapsed.toFixed(1)} ms (ideal 160), ${(f.achievedBitrate / 1e6).toFixed(3)} Mbit/s of 1\n`);
  assert.ok(delivered(calls, dest(0)).equals(data));
  // The looping stream went round several times, each pass whole and in order.
  const l = loop.stats();
  assert.equal(l.status, 'running');
  assert.ok(l.bytes >= 3 * 3000, String(l.bytes));
  const got = delivered(calls, dest(1));
  const expect = Buffer.concat(Array.from({ length: Math.ceil(got.length / 3000) }, () => pattern(3000, 6))).subarray(0, got.length);
  assert.ok(got.equals(expect));
  assert.ok(calls.every((c) => c.entries.every((e) => e.to !== dest(1) || e.data.byteLength <= 3000)));
  loop.remove();
  assert.equal((await loop.done).status, 'removed');
  assert.deepEqual(ended, ['e', 'f', 'l']);
  // Nothing runs: no more ticks.
  const ticks = sched.stats().ticks;
  await sleep(50);
  assert.equal(sched.stats().ticks, ticks);
  assert.equal(sched.stats().streams, 0);
  // And it starts again on the next add.
  const again = await sched.add({ id: 'f', to: dest(0), bitrate: 8e6, data: pattern(5000, 7) }).done;
  assert.equal(again.bytes, 5000);
  await sched.close();
});

test('close ends running streams as closed; a rejected write fails the scheduler; bad input is refused', async () => {
  const { write } = fakeWrite();
  assert.throws(() => new StreamScheduler(write, {} as never), InvalidArgumentError);
  assert.throws(() => new StreamScheduler(write, { packetSize: 70_000 }), PolicyValidationError);
  assert.throws(() => new StreamScheduler(write, { packetSize: 1316, burst: 65 }), PolicyValidationError);
  assert.throws(() => new StreamScheduler(write, { packetSize: 1316, tickMs: 0.1 }), InvalidArgumentError);
  const sched = new StreamScheduler(write, { packetSize: 1316 });
  const data = new Uint8Array(100_000);
  assert.throws(() => sched.add({ id: 'x', to: 'udp://nope', bitrate: 1e6, data }), /to: expected HOST:PORT/);
  assert.throws(() => sched.add({ id: 'x', to: dest(0), bitrate: 0, data }), /bitrate must be a positive number/);
  assert.throws(() => sched.add({ id: 'x', to: dest(0), bitrate: Number.NaN, data }), InvalidArgumentError);
  assert.throws(() => sched.add({ id: 'x', to: dest(0), bitrate: 1e6, data: [1, 2] as never }), /Uint8Array/);
  assert.throws(() => sched.add({ id: '', to: dest(0), bitrate: 1e6, data }), /stream id/);
  assert.throws(() => sched.add({ id: 'x', to: dest(0), bitrate: 1e6, data: new Uint8Array(0), loop: true }), /looping stream needs data/);
  const h = sched.add({ id: 'x', to: { host: '127.0.0.1', port: 6000 }, bitrate: 1e6, data });
  await sleep(50);
  const final = await sched.close();
  const x = await h.done;
  assert.equal(x.status, 'closed');
  assert.equal(x.to, 'udp://127.0.0.1:6000');
  assert.ok(x.bytes > 0 && x.bytes < 100_000);
  assert.equal(final.bytes, x.bytes);
  assert.equal(await sched.close(), final, 'idempotent');
  assert.throws(() => sched.add({ id: 'y', to: dest(0), bitrate: 1e6, data }), ClosedError);

  const boom = new Error('engine gone');
  const failing = new StreamScheduler(fakeWrite({ fail: boom }).write, { packetSize: 1316 });
  const errors: Error[] = [];
  failing.on('error', (e) => errors.push(e));
  const f1 = failing.add({ id: 'a', to: dest(0), bitrate: 8e6, data });
  const f2 = failing.add({ id: 'b', to: dest(1), bitrate: 1e5, data });
  const [r1, r2] = await Promise.all([f1.done, f2.done]);
  assert.equal(r1.status, 'failed');
  assert.equal(r1.error, 'engine gone');
  assert.equal(r2.status, 'failed');
  assert.equal(failing.error, boom);
  assert.deepEqual(errors, [boom]);
  assert.ok(failing.closed);
  await failing.close();
});

// End to end: a real Sluice, loopback receivers.
const batchedProbe = (await probeTiers()).find((t) => t.tier === 'batched');
const sluices: Sluice[] = [];
const receivers: Receiver[] = [];
after(async () => {
  for (const r of receivers) await r.close().catch(() => undefined);
  for (const s of sluices) await s.close().catch(() => undefined);
});

for (const tier of ['portable', 'batched'] as const) {
  const skip = tier === 'batched' && !batchedProbe?.available ? `batched tier unavailable: ${batchedProbe?.detail}` : undefined;
  test(
    `${tier} tier: sluice.streams() sends two files to two receivers at their bitrates, complete, in about the time the bitrates give`,
    { skip },
    async () => {
      const sluice = await Sluice.open({ tier });
      sluices.push(sluice);
      const u1 = await openReceiver();
      const u2 = await openReceiver();
      receivers.push(u1, u2);
      if (tier === 'batched') await sluice.write([{ to: u1.url, data: new Uint8Array(0) }]); // start the send worker first
      const packetSize = 1316;
      const f1 = pattern(30 * packetSize, 8); // 39,480 bytes: 395 ms at 800 kbit/s
      const f2 = pattern(60_000, 9); // 600 ms at 800 kbit/s, a short last packet
      const sched = sluice.streams({ packetSize, burst: 2 });
      const t0 = performance.now();
      const h1 = sched.add({ id: 'one', to: u1.url, bitrate: 800e3, data: f1 });
      const h2 = sched.add({ id: 'two', to: u2.url, bitrate: 800e3, data: f2 });
      const [r1, r2] = await Promise.all([h1.done, h2.done]);
      const elapsed = performance.now() - t0;
      await sched.close();
      await u1.waitFor(30);
      await u2.waitFor(Math.ceil(60_000 / packetSize));
      assert.ok(Buffer.concat(u1.received.map((d) => d.data)).equals(f1));
      assert.ok(Buffer.concat(u2.received.map((d) => d.data)).equals(f2));
      for (const [r, size] of [
        [r1, f1.byteLength],
        [r2, f2.byteLength],
      ] as const) {
        assert.equal(r.status, 'finished');
        assert.equal(r.bytes, size);
        assert.equal(r.errors, 0);
        const ideal = (size * 8000) / 800e3;
        // Never faster than the bitrate; later only by the host's timer latency (printed).
        assert.ok(r.elapsedMs >= ideal - 1, `${r.id}: ${r.elapsedMs} ms, ideal ${ideal}`);
        process.stdout.write(`# ${r.id}: ${r.elapsedMs.toFixed(1)} ms, ideal ${ideal.toFixed(1)}\n`);
      }
      assert.ok(elapsed >= 599, `elapsed ${elapsed}`);
      // Both streams went in the same writes while both ran.
      const s = sched.stats();
      assert.ok(s.writes < r1.packets + r2.packets, JSON.stringify(s));
    },
  );
}
