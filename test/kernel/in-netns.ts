/**
 * Kernel-tier behaviour that the shared conformance suite cannot see:
 * that the program (not its user-space companion) carries the traffic,
 * long lists continued across program runs (tail calls) while they change,
 * spilling beyond the in-kernel subscriber limit, and punting fragments.
 * Not a test file itself: test/kernel/kernel.test.ts runs it with
 * `node --test` inside a namespace it creates (this file changes lo's MTU).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Sluice } from '../../src/index.js';
import { CHUNK, MAX_SUBS } from '../../src/dataplane/kernel/layout.js';
import type { KernelFlowDetail } from '../../src/dataplane/kernel/kernel-plane.js';
import { openReceiver, openSender, sendSequence, seqOf, type Receiver } from '../../harness/traffic/udp.js';

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

test('IPv6 loopback copies are carried by the program too (lo frames pass its link-layer and checksum checks)', async () => {
  const subs = await Promise.all(range(2).map(() => openReceiver('::1')));
  const src = await openSender('::1');
  const flow = await s.apply({ type: 'replicate', listen: 'udp://[::1]:0', to: subs.map((r) => r.url), allow: '::1/128' });
  await sendSequence(src, flow.listen, 300, { size: 1316 });
  for (const r of subs) await r.waitFor(300);
  const d = flow.detail() as KernelFlowDetail;
  assert.equal(d.counters.packetsOut, 600);
  assert.equal(d.counters.toStackPackets, 0, JSON.stringify(d.counters));
  await flow.remove();
  for (const r of subs) await r.close();
  await src.close();
});

test(`a list longer than one program run (${2 * CHUNK + 2} subscribers) is carried by the program, and changing it mid-stream loses nothing for the others`, async () => {
  const n = 2 * CHUNK + 2; // three runs per packet
  const subs = await Promise.all(range(n).map(() => openReceiver()));
  const late = await Promise.all(range(3).map(() => openReceiver()));
  const src = await openSender();
  const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: subs.map((r) => r.url), allow: '127.0.0.1' });
  // Leave holes in the first and second chunk, then fill them; the others keep their places.
  const gone = [subs[3]!, subs[CHUNK + 5]!];
  await sendSequence(src, flow.listen, 400, {
    size: 700,
    burst: 8,
    gapMs: 2,
    onProgress: async (seq) => {
      if (seq === 100) for (const r of gone) await flow.removeSubscriber(r.url);
      if (seq === 200) for (const r of late) await flow.addSubscriber(r.url);
    },
  });
  const stay = subs.filter((r) => !gone.includes(r));
  for (const r of stay) {
    await r.waitFor(400, 20_000);
    assert.deepEqual(seqs(r), range(400));
  }
  for (const r of gone) assert.deepEqual(seqs(r), range(100));
  for (const r of late) {
    await r.waitFor(200, 20_000);
    assert.deepEqual(
      seqs(r),
      range(200).map((i) => i + 200),
    );
  }
  const d = flow.detail() as KernelFlowDetail;
  assert.deepEqual(d.spilled, []);
  assert.equal(d.counters.toStackPackets, 0);
  assert.equal(d.counters.packetsOut, 400 * n - 2 * 300 + 3 * 200);
  await flow.remove();
  for (const r of [...subs, ...late]) await r.close();
  await src.close();
});

// Every local copy waits in the CPU's backlog queue before lo delivers it,
// so this test needs net.core.netdev_max_backlog above MAX_SUBS:
// kernel.test.ts raises it (a global sysctl) while this file runs.
test(`beyond ${MAX_SUBS} subscribers the rest are spilled to the batched tier; everyone gets everything`, async () => {
  const n = MAX_SUBS + 6;
  const subs = await Promise.all(range(n).map(() => openReceiver()));
  // One IPv6 subscriber: the program cannot translate families, so it is spilled too.
  const v6 = await openReceiver('::1');
  const src = await openSender();
  const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [...subs.map((r) => r.url), v6.url], allow: '127.0.0.1' });
  await sendSequence(src, flow.listen, 150, { size: 200, burst: 1, gapMs: 5 });
  for (const r of [...subs, v6]) {
    await r.waitFor(150, 60_000);
    assert.deepEqual(seqs(r), range(150));
  }
  // Spilled copies too leave from the listen port (the spill flow sends through the listen socket).
  const spilledPorts = new Set([...subs.slice(MAX_SUBS)].flatMap((r) => r.received.map((x) => x.port)));
  assert.deepEqual([...spilledPorts], [flow.listen.port]);
  const d = flow.detail() as KernelFlowDetail;
  assert.equal(d.inKernel.length, MAX_SUBS);
  assert.deepEqual(d.spilled, [...subs.slice(MAX_SUBS).map((r) => r.url), v6.url]);
  assert.equal(d.counters.spilled, 150);
  const st = flow.stats();
  assert.equal(st.packetsIn, 150);
  assert.equal(st.packetsOut, 150 * (n + 1));
  assert.ok(
    st.destinations.every((x) => x.packetsOut === 150),
    JSON.stringify(st.destinations.filter((x) => x.packetsOut !== 150)),
  );
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
