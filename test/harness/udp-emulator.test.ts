/**
 * The UDP link emulator (harness/wan/udp-emulator.ts) on loopback, and its PRNG.
 * Every test datagram carries a sequence number, its send time and a payload
 * derived from the sequence number, so a receiver can tell loss, duplication,
 * reordering, delay and corruption apart. Senders are paced so the kernel's
 * socket buffers never drop anything (that would be loss the emulator did not
 * decide); each test checks the emulator received everything that was sent.
 *
 * The machine may be busy (CI has 2 cores and other work): timers fire late,
 * so datagrams leave late and senders fall behind. Assertions are therefore
 * about what the emulator decides (counters, order, which datagrams) and
 * about lower bounds (never early, never faster than the rate); how promptly
 * it delivers on a quiet machine is printed as a diagnostic, and measured by
 * the bench (the TPO suites run across it). Deadlines only catch hangs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Rng } from '../../harness/wan/rng.js';
import { FRONT_ENDS } from '../../harness/wan/model.js';
import { LinkEmulator, type Direction, type LinkEmulatorOptions, type Peer } from '../../harness/wan/udp-emulator.js';

// ---------------------------------------------------------------- PRNG

test('rng: xoshiro128** matches the reference vector from state {1, 2, 3, 4}', () => {
  // From the reference C implementation (as in Rust rand_xoshiro's tests).
  const r = new Rng([1, 2, 3, 4]);
  assert.deepEqual(
    Array.from({ length: 10 }, () => r.nextU32()),
    [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804],
  );
});

test('rng: same seed, same sequence; different seeds differ; state round-trips; zero state refused', () => {
  const take = (r: Rng, n: number) => Array.from({ length: n }, () => r.nextU32());
  assert.deepEqual(take(Rng.fromSeed(42), 100), take(Rng.fromSeed(42), 100));
  assert.notDeepEqual(take(Rng.fromSeed(42), 100), take(Rng.fromSeed(43), 100));
  assert.notDeepEqual(take(Rng.fromSeed(0), 10), new Array(10).fill(0));
  const r = Rng.fromSeed(7);
  take(r, 5);
  const copy = new Rng(r.state());
  assert.deepEqual(take(copy, 50), take(r, 50));
  assert.throws(() => new Rng([0, 0, 0, 0]), RangeError);
});

test('rng: next() is in [0, 1) and int(n) in [0, n) for any seed', () => {
  fc.assert(
    fc.property(fc.integer(), fc.integer({ min: 1, max: 2 ** 32 }), (seed, n) => {
      const r = Rng.fromSeed(seed);
      for (let i = 0; i < 50; i++) {
        const x = r.next();
        const k = r.int(n);
        if (!(x >= 0 && x < 1 && Number.isInteger(k) && k >= 0 && k < n)) return false;
      }
      return true;
    }),
  );
});

test('rng: roughly uniform (chi-square over 16 bins, mean, low bit)', () => {
  const r = Rng.fromSeed(2024);
  const bins = new Array<number>(16).fill(0);
  const n = 160_000;
  let sum = 0;
  let odd = 0;
  for (let i = 0; i < n; i++) {
    const u = r.nextU32();
    bins[u >>> 28]!++;
    sum += u / 2 ** 32;
    odd += u & 1;
  }
  const expected = n / 16;
  const chi2 = bins.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 37.7, `chi-square ${chi2.toFixed(1)} ≥ 37.7 (df 15, p = 0.001)`);
  assert.ok(Math.abs(sum / n - 0.5) < 0.005, `mean ${sum / n}`);
  assert.ok(Math.abs(odd / n - 0.5) < 0.01, `low bit ${odd / n}`);
});

// ---------------------------------------------------------------- helpers

const HEADER = 12; // u32 sequence number + f64 send time (performance.now(), same process)

function datagram(seq: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(Math.max(HEADER, size));
  b.writeUInt32BE(seq, 0);
  b.writeDoubleBE(performance.now(), 4);
  for (let i = HEADER; i < b.length; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
}

/** The sequence number, after checking every payload byte. */
function verify(b: Buffer): number {
  assert.ok(b.length >= HEADER, `runt datagram of ${b.length} bytes`);
  const seq = b.readUInt32BE(0);
  for (let i = HEADER; i < b.length; i++) {
    if (b[i] !== ((seq * 31 + i * 7) & 0xff)) assert.fail(`datagram ${seq} corrupt at byte ${i}`);
  }
  return seq;
}

