/**
 * The bench sink (bench/lib/sink.ts): its eBPF counter at tcx ingress of
 * sink0 counts exactly what the benchmark's loss figures rest on.
 *
 *   tx 10.252.1.1 ──veth── 10.252.1.2 sink (sink0, counter attached)
 *
 * Checks: UDP to the port range counts as subscribers (packets, bytes from
 * the IPv4 header on) and UDP to other ports as other, both dropped before
 * the IP stack; ARP and IPv6 (neighbour discovery, and IPv6 UDP itself)
 * still pass, which the neighbour caches were flushed to prove; GSO buffers
 * count once but datagrams() still comes out exact; the longest run to one
 * port counts a GSO buffer as its segments; setPorts moves the
 * range; close() detaches. Everything runs in namespaces created here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootSkipReason, withTopology, type Topology } from '../../harness/netns/netns.js';
import { Sink, datagrams, type SinkCounts } from '../../bench/lib/sink.js';

const skip = rootSkipReason();
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const GEN = fileURLToPath(new URL('../../bench/tools/udp-gen.ts', import.meta.url));

const TX = '10.252.1.1';
const SINK = '10.252.1.2';
const TX6 = 'fd00:252:1::1';
const SINK6 = 'fd00:252:1::2';
const FIRST = 41000;
const COUNT = 10;
const SIZE = 300;

const spec = {
  namespaces: ['tx', 'sink'],
  links: [{ a: { ns: 'tx', ifname: 'tx0', ipv4: `${TX}/24`, ipv6: `${TX6}/64` }, b: { ns: 'sink', ifname: 'sink0', ipv4: `${SINK}/24`, ipv6: `${SINK6}/64` } }],
};

/** Send `count` datagrams of `size` bytes from tx (bounded; fails the test if any send fails). */
async function send(topo: Topology, to: string, count: number, size = SIZE): Promise<void> {
  const p = topo.runNode('tx', SEND, ['--to', to, '--count', String(count), '--size', String(size), '--burst', '25', '--gap-ms', '1', '--timeout', '20000']);
  const exit = await p.waitExit(30_000);
  assert.equal(exit.code, 0, `udp-send to ${to}: ${p.stdout()}\n${p.stderr()}`);
}

/** A UDP counter of the stack in `ns` (/proc/net/snmp or snmp6). */
async function stackCounter(topo: Topology, ns: string, file: 'snmp' | 'snmp6', name: string): Promise<number> {
  const text = await topo.exec(ns, 'cat', [`/proc/net/${file}`]);
  if (file === 'snmp6') return Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf(name)]);
}

/** Read until the counts reach `want` (softirq may lag the sender by a moment), at most ~2 s. */
async function settle(sink: Sink, want: (c: SinkCounts) => boolean): Promise<SinkCounts> {
  let c = await sink.read();
  for (let i = 0; i < 40 && !want(c); i++) {
    await sleep(50);
    c = await sink.read();
  }
  return c;
}

async function neighbour(topo: Topology, addr: string, v6 = false): Promise<string> {
  return (await topo.ip('tx', [...(v6 ? ['-6'] : []), 'neigh', 'show', addr, 'dev', 'tx0'])).trim();
}

