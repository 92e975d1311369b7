/**
 * kernelHook 'xdp': redirect flows run in the driver's receive path.
 * Three namespaces: a sender (a), the relay, a receiver (b), joined by
 * veths. The same flow and the same traffic with kernelHook 'tcx' and
 * 'xdp' must put the same datagrams on the wire; with 'xdp' the XDP
 * program (not tcx) must have carried them. Needs root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { withTopology } from '../../harness/netns/netns.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';
import { COPIES, OTHER_ROUTE_V4, OTHER_ROUTE_V6, RAW_CASES, casePayload, caseOf } from '../../harness/traffic/raw-cases.js';

const skip = await kernelTierSkipReason();
const RELAY = fileURLToPath(new URL('../fixtures/xdp-relay.ts', import.meta.url));
const PEER = fileURLToPath(new URL('../fixtures/xdp-peer.ts', import.meta.url));
const RAW_INJECT = fileURLToPath(new URL('../fixtures/raw-inject.ts', import.meta.url));
const N = 400;

interface Final {
  detail: { counters: Record<string, number>; xdp?: { packets: number; bytes: number; passed: number } };
  stats: { packetsIn: number; packetsOut: number };
}

async function run(hook: 'tcx' | 'xdp' | 'auto', size: number): Promise<{ got: { from: string; data: string }[]; final: Final; notes: string[] }> {
  const links = [
    { a: { ns: 'a', ifname: 'ea', ipv4: '10.212.1.2/24' }, b: { ns: 'relay', ifname: 'ra', ipv4: '10.212.1.1/24' } },
    { a: { ns: 'relay', ifname: 'rb', ipv4: '10.212.2.1/24' }, b: { ns: 'b', ifname: 'eb', ipv4: '10.212.2.2/24' } },
  ];
  return withTopology({ namespaces: ['relay', 'a', 'b'], links }, async (topo) => {
    const rx = topo.runNode('b', PEER, ['rx', '--if', 'eb', '--bind', '10.212.2.2:6000', '--count', String(N + 1), '--timeout', '60000']);
    await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
    const relay = topo.runNode('relay', RELAY, [hook, '--listen', 'udp://10.212.1.1:5000', '--to', 'udp://10.212.2.2:6000', '--allow', '10.212.1.0/24']);
    await relay.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
    const ready = relay
      .jsonLines<{ event: string; notes: string[]; links: { name: string; xdp: string }[]; doctor: string[] }>()
      .find((j) => j.event === 'ready')!;
    const notes = [...ready.notes, ...ready.links.map((l) => `link ${l.name} ${l.xdp}`), ...ready.doctor];
    const send = async (count: number) => {
      const tx = topo.runNode('a', PEER, [
        'tx',
        '--bind',
        '10.212.1.2',
        '--to',
        '10.212.1.1:5000',
        '--count',
        String(count),
        '--size',
        String(size),
        '--no-check',
      ]);
      assert.equal((await tx.waitExit(60_000)).code, 0, tx.stderr());
    };
    // One first: the relay's neighbour entry for b is resolved by the companion's send (the program punts until then).
    await send(1);
    await send(N);
    const rxExit = await rx.waitExit(90_000);
    assert.equal(rxExit.code, 0, rx.stderr());
    const got = rx.jsonLines<{ event: string; got: { from: string; data: string }[] }>().find((j) => j.event === 'done')!.got;
    relay.signal('SIGTERM');
    assert.equal((await relay.waitExit(30_000)).code, 0, relay.stderr());
    const final = relay.jsonLines<Final & { event: string }>().find((j) => j.event === 'final')!;
    return { got, final, notes };
  });
}

test('redirect at XDP puts the same datagrams on the wire as at tcx, and XDP (not tcx) carried them', { skip, timeout: 300_000 }, async () => {
  const size = 1316;
  const tcx = await run('tcx', size);
  const xdp = await run('xdp', size);
  // The plane, rtnetlink and sluice doctor agree: the driver (veth) runs it natively.
  for (const re of [/^xdp \(redirect in the driver\): ra native, rb native$/, /^link ra native$/, /ra \(driver veth; XDP attached now in native mode\)/]) {
    assert.ok(
      xdp.notes.some((n) => re.test(n)),
      `${re}: ${xdp.notes.join('\n')}`,
    );
  }
  assert.ok(
    tcx.notes.some((n) => /^link ra none$/.test(n)),
    tcx.notes.join('\n'),
  );
  for (const r of [tcx, xdp]) {
    assert.equal(r.got.length, N + 1, JSON.stringify(r.final));
    assert.ok(r.got.every((g) => g.from === '10.212.1.1:5000'));
    assert.equal(r.final.stats.packetsOut, N + 1, JSON.stringify(r.final));
  }
  assert.deepEqual(
    xdp.got.map((g) => g.data),
    tcx.got.map((g) => g.data),
  );
  // With 'tcx' nothing ran at XDP; with 'xdp' the N datagrams after the first (which waited for the neighbour) did,
  // counted in the flow's kernel counters like tcx's copies.
  assert.equal(tcx.final.detail.xdp?.packets ?? 0, 0);
  const x = xdp.final.detail.xdp!;
  assert.ok(x.packets >= N, JSON.stringify(xdp.final.detail));
  assert.equal(x.bytes, x.packets * size);
  assert.ok((xdp.final.detail.counters.packetsOut ?? 0) >= x.packets);
  process.stdout.write(`# tcx: ${JSON.stringify(tcx.final.detail)}\n# xdp: ${JSON.stringify(xdp.final.detail)}\n`);
});

test(
  "kernelHook 'auto' attaches natively but leaves redirects into a veth to tcx (the veth peer might not take XDP frames)",
  { skip, timeout: 300_000 },
  async () => {
    const auto = await run('auto', 700);
    assert.ok(
      auto.notes.some((n) => n === 'xdp (redirect in the driver): ra native, rb native'),
      auto.notes.join('\n'),
    );
    assert.ok(
      auto.notes.some((n) => /^xdp: not a redirect target: ra \(veth, kernelHook 'auto'\), rb \(veth, kernelHook 'auto'\)/.test(n)),
      auto.notes.join('\n'),
    );
    assert.equal(auto.got.length, N + 1);
    assert.equal(auto.final.detail.xdp?.packets, 0);
    assert.ok((auto.final.detail.xdp?.passed ?? 0) >= N, JSON.stringify(auto.final.detail));
    assert.equal(auto.final.stats.packetsOut, N + 1);
  },
);

test(
  "malformed frames at XDP: every raw-frame case gets the stack's verdict, byte-exact; XDP carries only valid ones and passes the rest to tcx untouched",
  { skip, timeout: 180_000 },
  async () => {
    const links = [
      { a: { ns: 'relay', ifname: 'ra', ipv4: '10.210.1.1/24', ipv6: 'fd00:210::1/64' }, b: { ns: 'peer', ifname: 'pb' } },
      {
        a: { ns: 'relay', ifname: 'rb', ipv4: '10.212.2.1/24', ipv6: 'fd00:212:2::1/64' },
        b: { ns: 'b', ifname: 'eb', ipv4: '10.212.2.2/24', ipv6: 'fd00:212:2::2/64' },
      },
    ];
    await withTopology({ namespaces: ['relay', 'peer', 'b'], links }, async (topo) => {
      await topo.addRoute('relay', [OTHER_ROUTE_V4, 'dev', 'rb']);
      await topo.addRoute('relay', [OTHER_ROUTE_V6, 'dev', 'rb']);
      const names = RAW_CASES.map((c) => c.name);
      const expected = new Map<string, Buffer>();
      for (const c of RAW_CASES) {
        for (let i = 0; i < COPIES; i++) {
          const d = c.delivered(casePayload(c.name, i), 1);
          if (d) expected.set(`${c.name}#${i}`, d);
        }
      }
      const rx = topo.runNode('b', PEER, [
        'rx',
        '--if',
        'eb',
        '--bind',
        '10.212.2.2:6000',
        '--bind6',
        '[fd00:212:2::2]:6001',
        '--hello',
        '10.212.2.1,fd00:212:2::1',
        '--count',
        String(expected.size),
        '--timeout',
        '30000',
      ]);
      await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
      const relay = topo.runNode('relay', RELAY, [
        'xdp',
        '--listen',
        'udp://10.210.1.1:0',
        '--to',
        'udp://10.212.2.2:6000',
        '--allow',
        'any',
        '--listen6',
        'udp://[fd00:210::1]:0',
        '--to6',
        'udp://[fd00:212:2::2]:6001',
        '--rp',
        '1',
      ]);
      await relay.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
      const ready = relay.jsonLines<{ event: string; port: number; port6: number; mac: string }>().find((j) => j.event === 'ready')!;
      const inject = topo.runNode('peer', RAW_INJECT, [
        '--if',
        'pb',
        '--mac',
        ready.mac,
        '--v4port',
        String(ready.port),
        '--v6port',
        String(ready.port6),
        '--cases',
        names.join(','),
      ]);
      assert.equal((await inject.waitExit(60_000)).code, 0, inject.stderr());
      assert.equal((await rx.waitExit(60_000)).code, 0, rx.stderr());
      const got = rx.jsonLines<{ event: string; got: { from: string; data: string }[] }>().find((j) => j.event === 'done')!.got;
      relay.signal('SIGTERM');
      assert.equal((await relay.waitExit(30_000)).code, 0, relay.stderr());
      interface D {
        counters: Record<string, number>;
        xdp: { packets: number; passed: number };
      }
      const final = relay.jsonLines<{ event: string; detail: D; detail6: D }>().find((j) => j.event === 'final')!;
      // Exactly what the stack would deliver, each once and byte for byte: nothing corrupted by a rewrite.
      const seen = new Map<string, Buffer>();
      for (const g of got) {
        const data = Buffer.from(g.data, 'hex');
        const id = caseOf(data);
        assert.ok(id && !seen.has(id), `unexpected or duplicate datagram ${id ?? g.data.slice(0, 40)}`);
        seen.set(id, data);
      }
      assert.deepEqual([...seen.keys()].sort(), [...expected.keys()].sort());
      for (const [id, data] of seen) assert.ok(data.equals(expected.get(id)!), `${id} arrived changed`);
      for (const d of [final.detail, final.detail6]) {
        // Valid frames went through XDP; every other frame of the flow was passed to tcx, which judged it.
        assert.ok(d.xdp.packets > 0, JSON.stringify(d));
        assert.ok(d.xdp.packets <= d.counters.packetsOut!, JSON.stringify(d));
      }
      // Each datagram of the flows was carried in the kernel (XDP or tcx) or punted by tcx to the stack, none dropped;
      // what XDP passed for a flow (after finding it) was judged by tcx.
      for (const d of [final.detail, final.detail6]) {
        assert.equal(d.counters.packetsOut! + d.counters.toStackPackets!, d.counters.packetsIn, JSON.stringify(d));
        assert.ok(d.xdp.passed > 0, JSON.stringify(d));
      }
      process.stdout.write(`# raw v4: ${JSON.stringify(final.detail)}\n# raw v6: ${JSON.stringify(final.detail6)}\n`);
    });
  },
);