interface Arrival {
  seq: number;
  size: number;
  sentAt: number;
  at: number;
}

interface Endpoint {
  socket: dgram.Socket;
  peer: Peer;
  arrivals: Arrival[];
  /** Called for each arrival (after it is recorded). */
  onArrival?: (data: Buffer, from: dgram.RemoteInfo) => void;
}

async function endpoint(): Promise<Endpoint> {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const ep: Endpoint = { socket, peer: { address: '127.0.0.1', port: socket.address().port }, arrivals: [] };
  socket.on('message', (data, from) => {
    ep.arrivals.push({ seq: verify(data), size: data.length, sentAt: data.readDoubleBE(4), at: performance.now() });
    ep.onArrival?.(data, from);
  });
  return ep;
}

const closeSocket = (s: dgram.Socket) => new Promise<void>((r) => s.close(() => r()));

interface Rig {
  emu: LinkEmulator;
  A: Endpoint;
  B: Endpoint;
  close(): Promise<void>;
}

/** A and B on loopback with the emulator between them; B is configured, A is learned. */
async function rig(options: LinkEmulatorOptions = {}): Promise<Rig> {
  const A = await endpoint();
  const B = await endpoint();
  const emu = await LinkEmulator.create({ peerB: B.peer, ...options });
  return {
    emu,
    A,
    B,
    close: async () => {
      await emu.close();
      await Promise.all([closeSocket(A.socket), closeSocket(B.socket)]);
    },
  };
}

/** Sends n datagrams in batches with a 1 ms pause between them (the kernel buffers never fill). */
async function sendBatched(from: dgram.Socket, to: Peer, n: number, size: (seq: number) => number, batch = 50): Promise<void> {
  for (let seq = 0; seq < n;) {
    for (const end = Math.min(n, seq + batch); seq < end; seq++) from.send(datagram(seq, size(seq)), to.port, to.address);
    await sleep(1);
  }
}

/** Most datagrams sent before the emulator (same event loop) gets to read: a few KB each in a socket buffer of ~400 KB (rmem_max). */
const CATCH_UP_CHUNK = 64;

/**
 * Sends at `pps` for `durationMs`, catching up after late timers in chunks
 * that let the emulator read in between (a catch-up burst after a stall must
 * not overflow its socket buffer: that loss would not be the emulator's).
 */
async function sendPaced(from: dgram.Socket, to: Peer, pps: number, durationMs: number, size: number): Promise<number> {
  const t0 = performance.now();
  let seq = 0;
  for (;;) {
    const elapsed = performance.now() - t0;
    if (elapsed >= durationMs) return seq;
    const target = Math.floor((elapsed * pps) / 1000);
    while (seq < target) {
      for (const end = Math.min(target, seq + CATCH_UP_CHUNK); seq < end; seq++) from.send(datagram(seq, size), to.port, to.address);
      if (seq < target) await new Promise((r) => setImmediate(r));
    }
    await sleep(1);
  }
}

/** Waits for `cond`; the deadline only catches a hang (far above what a loaded machine needs). */
async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(5);
  }
}

/** Waits until the emulator received n in `dir`, has nothing in flight and the receiver got all it forwarded. */
async function drained(r: Rig, dir: Direction, n: number, timeoutMs = 30_000): Promise<void> {
  const rx = dir === 'aToB' ? r.B : r.A;
  await until(
    `${dir}: ${n} received and everything forwarded delivered`,
    () => {
      const s = r.emu.stats(dir);
      return s.received === n && s.inFlight === 0 && rx.arrivals.length === s.forwarded;
    },
    timeoutMs,
  );
}

