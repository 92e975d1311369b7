/**
 * The xdp suite's generator and sink (bench/tools/xdp-live-gen.ts over
 * src/sys/bpf-test-run.ts; bench/tools/xdp-pass.ts): every frame the
 * generator reports sent either reaches the peer veth or is counted as not
 * fitting its ring, and the frames are valid UDP (the peer's stack counts
 * them as datagrams to a closed port, not as checksum errors).
 *
 *   a 10.254.1.2 ──veth── 10.254.1.1 b (xb: XDP program from xdp-pass.ts)
 *
 * Everything runs in namespaces created here; load bounded by count and time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { rootSkipReason, withTopology, type Topology } from '../../harness/netns/netns.js';
import { liveFramesRefusal } from '../../src/sys/bpf-test-run.js';

const GEN = fileURLToPath(new URL('../../bench/tools/xdp-live-gen.ts', import.meta.url));
const PASS = fileURLToPath(new URL('../../bench/tools/xdp-pass.ts', import.meta.url));

function ethtoolSkip(): string | undefined {
  try {
    execFileSync('ethtool', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'ethtool not installed';
  }
}
// Probed only as root: a refusal (EPERM on some kernels) is the kernel's, not the generator's.
const skip = rootSkipReason() ?? ethtoolSkip() ?? liveFramesRefusal();
if (skip) process.stdout.write(`# xdp-live-gen: skipped: ${skip}\n`);

const spec = {
  namespaces: ['a', 'b'],
  links: [{ a: { ns: 'a', ifname: 'xa', ipv4: '10.254.1.2/24' }, b: { ns: 'b', ifname: 'xb', ipv4: '10.254.1.1/24' } }],
};

async function stat(topo: Topology, ns: string, ifname: string, name: string): Promise<number> {
  const m = new RegExp(`^\\s*${name}:\\s*(\\d+)$`, 'm').exec(await topo.exec(ns, 'ethtool', ['-S', ifname]));
  return Number(m?.[1] ?? 0);
}

async function udpCounter(topo: Topology, ns: string, name: string): Promise<number> {
  const lines = (await topo.exec(ns, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Udp:'));
  return Number(lines[1]!.split(/\s+/)[lines[0]!.split(/\s+/).indexOf(name)]);
}

async function generate(topo: Topology, args: string[]): Promise<number> {
  const mac = (await topo.exec('b', 'cat', ['/sys/class/net/xb/address'])).trim();
  const gen = topo.runNode('a', GEN, ['--ifname', 'xa', '--dst-mac', mac, '--src', '10.254.1.2', '--to', '10.254.1.1:5555', ...args]);
  const exit = await gen.waitExit(60_000);
  assert.equal(exit.code, 0, gen.stderr());
  const r = gen.jsonLines<{ sent: number }>().at(-1)!;
  assert.ok(r.sent > 0, gen.stdout());
  return r.sent;
}

test('live frames: every frame sent is received or counted as not fitting; they are valid UDP', { skip, timeout: 180_000 }, async () => {
  await withTopology(spec, async (topo) => {
    // Dropped at XDP: frames in = frames the generator ran on, less those the ring had no room for.
    const drop = topo.runNode('b', PASS, ['--ifname', 'xb', '--drop'], { stdin: 'pipe' });
    await drop.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 30_000 });
    const sent = await generate(topo, ['--size', '100', '--duration', '0.3', '--chunk', '5000']);
    const got = await stat(topo, 'b', 'xb', 'rx_queue_0_xdp_drops');
    const full = await stat(topo, 'a', 'xa', 'tx_queue_0_xdp_xmit_errors');
    // A few packets of the stack's own (IPv6 router solicitations, MLD) may be dropped there too.
    assert.ok(got + full >= sent && got + full <= sent + 20, `dropped at xb ${got} + ring full ${full} vs sent ${sent}`);
    assert.ok(got > 0);
    await drop.stop(5_000);

    // Passed to b's stack at a paced rate: each frame a UDP datagram to a closed port, none a checksum error.
    const pass = topo.runNode('b', PASS, ['--ifname', 'xb'], { stdin: 'pipe' });
    await pass.waitForLine(/"event":"ready"/, { stream: 'stdout', timeoutMs: 30_000 });
    const noPorts0 = await udpCounter(topo, 'b', 'NoPorts');
    const full0 = await stat(topo, 'a', 'xa', 'tx_queue_0_xdp_xmit_errors');
    const sent2 = await generate(topo, ['--size', '1316', '--duration', '0.3', '--rate', '10000']);
    await new Promise((r) => setTimeout(r, 200));
    const full2 = (await stat(topo, 'a', 'xa', 'tx_queue_0_xdp_xmit_errors')) - full0;
    assert.equal((await udpCounter(topo, 'b', 'NoPorts')) - noPorts0 + full2, sent2);
    assert.equal(await udpCounter(topo, 'b', 'InCsumErrors'), 0);
    await pass.stop(5_000);
  });
});
