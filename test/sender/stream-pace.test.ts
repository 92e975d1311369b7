/**
 * The stream scheduler with streams paced by their own clock (issue 20,
 * item 5), through a recording write function: datagrams are handed over
 * at their due times (never before; woken per datagram, not in tick
 * clumps) alongside a bitrate-paced stream in the same send loop; loops
 * start their next pass one pass later; RTP packets go one per entry, as
 * framed; data that gives no clock is refused at add().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamScheduler, InvalidArgumentError, type StreamWriteEntry, type StreamWriteOptions, type WriteResult } from '../../src/index.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';
import { pcrSchedule } from '../../src/sender/pace-pcr.js';

interface Call {
  at: number;
  entries: StreamWriteEntry[];
}

function recorder() {
  const calls: Call[] = [];
  const write = async (entries: StreamWriteEntry[], options: StreamWriteOptions): Promise<WriteResult> => {
    calls.push({ at: performance.now(), entries });
    const destinations = entries.map((e) => ({ to: e.to, packets: Math.ceil(e.data.byteLength / options.packetSize), bytes: e.data.byteLength, errors: 0 }));
    const packets = destinations.reduce((n, d) => n + d.packets, 0);
    const bytes = destinations.reduce((n, d) => n + d.bytes, 0);
    return { engine: 'portable', tier: 'portable', packets, sent: packets, bytes, errors: 0, destinations, elapsedMs: 0 };
  };
  return { calls, write };
}

/** `n` datagrams of a synthetic CBR TS at `bitrate`. */
function ts(bitrate: number, n: number): Uint8Array {
  const s = new SyntheticTsStream({ bitrateBps: bitrate });
  const out = new Uint8Array(n * 1316);
  for (let i = 0; i < n; i++) out.set(s.nextDatagram(), i * 1316);
  return out;
}

test('pace pcr: each datagram handed over at or after its due time, one wake-up per due time, beside a bitrate stream', async () => {
  const { calls, write } = recorder();
  const sched = new StreamScheduler(write, { packetSize: 1316 });
  const data = ts(1_052_800, 40); // 10 ms per datagram: 400 ms
  const { dueMs } = pcrSchedule(data, 1316);
  const t0 = performance.now();
  const paced = sched.add({ id: 'pcr', to: 'udp://127.0.0.1:9', data, pace: 'pcr' });
  const other = sched.add({ id: 'cbr', to: 'udp://127.0.0.1:10', data: new Uint8Array(1316 * 20), bitrate: 1_052_800 });
  const [final] = await Promise.all([paced.done, other.done]);
  await sched.close();
  assert.equal(final.status, 'finished');
  assert.equal(final.pace, 'pcr');
  assert.ok(Math.abs(final.passMs! - 400) < 1e-3, `one pass: ${final.passMs} ms`); // PCRs are whole 27 MHz ticks
  assert.ok(Math.abs(final.bitrate - 1_052_800) < 1, 'the bitrate of a clock-paced stream is its clock average');
  let k = 0;
  for (const c of calls) {
    for (const e of c.entries) {
      if (e.to !== 'udp://127.0.0.1:9') continue;
      for (let off = 0; off < e.data.byteLength; off += 1316, k++) {
        assert.ok(c.at >= t0 + dueMs[k]! - 0.001, `datagram ${k} handed over ${(t0 + dueMs[k]! - c.at).toFixed(2)} ms early`);
      }
    }
  }
  assert.equal(k, 40, 'every datagram, in order');
});

test('pace pcr with loop: the next pass starts one pass (by the clock) after the first', async () => {
  const { calls, write } = recorder();
  const sched = new StreamScheduler(write, { packetSize: 1316 });
  const data = ts(1_052_800, 10); // 100 ms per pass
  const t0 = performance.now();
  const s = sched.add({ id: 'loop', to: 'udp://127.0.0.1:9', data, pace: 'pcr', loop: true });
  while (s.stats().packets < 25) await new Promise((r) => setTimeout(r, 10));
  s.remove();
  await s.done;
  await sched.close();
  // Datagram 20 (pass 2, first) is due at 200 ms.
  let k = 0;
  for (const c of calls)
    for (const e of c.entries) for (let off = 0; off < e.data.byteLength; off += 1316, k++) if (k === 20) assert.ok(c.at >= t0 + 200 - 0.001);
  assert.ok(k >= 25);
  assert.ok(
    calls.every((c) => c.entries.every((e) => e.data.byteLength <= data.byteLength)),
    'a write never spans a pass boundary',
  );
});

test('pace rtp: one entry per RTP packet, as framed, at its timestamp', async () => {
  const { calls, write } = recorder();
  const sched = new StreamScheduler(write, { packetSize: 1500 });
  const sizes = [100, 200, 300, 400];
  const data = new Uint8Array(sizes.reduce((n, s) => n + s + 2, 0));
  const v = new DataView(data.buffer);
  let o = 0;
  sizes.forEach((size, i) => {
    v.setUint16(o, size);
    data[o + 2] = 0x80;
    v.setUint32(o + 6, i * 900); // 10 ms apart at 90 kHz
    o += size + 2;
  });
  const t0 = performance.now();
  const s = sched.add({ id: 'rtp', to: 'udp://127.0.0.1:9', data, pace: 'rtp' });
  const final = await s.done;
  await sched.close();
  assert.equal(final.packets, 4);
  const entries = calls.flatMap((c) => c.entries.map((e) => ({ at: c.at, len: e.data.byteLength, v: e.data[0] })));
  assert.deepEqual(
    entries.map((e) => e.len),
    sizes,
  );
  assert.ok(
    entries.every((e) => e.v === 0x80),
    'the length prefixes are not sent',
  );
  entries.forEach((e, i) => assert.ok(e.at >= t0 + i * 10 - 0.001));
});

test('add(): pace without a clock in the data, or an unknown pace, is an InvalidArgumentError naming the stream', async () => {
  const sched = new StreamScheduler(recorder().write, { packetSize: 1316 });
  assert.throws(
    () => sched.add({ id: 'x', to: 'udp://127.0.0.1:9', data: new Uint8Array(1316), pace: 'pcr' }),
    (e: unknown) => e instanceof InvalidArgumentError && /stream 'x': pace 'pcr'/.test(e.message),
  );
  assert.throws(() => sched.add({ id: 'y', to: 'udp://127.0.0.1:9', data: new Uint8Array(10), pace: 'fast' as never }), /pace must be one of/);
  assert.throws(() => sched.add({ id: 'z', to: 'udp://127.0.0.1:9', data: new Uint8Array(10) }), /bitrate must be a positive number/);
  await sched.close();
});
