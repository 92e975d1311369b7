/**
 * Kernel-tier behaviour that the shared conformance suite cannot see:
 * that the program (not its user-space companion) carries the traffic,
 * spilling beyond the in-kernel subscriber limit, and punting fragments.
 * Not a test file itself: test/kernel/kernel.test.ts runs it with
 * `node --test` inside a namespace it creates (this file changes lo's MTU).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Sluice } from '../../src/index.js';
import { MAX_SUBS } from '../../src/dataplane/kernel/layout.js';
import type { KernelFlowDetail } from '../../src/dataplane/kernel/kernel-plane.js';
import { openReceiver, openSender, sendSequence, seqOf, type Receiver } from '../helpers/udp.js';

const s = await Sluice.open({ tier: 'kernel' });
after(() => s.close());

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const seqs = (r: Receiver) => r.received.map(seqOf).sort((a, b) => a - b);

test('the eBPF program, not the companion socket, carries the copies', async () => {
  const subs = await Promise.all(range(4).map(() => openReceiver()));
  const src = await openSender();
  const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: subs.map((r) => r.url), allow: '127.0.0.1' });
  await sendSequence(src, flow.listen, 600, { size: 1316 });
  for (const r of subs) await r.waitFor(600);
  const d = flow.detail() as KernelFlowDetail;
  assert.equal(d.counters.packetsIn, 600);
  assert.equal(d.counters.packetsOut, 2400);
  assert.equal(d.counters.toStackPackets, 0);
  assert.deepEqual(d.spilled, []);
  await flow.remove();
  for (const r of subs) await r.close();
  await src.close();
});

test(`beyond ${MAX_SUBS} subscribers the rest are spilled to the batched tier; everyone gets everything`, async () => {
  const n = MAX_SUBS + 6;
  const subs = await Promise.all(range(n).map(() => openReceiver()));
  // One IPv6 subscriber: the program cannot translate families, so it is spilled too.
  const v6 = await openReceiver('::1');
  const src = await openSender();
  const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [...subs.map((r) => r.url), v6.url], allow: '127.0.0.1' });
  await sendSequence(src, flow.listen, 300, { size: 500, burst: 4, gapMs: 2 });
  for (const r of [...subs, v6]) {
    await r.waitFor(300, 20_000);
    assert.deepEqual(seqs(r), range(300));
  }
  const d = flow.detail() as KernelFlowDetail;
  assert.equal(d.inKernel.length, MAX_SUBS);
  assert.deepEqual(d.spilled, [...subs.slice(MAX_SUBS).map((r) => r.url), v6.url]);
  assert.equal(d.counters.spilled, 300);
  const st = flow.stats();
  assert.equal(st.packetsIn, 300);
  assert.equal(st.packetsOut, 300 * (n + 1));
  assert.ok(st.destinations.every((x) => x.packetsOut === 300), JSON.stringify(st.destinations.filter((x) => x.packetsOut !== 300)));
  // Removing an in-kernel subscriber does not move a spilled one (no counter split).
  await flow.removeSubscriber(subs[0]!.url);
  assert.equal((flow.detail() as KernelFlowDetail).spilled.length, 7);
  await flow.remove();
  for (const r of [...subs, v6]) await r.close();
  await src.close();
});

test('fragmented datagrams go to the stack and are relayed whole by the companion', async () => {
  execFileSync('ip', ['link', 'set', 'lo', 'mtu', '1500']);
  try {
    const dst = await openReceiver();
    const src = await openSender();
    const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: '127.0.0.1' });
    await sendSequence(src, flow.listen, 50, { size: 1200 });
    await dst.waitFor(50);
    // 3000 bytes leave lo in two fragments; the first is punted, the second is not ours.
    for (let i = 0; i < 10; i++) {
      const big = Buffer.alloc(3000, 0xab);
      big.writeUInt32BE(1000 + i, 0);
      await src.send(big, flow.listen.port, '127.0.0.1');
    }
    await dst.waitFor(60);
    assert.equal(dst.received.filter((r) => r.data.length === 3000).length, 10);
    const d = flow.detail() as KernelFlowDetail;
    assert.equal(d.counters.puntFragment, 10);
    const st = flow.stats();
    assert.equal(st.packetsIn, 60);
    assert.equal(st.packetsOut, 60);
    assert.equal(st.destinations[0]!.packetsOut, 60);
    await flow.remove();
    await dst.close();
    await src.close();
  } finally {
    execFileSync('ip', ['link', 'set', 'lo', 'mtu', '65536']);
  }
});