/** The balance every direction keeps once nothing is in flight. */
function assertBalanced(r: Rig, dir: Direction): void {
  const s = r.emu.stats(dir);
  assert.equal(
    s.received + s.duplicated,
    s.forwarded + s.droppedRandom + s.droppedBurst + s.droppedQueue + s.droppedDown + s.droppedNoPeer + s.inFlight,
    `${dir} counters balance: ${JSON.stringify(s)}`,
  );
}

const seqs = (arrivals: Arrival[]) => arrivals.map((a) => a.seq);

// ---------------------------------------------------------------- link

test('pass-through without impairment is byte-exact and ordered, both ways', { timeout: 60_000 }, async () => {
  const r = await rig();
  try {
    const n = 1000;
    const size = (seq: number) => HEADER + ((seq * 97) % 1461); // 12..1472 bytes
    // B needs A to be learned before it can reach it: A speaks first.
    await sendBatched(r.A.socket, r.emu.a, n, size);
    await sendBatched(r.B.socket, r.emu.b, n, size);
    await drained(r, 'aToB', n);
    await drained(r, 'bToA', n);
    for (const ep of [r.B, r.A]) {
      assert.deepEqual(
        seqs(ep.arrivals),
        Array.from({ length: n }, (_, i) => i),
      );
      assert.deepEqual(
        ep.arrivals.map((a) => a.size),
        Array.from({ length: n }, (_, i) => size(i)),
      );
    }
    const s = r.emu.stats('aToB');
    assert.equal(s.forwarded, n);
    assert.equal(s.forwardedBytes, s.receivedBytes);
    assert.deepEqual(r.emu.peer('a'), r.A.peer);
    assertBalanced(r, 'aToB');
    assertBalanced(r, 'bToA');
  } finally {
    await r.close();
  }
});

async function lossRun(seed: number, params: LinkEmulatorOptions['aToB'], n = 5000): Promise<{ lost: number[]; r: ReturnType<LinkEmulator['stats']> }> {
  const r = await rig({ seed, aToB: params });
  try {
    await sendBatched(r.A.socket, r.emu.a, n, () => 100);
    await drained(r, 'aToB', n);
    assertBalanced(r, 'aToB');
    const got = new Set(seqs(r.B.arrivals));
    const lost: number[] = [];
    for (let i = 0; i < n; i++) if (!got.has(i)) lost.push(i);
    return { lost, r: r.emu.stats('aToB') };
  } finally {
    await r.close();
  }
}

test('seeded 10 % random loss: rate within 10 %, identical drops for the same seed', { timeout: 60_000 }, async (t) => {
  const first = await lossRun(99, { loss: 0.1 });
  const again = await lossRun(99, { loss: 0.1 });
  const other = await lossRun(100, { loss: 0.1 });
  t.diagnostic(`lost ${first.lost.length} / 5000 (seed 99), ${other.lost.length} (seed 100)`);
  assert.ok(first.lost.length >= 450 && first.lost.length <= 550, `lost ${first.lost.length} of 5000`);
  assert.equal(first.r.droppedRandom, first.lost.length);
  assert.deepEqual(again.lost, first.lost);
  assert.notDeepEqual(other.lost, first.lost);
  // The k-th datagram's loss is the third of its seven draws (FRONT_ENDS.udp): the drops follow from the seed alone.
  const rng = Rng.fromSeed(99);
  const predicted: number[] = [];
  for (let k = 0; k < 5000; k++) {
    const u = Array.from({ length: FRONT_ENDS.udp.drawsPerFrame }, () => rng.next());
    if (u[2]! < 0.1) predicted.push(k);
  }
  assert.deepEqual(first.lost, predicted);
});

