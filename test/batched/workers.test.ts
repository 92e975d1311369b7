/**
 * The batched tier on several workers (workers-plane.ts): one SO_REUSEPORT
 * socket per worker on the flow's address and a classic BPF program on the
 * group that keeps every source on one worker. Real sockets on loopback.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice, SyscallError } from '../../src/index.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { createDataPlane } from '../../src/dataplane/tiers.js';
import { compileFlow } from '../../src/policy/compile.js';
import { parseFlowPolicy } from '../../src/policy/validate.js';
import { WorkersPlane } from '../../src/dataplane/batched/workers-plane.js';
import { attachSteering, detachSteering, steeringIndex } from '../../src/sys/reuseport.js';
import { openReceiver, seqDatagram, type Receiver } from '../../harness/traffic/udp.js';

const probe = probeBatchedIo();
const skip = probe.available ? undefined : `batched tier unavailable: ${probe.reason}`;

async function openSources(n: number, address = '127.0.0.1'): Promise<dgram.Socket[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((r) => s.bind(0, address, () => r()));
      return s;
    }),
  );
}

/** Each source sends `per` datagrams (source index in byte 4, sequence in 0..3), round-robin over the sources, paced. */
async function sendFromAll(sources: dgram.Socket[], per: number, to: { address: string; port: number }): Promise<void> {
  let sent = 0;
  for (let seq = 0; seq < per; seq++) {
    for (const [i, s] of sources.entries()) {
      const b = seqDatagram(seq, 64);
      b.writeUInt16BE(i, 4);
      await new Promise<void>((r, j) => s.send(b, to.port, to.address, (e) => (e ? j(e) : r())));
      if (++sent % 32 === 0) await sleep(1);
    }
  }
}

/** Every source's datagrams at `r`: exactly 0..per-1, in order. */
function assertOrderedOnce(r: Receiver, sources: number, per: number): void {
  const bySource = new Map<number, number[]>();
  for (const m of r.received) {
    const src = m.data.readUInt16BE(4);
    const list = bySource.get(src) ?? [];
    list.push(m.data.readUInt32BE(0));
    bySource.set(src, list);
  }
  assert.equal(bySource.size, sources);
  for (const [src, seqs] of bySource) {
    assert.deepEqual(
      seqs,
      Array.from({ length: per }, (_, i) => i),
      `source ${src}: order and count`,
    );
  }
}

const closeAll = (ss: dgram.Socket[]) => Promise.all(ss.map((s) => new Promise<void>((r) => s.close(() => r()))));

