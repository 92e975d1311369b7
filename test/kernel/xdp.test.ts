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
import { rootSkipReason, withTopology } from '../../harness/netns/netns.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';

const root = rootSkipReason();
const probe = root ? undefined : await probeKernelTier();
const skip = root ?? (probe && !probe.available ? `kernel tier unavailable: ${probe.detail}` : undefined);
const RELAY = fileURLToPath(new URL('../fixtures/xdp-relay.ts', import.meta.url));
const PEER = fileURLToPath(new URL('../fixtures/xdp-peer.ts', import.meta.url));
const N = 400;

interface Final {
  detail: { counters: Record<string, number>; xdp?: { packets: number; bytes: number; passed: number } };
  stats: { packetsIn: number; packetsOut: number };
}

async function run(hook: 'tcx' | 'xdp', size: number): Promise<{ got: { from: string; data: string }[]; final: Final; notes: string[] }> {
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