test('burst loss (Gilbert-Elliott) makes runs of mean length ~1/pBadToGood', { timeout: 60_000 }, async (t) => {
  const burst = { pGoodToBad: 0.03, pBadToGood: 0.25 };
  const { lost, r } = await lossRun(7, { burst });
  const runs: number[] = [];
  for (let i = 0; i < lost.length; i++) {
    if (i > 0 && lost[i] === lost[i - 1]! + 1) runs[runs.length - 1]!++;
    else runs.push(1);
  }
  const mean = lost.length / runs.length;
  const rate = lost.length / 5000;
  t.diagnostic(
    `lost ${lost.length} (${(rate * 100).toFixed(1)} %, steady state 10.7 %) in ${runs.length} runs, mean run ${mean.toFixed(2)} (expected 4), longest ${Math.max(...runs)}`,
  );
  assert.equal(r.droppedBurst, lost.length);
  assert.equal(r.droppedRandom, 0);
  assert.ok(mean >= 3.2 && mean <= 4.8, `mean run ${mean}`);
  assert.ok(rate >= 0.07 && rate <= 0.15, `loss rate ${rate}`);
  // Random loss at the same rate has runs of ~1.1: the burst model is what made them long.
  const random = await lossRun(7, { loss: rate });
  let randomRuns = 0;
  for (let i = 0; i < random.lost.length; i++) if (i === 0 || random.lost[i] !== random.lost[i - 1]! + 1) randomRuns++;
  assert.ok(random.lost.length / randomRuns < 1.5, `random loss mean run ${random.lost.length / randomRuns}`);
});

test('duplication and reordering at roughly their rates, payloads intact, nothing lost', { timeout: 60_000 }, async (t) => {
  const n = 4000;
  const r = await rig({ seed: 5, aToB: { duplicate: 0.05, reorder: 0.05, reorderDelayMs: 5 } });
  try {
    await sendBatched(r.A.socket, r.emu.a, n, (seq) => 64 + (seq % 900), 40);
    await drained(r, 'aToB', n);
    assertBalanced(r, 'aToB');
    const s = r.emu.stats('aToB');
    const seen = new Set<number>();
    let dups = 0;
    let late = 0;
    let max = -1;
    for (const { seq } of r.B.arrivals) {
      if (seen.has(seq)) dups++;
      else if (seq < max) late++;
      seen.add(seq);
      max = Math.max(max, seq);
    }
    t.diagnostic(`duplicates ${dups} (counter ${s.duplicated}), arrived late ${late} (held back ${s.reordered}) of ${n}`);
    assert.equal(seen.size, n, 'every datagram arrives at least once');
    assert.equal(dups, s.duplicated);
    assert.ok(dups >= 0.035 * n && dups <= 0.065 * n, `duplicates ${dups}`);
    assert.ok(s.reordered >= 0.035 * n && s.reordered <= 0.065 * n, `held back ${s.reordered}`);
    // A held datagram is late unless nothing was sent in the 5 ms behind it (or its duplicate went first).
    assert.ok(late >= 0.8 * s.reordered && late <= s.reordered, `late ${late} vs held ${s.reordered}`);
  } finally {
    await r.close();
  }
});