describe('batched tier with workers: 2', { skip }, () => {
  test('many sources: each source in order, every datagram once, stats sum and match the steering hash', async () => {
    const s = await Sluice.open({ tier: 'batched', workers: 2 });
    const [a, b] = [await openReceiver(), await openReceiver()];
    const sources = await openSources(24);
    const PER = 40;
    try {
      const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [a.url, b.url], allow: '127.0.0.1' });
      await sendFromAll(sources, PER, { address: '127.0.0.1', port: flow.listen.port });
      const total = sources.length * PER;
      await Promise.all([a.waitFor(total, 20_000), b.waitFor(total, 20_000)]);
      await a.settle(100);
      assertOrderedOnce(a, sources.length, PER);
      assertOrderedOnce(b, sources.length, PER);

      const st = flow.stats();
      assert.equal(st.packetsIn, total);
      assert.equal(st.packetsOut, 2 * total);
      assert.ok(st.workers, 'per-worker counters');
      assert.equal(st.workers.length, 2);
      assert.equal(
        st.workers.reduce((n, w) => n + w.packetsIn, 0),
        st.packetsIn,
      );
      assert.equal(
        st.workers.reduce((n, w) => n + w.packetsOut, 0),
        st.packetsOut,
      );
      assert.deepEqual(
        st.destinations.map((d) => d.packetsOut),
        [total, total],
      );
      // The program decides: each worker got exactly the sources the hash gives it.
      const expected = [0, 0];
      for (const src of sources) expected[steeringIndex('127.0.0.1', src.address().port, 2)]! += PER;
      assert.deepEqual(
        st.workers.map((w) => w.packetsIn),
        expected,
      );
      assert.ok(expected[0]! > 0 && expected[1]! > 0, 'both workers have sources (24 sources, hash split)');
      assert.equal((flow.detail() as { workers?: number }).workers, 2);
    } finally {
      await closeAll(sources);
      await s.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('the steering program is on the reuseport group (SO_DETACH_REUSEPORT_BPF finds it), IPv6 too', async () => {
    for (const [address, family] of [
      ['127.0.0.1', 4],
      ['::1', 6],
    ] as const) {
      const plane = await createDataPlane('batched', { workers: 2 });
      try {
        assert.ok(plane instanceof WorkersPlane);
        assert.equal(plane.workers, 2);
        const dst = await openReceiver(address);
        const listen = family === 6 ? `udp://[::1]:0` : 'udp://127.0.0.1:0';
        await plane.addFlow('f', compileFlow(parseFlowPolicy({ type: 'redirect', listen, to: dst.url, allow: 'any' }), 'f'));
        const fd = plane.listenFd('f');
        assert.equal(detachSteering(fd), true, 'a program was attached');
        assert.equal(detachSteering(fd), false, 'and is gone after the detach');
        attachSteering(fd, 2);
        const sources = await openSources(6, address);
        const listenEp = plane.flowStats('f')!.listen;
        const port = Number(/:(\d+)$/.exec(listenEp)![1]);
        await sendFromAll(sources, 5, { address, port });
        await dst.waitFor(30, 10_000);
        const expected = [0, 0];
        for (const src of sources) expected[steeringIndex(address, src.address().port, 2)]! += 5;
        assert.deepEqual(
          plane.flowStats('f')!.workers!.map((w) => w.packetsIn),
          expected,
        );
        await closeAll(sources);
        await dst.close();
      } finally {
        await plane.close();
      }
    }
  });

  test('a port already bound is EADDRINUSE, as on one worker; updates reach every worker', async () => {
    const busy = dgram.createSocket('udp4');
    await new Promise<void>((r) => busy.bind(0, '127.0.0.1', () => r()));
    const s = await Sluice.open({ tier: 'batched', workers: 2 });
    const [a, b] = [await openReceiver(), await openReceiver()];
    const sources = await openSources(12);
    try {
      await assert.rejects(
        s.apply({ type: 'redirect', listen: `udp://127.0.0.1:${busy.address().port}`, to: a.url, allow: 'any' }),
        (e: unknown) => e instanceof SyscallError && /EADDRINUSE/.test(e.message),
      );
      const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [a.url], allow: 'any', name: 'u' });
      await flow.addSubscriber(b.url);
      await sendFromAll(sources, 10, { address: '127.0.0.1', port: flow.listen.port });
      await Promise.all([a.waitFor(120, 10_000), b.waitFor(120, 10_000)]);
      assertOrderedOnce(b, 12, 10);
    } finally {
      await closeAll(sources);
      busy.close();
      await s.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('a flood of new sources (2000 source ports, one datagram each) crashes nothing; the flow relays on', async () => {
    const s = await Sluice.open({ tier: 'batched', workers: 2 });
    const dst = await openReceiver();
    try {
      const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
      const deadline = Date.now() + 30_000;
      let sent = 0;
      for (let round = 0; round < 20 && Date.now() < deadline; round++) {
        const batch = await openSources(100);
        for (const src of batch) src.send(seqDatagram(sent++), flow.listen.port, '127.0.0.1');
        await sleep(5);
        await closeAll(batch);
      }
      await dst.settle(200, 10_000);
      assert.equal(s.failure, undefined);
      const st = flow.stats();
      assert.equal(
        st.packetsIn + 0,
        st.workers!.reduce((n, w) => n + w.packetsIn, 0),
      );
      assert.ok(
        st.workers!.every((w) => w.packetsIn > 0),
        'new sources spread over both workers',
      );
      const before = dst.received.length;
      const [one] = await openSources(1);
      await sendFromAll([one!], 20, { address: '127.0.0.1', port: flow.listen.port });
      await dst.waitFor(before + 20, 10_000);
      await closeAll([one!]);
    } finally {
      await s.close();
      await dst.close();
    }
  });
});
