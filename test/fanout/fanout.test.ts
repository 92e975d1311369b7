/**
 * Live fan-out (issue 22, part 3) on real loopback sockets: a UDP input
 * served to many HTTP and TCP clients through tee(2) and splice(2).
 * Byte-exact delivery to 20 clients; a client that never reads is skipped
 * at chunk (datagram) boundaries and dropped while the others get every
 * datagram in order; a slow reader gets whole datagrams with counted gaps;
 * per-client and aggregate counters; RTP unwrapping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Fanout } from '../../src/control/fanout.js';
import { spliceUnavailable } from '../../src/sys/splice.js';
import { freeUdpPort } from '../tpo/gateway-helpers.js';
import { DATAGRAM, datagram, portOf, receiver, sendSeq, sequences, sleep, waitFor } from './fanout-helpers.js';

const skip = spliceUnavailable();
if (skip) console.log(`# fan-out tests skipped: ${skip}`);

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

async function clientsConnected(f: Fanout, n: number): Promise<void> {
  assert.ok(await waitFor(async () => (await f.stats()).totals.clients === n, 10_000), `${n} clients registered`);
}

test('20 HTTP clients and 2 TCP clients each get every datagram, byte-exact and in order', { skip, timeout: 120_000 }, async () => {
  const port = await freeUdpPort();
  const f = await Fanout.start({
    http: '127.0.0.1:0',
    tcp: [{ listen: 'tcp://127.0.0.1:0', input: `udp://127.0.0.1:${port}` }],
    inputs: [`udp://127.0.0.1:${port}`],
  });
  try {
    const http = await Promise.all(range(0, 20).map(() => receiver(portOf(f.http!), { path: `/udp/127.0.0.1:${port}` })));
    const tcp = await Promise.all(range(0, 2).map(() => receiver(portOf(f.tcp[0]!))));
    await clientsConnected(f, 22);
    const n = 1500;
    await sendSeq(port, 0, n);
    const all = [...http, ...tcp];
    assert.ok(await waitFor(() => all.every((r) => r.body().byteLength >= n * DATAGRAM), 30_000), 'every client got the whole stream');
    const expect = Buffer.concat(range(0, n).map(datagram));
    for (const r of http) assert.equal(r.status(), 200);
    for (const r of all) assert.ok(r.body().equals(expect), 'byte-exact');
    const s = await f.stats();
    assert.equal(s.totals.skippedChunks, 0);
    assert.equal(s.inputs[0]!.datagrams, n);
    assert.equal(s.front.accepted, 22);
    for (const c of s.clients) {
      assert.equal(c.bytesSent, n * DATAGRAM);
      assert.equal(c.skippedDatagrams, 0);
      assert.ok(c.chunksSent >= 1 && c.connectedSince <= Date.now());
    }
    assert.equal(s.clients.filter((c) => c.via === 'tcp').length, 2);
    assert.equal(s.totals.bytesSent, 22 * n * DATAGRAM);
    for (const r of all) r.socket.destroy();
    assert.ok(await waitFor(async () => (await f.stats()).totals.inputs === 0, 10_000), 'the input closes with its last client');
    assert.equal((await f.stats()).totals.ended.closed, 22);
  } finally {
    await f.close();
  }
});

test('a client that never reads is skipped whole chunks at a time and dropped; the others get everything in order', { skip, timeout: 120_000 }, async () => {
  const port = await freeUdpPort();
  const f = await Fanout.start({
    http: '127.0.0.1:0',
    inputs: [`live=udp://127.0.0.1:${port}`],
    limits: { chunkBytes: 4096, pipeBytes: 256 << 10, dropAfterMs: 400, flushMs: 2 },
  });
  try {
    const good = await Promise.all(range(0, 3).map(() => receiver(portOf(f.http!), { path: '/live' })));
    const stuck = await receiver(portOf(f.http!), { path: '/live', read: false });
    await clientsConnected(f, 4);
    const dropped = async () => (await f.stats()).totals.ended.dropped === 1;
    // Bounded: at most 40000 datagrams (~53 MB), stopping once the stuck client is dropped, then 300 more.
    const last = await sendSeq(port, 0, 40_000, 16, 2, dropped);
    assert.ok(await waitFor(dropped, 10_000), 'the stuck client was dropped');
    const n = await sendSeq(port, last, last + 300);
    assert.ok(await waitFor(() => good.every((r) => r.body().byteLength >= n * DATAGRAM), 30_000), 'the readers got the whole stream');
    for (const r of good) assert.deepEqual(sequences(r.body()), range(0, n));
    const s = await f.stats();
    assert.ok(s.totals.skippedChunks >= 1, 'chunks were skipped for the stuck client');
    assert.equal(s.clients.length, 3);
    for (const c of s.clients) assert.equal(c.skippedChunks, 0);
    // What the stuck client did get was whole datagrams from the start, in order; the drop
    // closes the connection where its socket took the last byte, which may be inside the next one.
    stuck.socket.resume();
    await Promise.race([stuck.closed, sleep(10_000)]);
    const body = stuck.body();
    const whole = body.byteLength - (body.byteLength % DATAGRAM);
    const seqs = sequences(body.subarray(0, whole));
    assert.deepEqual(seqs, range(0, seqs.length));
    assert.ok(body.subarray(whole).equals(datagram(seqs.length).subarray(0, body.byteLength - whole)), 'the cut is a prefix of the next datagram');
  } finally {
    await f.close();
  }
});

test('a slow reader gets whole datagrams in order with counted gaps, and catches up', { skip, timeout: 120_000 }, async () => {
  const port = await freeUdpPort();
  const f = await Fanout.start({
    http: '127.0.0.1:0',
    inputs: [`udp://127.0.0.1:${port}`],
    limits: { chunkBytes: 4096, pipeBytes: 256 << 10, dropAfterMs: 60_000 },
  });
  try {
    const slow = await receiver(portOf(f.http!), { path: `/udp/127.0.0.1:${port}`, read: false });
    const fast = await receiver(portOf(f.http!), { path: `/udp/127.0.0.1:${port}` });
    await clientsConnected(f, 2);
    const skipped = async () => (await f.stats()).totals.skippedChunks > 20;
    const last = await sendSeq(port, 0, 40_000, 16, 2, skipped);
    assert.ok(await skipped(), 'the slow reader had chunks skipped');
    slow.socket.resume();
    await sleep(300);
    const n = await sendSeq(port, last, last + 400);
    assert.ok(await waitFor(() => fast.body().byteLength >= n * DATAGRAM, 30_000));
    const slowStats = async () => (await f.stats()).clients.find((x) => x.skippedChunks > 0)!;
    assert.ok(
      await waitFor(async () => {
        const c = await slowStats();
        return c.queuedBytes === 0 && slow.body().byteLength === c.bytesSent;
      }, 10_000),
      'the slow reader got all that was queued for it',
    );
    const c = await slowStats();
    const seqs = sequences(slow.body());
    assert.ok(
      seqs.every((v, i) => i === 0 || v > seqs[i - 1]!),
      'increasing',
    );
    assert.equal(seqs.at(-1), n - 1, 'caught up to the live end');
    assert.equal(n - seqs.length, c.skippedDatagrams, 'every missing datagram is counted as skipped');
    assert.equal(c.bytesSent, slow.body().byteLength);
    assert.deepEqual(sequences(fast.body()), range(0, n));
  } finally {
    await f.close();
  }
});

test(
  'rtp:// inputs are unwrapped to their payload (header, CSRCs, extension, padding); non-RTP datagrams are counted and dropped',
  { skip, timeout: 60_000 },
  async () => {
    const port = await freeUdpPort();
    const f = await Fanout.start({ http: '127.0.0.1:0', allow: [`127.0.0.1:${port}`] });
    try {
      const r = await receiver(portOf(f.http!), { path: `/rtp/127.0.0.1:${port}` });
      await clientsConnected(f, 1);
      const u = createSocket('udp4');
      const send = (b: Buffer) => new Promise<void>((res) => u.send(b, port, '127.0.0.1', () => res()));
      const plain = Buffer.concat([Buffer.from([0x80, 33, 0, 1]), Buffer.alloc(8), datagram(0)]);
      const withCsrcExt = Buffer.concat([
        Buffer.from([0x92, 33, 0, 2]),
        Buffer.alloc(8),
        Buffer.alloc(8),
        Buffer.from([0xbe, 0xde, 0, 1]),
        Buffer.alloc(4),
        datagram(1),
      ]);
      const padded = Buffer.concat([Buffer.from([0xa0, 33, 0, 3]), Buffer.alloc(8), datagram(2), Buffer.from([0, 0, 3])]);
      for (const b of [plain, Buffer.from('not rtp'), withCsrcExt, padded]) await send(b);
      u.close();
      assert.ok(await waitFor(() => r.body().byteLength >= 3 * DATAGRAM, 10_000));
      assert.deepEqual(sequences(r.body()), [0, 1, 2]);
      assert.equal((await f.stats()).inputs[0]!.badRtp, 1);
    } finally {
      await f.close();
    }
  },
);

test(
  'update() adds and removes named inputs in place: streams of kept inputs go on unbroken, streams of a removed one end (counted)',
  { skip, timeout: 120_000 },
  async () => {
    const [p1, p2] = [await freeUdpPort(), await freeUdpPort()];
    const base = { http: '127.0.0.1:0', limits: { flushMs: 2 } };
    const f = await Fanout.start({ ...base, inputs: [`a=udp://127.0.0.1:${p1}`] });
    try {
      const port = portOf(f.http!);
      const a = await receiver(port, { path: '/a' });
      await clientsConnected(f, 1);
      await sendSeq(p1, 0, 100);
      const missing = await receiver(port, { path: '/b' });
      await missing.closed;
      assert.equal(missing.status(), 404, 'b is not an input yet');

      assert.equal(f.update({ ...base, inputs: [`a=udp://127.0.0.1:${p1}`, `b=udp://127.0.0.1:${p2}`] }), true);
      assert.equal(f.http, `127.0.0.1:${port}`, 'the front kept its port');
      const b = await receiver(port, { path: '/b' });
      await clientsConnected(f, 2);
      await sendSeq(p1, 100, 200);
      await sendSeq(p2, 0, 50);
      assert.ok(await waitFor(() => a.body().byteLength >= 200 * DATAGRAM && b.body().byteLength >= 50 * DATAGRAM, 10_000));
      assert.deepEqual(sequences(a.body()), range(0, 200), "a's stream ran through the update");
      assert.deepEqual(sequences(b.body()), range(0, 50));

      // Refused, nothing changed: a bad input, and a change of limits (that needs a new Fanout).
      assert.throws(() => f.update({ ...base, inputs: ['c=tcp://127.0.0.1:1'] }), /unsupported scheme/);
      assert.equal(f.update({ ...base, limits: { flushMs: 3 }, inputs: [`b=udp://127.0.0.1:${p2}`] }), false);
      assert.equal((await f.stats()).totals.clients, 2);

      assert.equal(f.update({ ...base, inputs: [`b=udp://127.0.0.1:${p2}`] }), true);
      await a.closed;
      assert.deepEqual(sequences(a.body()), range(0, 200), 'the removed stream ended after whole datagrams');
      const s = await f.stats();
      assert.equal(s.totals.ended.removed, 1);
      assert.equal(s.totals.clients, 1);
      await sendSeq(p2, 50, 80);
      assert.ok(await waitFor(() => b.body().byteLength >= 80 * DATAGRAM, 10_000));
      assert.deepEqual(sequences(b.body()), range(0, 80), "b's stream went on");
      const gone = await receiver(port, { path: '/a' });
      await gone.closed;
      assert.equal(gone.status(), 404, 'a is no longer an input');
      b.socket.destroy();
    } finally {
      await f.close();
    }
  },
);