test('delay adds at least delayMs each way (echo RTT); jitter without reorder keeps order', { timeout: 60_000 }, async (t) => {
  const r = await rig({ aToB: { delayMs: 40 }, bToA: { delayMs: 40 } });
  try {
    r.B.onArrival = (data) => r.B.socket.send(data, r.emu.b.port, r.emu.b.address);
    for (let seq = 0; seq < 20; seq++) {
      r.A.socket.send(datagram(seq, 200), r.emu.a.port, r.emu.a.address);
      await sleep(15);
    }
    await until('20 echoes', () => r.A.arrivals.length === 20);
    const rtts = r.A.arrivals.map((a) => a.at - a.sentAt).sort((x, y) => x - y);
    const median = rtts[10]!;
    t.diagnostic(`RTT with 2 × 40 ms: min ${rtts[0]!.toFixed(2)}, median ${median.toFixed(2)}, max ${rtts[19]!.toFixed(2)} ms`);
    // Never early. How close to 80 ms the echoes come is the host's timer
    // latency (printed above), not the emulator's behaviour.
    assert.ok(rtts[0]! >= 80, `min RTT ${rtts[0]}`);
  } finally {
    await r.close();
  }

  const j = await rig({ seed: 3, aToB: { delayMs: 10, jitterMs: 20, reorder: false } });
  try {
    const n = 2000;
    await sendBatched(j.A.socket, j.emu.a, n, () => 100, 20);
    await drained(j, 'aToB', n);
    assert.deepEqual(
      seqs(j.B.arrivals),
      Array.from({ length: n }, (_, i) => i),
      'jitter must not reorder',
    );
    const oneWay = j.B.arrivals.map((a) => a.at - a.sentAt).sort((x, y) => x - y);
    t.diagnostic(`one-way with 10 ms + jitter 20 ms: min ${oneWay[0]!.toFixed(2)}, median ${oneWay[n >> 1]!.toFixed(2)}, max ${oneWay[n - 1]!.toFixed(2)} ms`);
    assert.ok(oneWay[0]! >= 10, `min one-way ${oneWay[0]}`);
    // Jitter is applied: of 2,000 uniform draws in [0, 20] the largest is above 15 (failing odds 0.75^2000).
    // (A late timer only adds, so this cannot fail on a busy machine.)
    assert.ok(oneWay[n - 1]! >= 25, `max one-way ${oneWay[n - 1]}`);
  } finally {
    await j.close();
  }
});

test('rateBps caps throughput at the rate: never faster, and at the rate while the queue holds a backlog', { timeout: 60_000 }, async (t) => {
  // A slow link and a queue of a full second: a sender stalled by a busy
  // machine (its catch-up bursts land in the queue) leaves the link idle
  // only if it stalls for longer than that, and the emulator's own bursts
  // after a late timer stay well inside the receiver's socket buffer.
  const rateBps = 2e6;
  const size = 1200;
  const queueBytes = rateBps / 8; // 1 s
  const r = await rig({ aToB: { rateBps, queueBytes } });
  try {
    // Twice the bottleneck rate for 2 s.
    const pps = Math.round((2 * rateBps) / 8 / size);
    const sent = await sendPaced(r.A.socket, r.emu.a, pps, 2000, size);
    await drained(r, 'aToB', sent);
    assertBalanced(r, 'aToB');
    const s = r.emu.stats('aToB');
    const arr = r.B.arrivals;
    const firstSent = Math.min(...arr.map((a) => a.sentAt));
    const last = arr[arr.length - 1]!.at;
    const bits = arr.reduce((sum, a) => sum + a.size, 0) * 8;
    // Never faster: every datagram waits its turn behind the ones before it,
    // so all of them take at least bits / rate from the first send (late
    // timers only add; one datagram's worth of slack for the first).
    const overall = (bits - size * 8) / ((last - firstSent) / 1000);
    // At the rate: from 100 ms after the first arrival to the last one the queue is never empty.
    const from = arr[0]!.at + 100;
    const window = arr.filter((a) => a.at >= from);
    const achieved = (window.reduce((sum, a) => sum + a.size, 0) * 8) / ((last - from) / 1000);
    t.diagnostic(
      `sent ${sent} (${((sent * size * 8) / 1e6).toFixed(1)} Mbit in 2 s), delivered ${(achieved / 1e6).toFixed(3)} Mbit/s of ${rateBps / 1e6} (overall ${(overall / 1e6).toFixed(3)}), queue drops ${s.droppedQueue}`,
    );
    assert.ok(overall <= rateBps, `faster than the rate: ${overall} bit/s`);
    assert.ok(Math.abs(achieved / rateBps - 1) <= 0.15, `achieved ${achieved} bit/s`);
    assert.ok(s.droppedQueue > 0, 'an offer of twice the rate for longer than the queue holds overflows it');
    assert.equal(s.droppedRandom + s.droppedBurst, 0);
    assert.equal(r.emu.stats('aToB').queuedBytes, 0);
  } finally {
    await r.close();
  }
});