test('counts and drops UDP to the subscriber ports and other UDP; ARP and IPv6 pass', { skip, timeout: 120_000 }, async () => {
  await withTopology(spec, async (topo) => {
    const sink = await Sink.create(topo);
    try {
      await sink.setPorts(FIRST, COUNT);
      const before = await sink.read();
      assert.deepEqual(before, { subscribers: 0, subscriberBytes: 0, other: 0 });
      assert.equal(await sink.longestRun(), 0);
      const noPorts = await stackCounter(topo, 'sink', 'snmp', 'NoPorts');

      // Neighbours must resolve again, through the program.
      await topo.ip('tx', ['neigh', 'flush', 'dev', 'tx0']);
      await topo.ip('tx', ['-6', 'neigh', 'flush', 'dev', 'tx0']);

      await send(topo, `${SINK}:${FIRST}`, 250);
      await send(topo, `${SINK}:${FIRST + COUNT - 1}`, 250);
      await send(topo, `${SINK}:${FIRST - 1}`, 3);
      await send(topo, `${SINK}:${FIRST + COUNT}`, 4);

      const after = await settle(sink, (c) => c.subscribers >= 500 && c.other >= 7);
      assert.deepEqual(after, { subscribers: 500, subscriberBytes: 500 * (SIZE + 28), other: 7 });
      assert.equal(datagrams(before, after, SIZE), 500);
      // Two runs of 250 (other ports do not break or extend a run).
      assert.equal(await sink.longestRun(), 250);
      assert.match(await neighbour(topo, SINK), /REACHABLE|STALE|DELAY|PROBE/, 'ARP did not resolve through the sink');
      // Dropped before the stack: no port-unreachable for any of them.
      assert.equal(await stackCounter(topo, 'sink', 'snmp', 'NoPorts'), noPorts);

      // IPv6 is not the sink's business: UDP to the range reaches the stack
      // (no listener there, so it counts as NoPorts), after ND resolved.
      const noPorts6 = await stackCounter(topo, 'sink', 'snmp6', 'Udp6NoPorts');
      await send(topo, `[${SINK6}]:${FIRST}`, 5);
      let v6 = noPorts6;
      for (let i = 0; i < 40 && v6 < noPorts6 + 5; i++) {
        await sleep(50);
        v6 = await stackCounter(topo, 'sink', 'snmp6', 'Udp6NoPorts');
      }
      assert.equal(v6, noPorts6 + 5);
      assert.match(await neighbour(topo, SINK6, true), /REACHABLE|STALE|DELAY|PROBE/, 'ND did not resolve through the sink');
      assert.deepEqual(await sink.read(), after);
      await sink.resetRuns();
      await send(topo, `${SINK}:${FIRST + 1}`, 7);
      await settle(sink, (c) => c.subscribers >= 507);
      assert.equal(await sink.longestRun(), 7, 'reset, then a run of 7');
    } finally {
      await sink.close();
    }
  });
});

test('a GSO buffer counts as one packet, datagrams() stays exact', { skip, timeout: 120_000 }, async () => {
  await withTopology(spec, async (topo) => {
    const sink = await Sink.create(topo);
    try {
      await sink.setPorts(FIRST, 1);
      const before = await sink.read();
      // Bursts of 16 leave the generator as one GSO buffer each; the veth
      // passes them on whole.
      const gen = topo.runNode('tx', GEN, [
        '--to',
        `${SINK}:${FIRST}`,
        '--size',
        '1316',
        '--rate',
        '16000',
        '--duration',
        '0.25',
        '--pattern',
        'bursty',
        '--burst',
        '16',
      ]);
      const exit = await gen.waitExit(30_000);
      assert.equal(exit.code, 0, gen.stderr());
      const out = gen.jsonLines<{ sent: number; errors: number }>().at(-1)!;
      assert.ok(out.sent > 0 && out.errors === 0, JSON.stringify(out));
      const after = await settle(sink, (c) => datagrams(before, c, 1316) >= out.sent);
      assert.equal(datagrams(before, after, 1316), out.sent);
      assert.ok(after.subscribers < out.sent, `expected GSO buffers, got ${after.subscribers} packets for ${out.sent} datagrams`);
      assert.equal(await sink.longestRun(), out.sent, 'a GSO buffer counts as its segments in a run');
      assert.equal(after.other, 0);
    } finally {
      await sink.close();
    }
  });
});

test('setPorts moves the range; close() detaches the program', { skip, timeout: 120_000 }, async () => {
  await withTopology(spec, async (topo) => {
    const sink = await Sink.create(topo);
    let closed = false;
    try {
      await sink.setPorts(FIRST, COUNT);
      await sink.setPorts(42000, 1);
      await send(topo, `${SINK}:42000`, 5);
      await send(topo, `${SINK}:${FIRST}`, 6);
      const c = await settle(sink, (x) => x.subscribers >= 5 && x.other >= 6);
      assert.deepEqual(c, { subscribers: 5, subscriberBytes: 5 * (SIZE + 28), other: 6 });
      await assert.rejects(sink.setPorts(65535, 2), /bad port range/);

      await sink.close();
      closed = true;
      const noPorts = await stackCounter(topo, 'sink', 'snmp', 'NoPorts');
      await send(topo, `${SINK}:42000`, 3);
      let n = noPorts;
      for (let i = 0; i < 40 && n < noPorts + 3; i++) {
        await sleep(50);
        n = await stackCounter(topo, 'sink', 'snmp', 'NoPorts');
      }
      assert.equal(n, noPorts + 3, 'datagrams still dropped after close()');
    } finally {
      if (!closed) await sink.close();
    }
  });
});