test('a full queue delays by its length and tail-drops (counted), whatever the timing', { timeout: 60_000 }, async (t) => {
  const rateBps = 5e6;
  const size = 1200;
  const queueBytes = 12_500; // 20 ms at 5 Mbit/s
  const r = await rig({ aToB: { rateBps, queueBytes } });
  try {
    // Ten bursts of 40 datagrams: each is 77 ms of link time and nearly four
    // queues' worth, read by the emulator in one go (a few ms), so each burst
    // fills the queue and tail-drops however late it comes.
    let maxQueued = 0;
    for (let seq = 0; seq < 400;) {
      for (const end = seq + 40; seq < end; seq++) r.A.socket.send(datagram(seq, size), r.emu.a.port, r.emu.a.address);
      await until(`the emulator read ${seq}`, () => r.emu.stats('aToB').received === seq);
      maxQueued = Math.max(maxQueued, r.emu.stats('aToB').queuedBytes);
    }
    await drained(r, 'aToB', 400);
    assertBalanced(r, 'aToB');
    const s = r.emu.stats('aToB');
    const oneWay = r.B.arrivals.map((a) => a.at - a.sentAt).sort((x, y) => x - y);
    const queued = oneWay[oneWay.length - 1]!;
    t.diagnostic(
      `forwarded ${s.forwarded}, queue drops ${s.droppedQueue}, largest queue seen ${maxQueued} bytes of ${queueBytes}, longest one-way ${queued.toFixed(1)} ms (a full queue is 20 ms)`,
    );
    assert.ok(s.droppedQueue > 0, 'tail drops when the queue is full');
    assert.ok(maxQueued <= queueBytes, `queue ${maxQueued} beyond its ${queueBytes} bytes`);
    // The last datagram to fit into a full queue waits its length less one
    // datagram's 1.9 ms; late timers only add.
    assert.ok(queued >= 18, `longest one-way ${queued} ms with a 20 ms queue`);
    assert.equal(s.droppedRandom + s.droppedBurst, 0);
  } finally {
    await r.close();
  }
});

test('down drops everything, in flight included; traffic resumes when it is set back', { timeout: 60_000 }, async (t) => {
  const r = await rig({ aToB: { delayMs: 20 } });
  try {
    // Three phases, each sent and read in full before the next, so which
    // datagram meets which state does not depend on timing.
    let seq = 0;
    const phase = async (count: number): Promise<[number, number]> => {
      const first = seq;
      while (seq < first + count) {
        for (const end = Math.min(first + count, seq + 20); seq < end; seq++) r.A.socket.send(datagram(seq, 100), r.emu.a.port, r.emu.a.address);
        await until(`the emulator read ${seq}`, () => r.emu.stats('aToB').received === seq);
      }
      return [first, seq];
    };
    const [, beforeEnd] = await phase(400);
    const inFlightAtDown = r.emu.stats('aToB').inFlight;
    r.emu.set('both', { down: true });
    const [downFrom, downEnd] = await phase(500);
    r.emu.set('both', { down: false });
    const [upFrom, upEnd] = await phase(600);
    await drained(r, 'aToB', upEnd);
    assertBalanced(r, 'aToB');
    const s = r.emu.stats('aToB');
    const got = seqs(r.B.arrivals);
    t.diagnostic(`in flight when the link went down ${inFlightAtDown}, dropped while down ${s.droppedDown}, delivered ${s.forwarded}`);
    assert.equal(s.droppedDown, 500 + inFlightAtDown, 'everything sent while down, and everything in flight when it went down');
    assert.equal(got.filter((q) => q >= downFrom && q < downEnd).length, 0, 'nothing sent while down arrives');
    assert.equal(got.filter((q) => q < beforeEnd).length, beforeEnd - inFlightAtDown, 'what had left before the cut arrived');
    assert.deepEqual(
      got.filter((q) => q >= upFrom),
      Array.from({ length: upEnd - upFrom }, (_, i) => upFrom + i),
      'everything after recovery arrives, in order',
    );
  } finally {
    await r.close();
  }
});

test('datagrams from unknown sources are dropped and counted; an unknown far peer is counted too', { timeout: 60_000 }, async () => {
  const A = await endpoint();
  const B = await endpoint();
  const C = await endpoint();
  const emu = await LinkEmulator.create({ peerA: A.peer });
  try {
    // B not known yet: A's datagrams have nowhere to go.
    await sendBatched(A.socket, emu.a, 10, () => 50);
    await until('10 without a peer', () => emu.stats('aToB').droppedNoPeer === 10);
    // B speaks first on its side and is learned; now both ways work.
    B.socket.send(datagram(0, 50), emu.b.port, emu.b.address);
    await until('A hears B', () => A.arrivals.length === 1);
    assert.deepEqual(emu.peer('b'), B.peer);
    A.socket.send(datagram(10, 50), emu.a.port, emu.a.address);
    await until('B hears A', () => B.arrivals.length === 1);
    // C is neither: on the a side (A configured) and on the b side (B learned).
    await sendBatched(C.socket, emu.a, 100, () => 50);
    await sendBatched(C.socket, emu.b, 30, () => 50);
    await until('C counted', () => emu.stats('aToB').unknownSource === 100 && emu.stats('bToA').unknownSource === 30);
    await sleep(20);
    assert.equal(B.arrivals.length, 1);
    assert.equal(A.arrivals.length, 1);
    assert.equal(C.arrivals.length, 0);
    assert.equal(emu.stats('aToB').received, 11);
    assert.equal(emu.stats('bToA').received, 1);
    // Forgetting a peer lets the next source be learned (an address change).
    emu.setPeer('b', null);
    C.socket.send(datagram(1, 50), emu.b.port, emu.b.address);
    await until('A hears C', () => A.arrivals.length === 2);
    assert.deepEqual(emu.peer('b'), C.peer);
  } finally {
    await emu.close();
    await Promise.all([A, B, C].map((e) => closeSocket(e.socket)));
  }
});

test('set() validates and changes only what it names', async () => {
  const emu = await LinkEmulator.create();
  try {
    emu.set('aToB', { delayMs: 30, loss: 0.01 });
    emu.set('aToB', { jitterMs: 5 });
    assert.equal(emu.params('aToB').delayMs, 30);
    assert.equal(emu.params('aToB').loss, 0.01);
    assert.equal(emu.params('bToA').delayMs, 0);
    assert.throws(() => emu.set('aToB', { loss: 1.5 }), RangeError);
    assert.throws(() => emu.set('both', { burst: { pGoodToBad: -1, pBadToGood: 0.5 } }), RangeError);
    assert.throws(() => emu.set('both', { queueBytes: 0 }), RangeError);
    assert.equal(emu.params('aToB').loss, 0.01);
    assert.equal(emu.params('bToA').burst, null);
  } finally {
    await emu.close();
  }
});

test('a peer the socket refuses to send to (port 0) costs a counted send error, never a throw from the delivery timer', { timeout: 60_000 }, async () => {
  const A = await endpoint();
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  // A learned source may be anything the network delivers (a raw packet's source port 0 included).
  const emu = await LinkEmulator.create({ peerA: A.peer, peerB: { address: '127.0.0.1', port: 0 } });
  try {
    emu.set('both', { delayMs: 2 });
    await sendBatched(A.socket, emu.a, 5, () => 50);
    await until('5 send errors', () => emu.stats('aToB').sendErrors === 5);
    await sleep(20);
    assert.deepEqual(uncaught, []);
    assert.equal(emu.stats('aToB').forwarded, 0);
  } finally {
    process.off('uncaughtException', onUncaught);
    await emu.close();
    await closeSocket(A.socket);
  }
});
