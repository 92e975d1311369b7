/**
 * Multicast on every tier, across network namespaces (root):
 *
 *   snd 10.210.1.2 (listed SSM source), 10.210.1.3 (not listed)
 *     --mc-in-- relay 10.210.1.1          flow 'mc-in': listen 239.1.1.1:5000, joined on mc-in
 *               relay 10.210.2.1 --veth-- sub 10.210.2.2:6000   (its unicast subscriber)
 *               relay 10.210.3.1 --mc-out-- grp 10.210.3.2      (joined 239.2.2.2 on its interface)
 *
 * Flow 'mc-in' (multicast to unicast): the relay's membership shows in
 * /proc/net/mcfilter with the SSM source on the chosen interface; a
 * datagram from the listed source reaches sub, one from another source
 * does not, nor does unicast to the relay's address on the same port, nor
 * the group arriving on another interface (where another socket of the
 * relay's host joined it).
 * Flow 'mc-out' (unicast to multicast): sub sends to 10.210.2.1:5001, the
 * relay sends to 239.2.2.2:7000 by mc-out with TTL 5 (multicastOut), and
 * grp's receiver gets each datagram once with TTL 5 on the wire. The same
 * for IPv6 (MLDv2; the membership in /proc/net/mcfilter6, the hop limit).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { rootSkipReason, withTopology, type NsProcess, type Topology } from '../../harness/netns/netns.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';
import { Sluice, SyscallError, type TierName } from '../../src/index.js';

const RELAY = fileURLToPath(new URL('../fixtures/mcast-relay.ts', import.meta.url));
const RX = fileURLToPath(new URL('../fixtures/mcast-rx.ts', import.meta.url));
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const COUNT = fileURLToPath(new URL('../fixtures/udp-count.ts', import.meta.url));

const N = 200;
const TTL = 5;

const root = rootSkipReason();
const batched = probeBatchedIo();
const kernel = root ? undefined : await probeKernelTier();
const skipOf: Record<TierName, string | undefined> = {
  portable: root,
  batched: root ?? (batched.available ? undefined : `batched tier unavailable: ${batched.reason}`),
  kernel: root ?? (kernel && !kernel.available ? `kernel tier unavailable: ${kernel.detail}` : undefined),
};

interface Family {
  name: string;
  group: string;
  outGroup: string;
  /** The relay's address towards sub, for the unicast input of 'mc-out'. */
  relaySub: string;
  relaySnd: string;
  sub: string;
  listed: string;
  unlisted: string;
  /** grp's address: it sends the group where the flow did not join it. */
  grp: string;
  /** Where the relay's membership shows, and how the group and source appear there. */
  proc: string;
  groupHex: string;
  sourceHex: string;
}

const v4: Family = {
  name: 'IPv4 (IGMPv3)',
  group: '239.1.1.1',
  outGroup: '239.2.2.2',
  relaySub: '10.210.2.1',
  relaySnd: '10.210.1.1',
  sub: '10.210.2.2',
  listed: '10.210.1.2',
  unlisted: '10.210.1.3',
  grp: '10.210.3.2',
  proc: '/proc/net/mcfilter',
  groupHex: '0xef010101',
  sourceHex: '0x0ad20102',
};

const v6: Family = {
  name: 'IPv6 (MLDv2)',
  group: 'ff3e::8000:1',
  outGroup: 'ff3e::8000:2',
  relaySub: 'fd00:210:2::1',
  relaySnd: 'fd00:210:1::1',
  sub: 'fd00:210:2::2',
  listed: 'fd00:210:1::2',
  unlisted: 'fd00:210:1::3',
  grp: 'fd00:210:3::2',
  proc: '/proc/net/mcfilter6',
  groupHex: 'ff3e0000000000000000000080000001',
  sourceHex: 'fd000210000100000000000000000002',
};

const spec = {
  namespaces: ['snd', 'relay', 'sub', 'grp'],
  links: [
    {
      a: { ns: 'snd', ifname: 'snd0', ipv4: ['10.210.1.2/24', '10.210.1.3/24'], ipv6: ['fd00:210:1::2/64', 'fd00:210:1::3/64'] },
      b: { ns: 'relay', ifname: 'mc-in', ipv4: '10.210.1.1/24', ipv6: 'fd00:210:1::1/64' },
    },
    {
      a: { ns: 'relay', ifname: 'to-sub', ipv4: '10.210.2.1/24', ipv6: 'fd00:210:2::1/64' },
      b: { ns: 'sub', ifname: 'sub0', ipv4: '10.210.2.2/24', ipv6: 'fd00:210:2::2/64' },
    },
    {
      a: { ns: 'relay', ifname: 'mc-out', ipv4: '10.210.3.1/24', ipv6: 'fd00:210:3::1/64' },
      b: { ns: 'grp', ifname: 'grp0', ipv4: '10.210.3.2/24', ipv6: 'fd00:210:3::2/64' },
    },
  ],
  // The sender's groups leave by its only link; the relay has no default
  // route, so its join and its group output work only on the interfaces the
  // policy names.
  // grp gets a route back to the relay's source of the group copies (its
  // address towards sub): a strict or loose rp_filter drops multicast from
  // sources it cannot route back to as it drops unicast.
  routes: [
    { ns: 'snd', args: ['default', 'via', '10.210.1.1'] },
    { ns: 'grp', args: ['10.210.2.0/24', 'via', '10.210.3.1'] },
    { ns: 'grp', args: ['239.0.0.0/8', 'dev', 'grp0'] },
  ],
};

const url = (address: string, port: number) => (address.includes(':') ? `udp://[${address}]:${port}` : `udp://${address}:${port}`);
const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

async function request<T>(proc: NsProcess, req: object): Promise<T> {
  const next = proc.nextLine({ timeoutMs: 30_000 });
  proc.writeLine(JSON.stringify(req));
  return JSON.parse(await next) as T;
}

async function send(topo: Topology, ns: string, to: string, from: string, stream: number, count: number): Promise<void> {
  const p = topo.runNode(ns, SEND, [
    '--to',
    to,
    '--bind',
    from,
    '--stream',
    String(stream),
    '--count',
    String(count),
    '--size',
    '200',
    '--burst',
    '10',
    '--gap-ms',
    '5',
  ]);
  const exit = await p.waitExit(30_000);
  assert.equal(exit.code, 0, `sender ${from} → ${to}: ${p.stdout()} ${p.stderr()}`);
}

function done(proc: NsProcess): Record<string, any> {
  const d = proc.jsonLines<Record<string, any>>().find((j) => j.event === 'done');
  assert.ok(d, `no summary from ${proc.description}: ${proc.stdout()} ${proc.stderr()}`);
  return d;
}

async function scenario(tier: TierName, f: Family): Promise<void> {
  await withTopology(spec, async (topo) => {
    const sub = topo.runNode('sub', COUNT, [
      '--bind',
      hostPort(f.sub, 6000),
      '--expect',
      String(N),
      '--stream',
      '1',
      '--linger-ms',
      '500',
      '--timeout',
      '60000',
    ]);
    const grp = topo.runNode('grp', RX, ['--group', f.outGroup, '--port', '7000', '--iface', 'grp0', '--expect', String(N), '--timeout', '60000']);
    await sub.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
    await grp.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });

    const policies = [
      {
        name: 'mc-in',
        type: 'replicate',
        listen: url(f.group, 5000),
        allow: 'any',
        multicast: { sources: [f.listed], interface: 'mc-in' },
        to: [url(f.sub, 6000)],
      },
      {
        name: 'mc-out',
        type: 'redirect',
        listen: url(f.relaySub, 5001),
        allow: f.sub,
        to: url(f.outGroup, 7000),
        multicastOut: { ttl: TTL, interface: 'mc-out' },
      },
    ];
    const relay = topo.runNode('relay', RELAY, [tier, JSON.stringify(policies)], { stdin: 'pipe' });
    const ready = JSON.parse(await relay.waitForLine(/"event":"(ready|error)"/, { timeoutMs: 60_000, stream: 'stdout' })) as Record<string, any>;
    assert.equal(ready.event, 'ready', `relay: ${JSON.stringify(ready)}\n${relay.stderr()}`);

    // The membership, with its source, on the interface the policy named.
    const filters = await topo.exec('relay', 'cat', [f.proc]);
    const line = filters.split('\n').find((l) => l.includes(f.groupHex) && l.includes(f.sourceHex));
    assert.ok(line && /\bmc-in\b/.test(line), `${f.proc} has no ${f.group} from ${f.listed} on mc-in:\n${filters}`);

    // The group where the flow did not join it: another socket of the relay's host joins it on
    // mc-out, so the host takes it there, yet the flow hears the group only where it joined.
    const other = topo.runNode('relay', RX, ['--group', f.group, '--port', '9999', '--iface', 'mc-out', '--timeout', '60000']);
    await other.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
    await send(topo, 'grp', hostPort(f.group, 5000), f.grp, 4, 30);
    // Not listed (stream 2), unicast to the relay's address on the group's port (stream 3), then the listed source.
    await send(topo, 'snd', hostPort(f.group, 5000), f.unlisted, 2, 50);
    await send(topo, 'snd', hostPort(f.relaySnd, 5000), f.listed, 3, 50);
    await send(topo, 'snd', hostPort(f.group, 5000), f.listed, 1, N);
    // Unicast in, multicast out.
    await send(topo, 'sub', hostPort(f.relaySub, 5001), f.sub, 1, N);

    await sub.waitExit(70_000);
    await grp.waitExit(70_000);
    const got = done(sub);
    assert.equal(got.missing, 0, `sub missing seqs: ${JSON.stringify(got)}`);
    assert.deepEqual(got.streams, { '1': { unique: N, duplicates: 0, outOfRange: 0 } }, 'only the listed source, once each');
    // A socket bound to a group sends from the outgoing interface's address, from the listen port.
    assert.deepEqual(got.sources, { [hostPort(f.relaySub, 5000)]: N });
    const out = done(grp);
    assert.equal(out.timedOut, false, `grp: ${JSON.stringify(out)}`);
    assert.equal(out.received, N, `each datagram once at the group: ${JSON.stringify(out)}`);
    // Copies leave from the listen socket: its address and port.
    assert.deepEqual(out.sources, { [hostPort(f.relaySub, 5001)]: N });
    // Every frame to the group carries the configured TTL. (Frames, not datagrams: the batched
    // engine's equal-sized copies cross the veth as UDP GSO packets, split only at the socket.)
    assert.deepEqual(Object.keys(out.ttls), [String(TTL)], `TTL on the wire: ${JSON.stringify(out.ttls)}`);

    const { stats, detail } = await request<{ stats: Record<string, any>[]; detail: Record<string, any>[] }>(relay, { op: 'stats' });
    const [mcIn, mcOut] = stats;
    if (tier === 'kernel') {
      // The program copied the group's datagrams itself, as they arrived where the flow joined;
      // the unlisted sender's went to the stack, whose source filter dropped them, and so did
      // the group arriving on mc-out.
      const k = detail[0]!.counters as Record<string, number>;
      assert.equal(k.packetsOut, N, `in-kernel copies: ${JSON.stringify(detail[0])}`);
      assert.equal(k.puntOtherHost, 30, JSON.stringify(detail[0]));
      assert.equal(k.puntSource, 50, JSON.stringify(detail[0]));
      // Group subscribers are served by the companion (docs/TIERS.md).
      assert.deepEqual(detail[1]!.spilled, [url(f.outGroup, 7000)]);
    }
    assert.equal(mcIn!.packetsOut, N, JSON.stringify(mcIn));
    assert.equal(mcIn!.packetsIn, N, `only the listed source reached the flow: ${JSON.stringify(mcIn)}`);
    assert.equal(mcOut!.packetsOut, N, JSON.stringify(mcOut));
    relay.writeLine(JSON.stringify({ op: 'exit' }));
    assert.equal((await relay.waitExit(30_000)).code, 0, relay.stderr());
  });
}

for (const tier of ['portable', 'batched', 'kernel'] as const) {
  describe(`multicast: ${tier} tier`, { skip: skipOf[tier] }, () => {
    for (const f of [v4, v6]) test(f.name, { timeout: 180_000 }, () => scenario(tier, f));
  });
}

/**
 * A join the host refuses fails the flow's start with a SyscallError that
 * names the call and errno, and leaves nothing bound. On lo only (no
 * namespace needed: lo sends no membership reports), so root is not needed.
 */
for (const tier of ['portable', 'batched'] as const) {
  describe(
    `multicast refusals: ${tier} tier`,
    { skip: tier === 'batched' && !batched.available ? `batched tier unavailable: ${batched.reason}` : undefined },
    () => {
      test('an unknown interface and more SSM sources than igmp_max_msf are SyscallErrors naming the call', async () => {
        const s = await Sluice.open({ tier });
        try {
          const start = (multicast: object) => s.apply({ type: 'replicate', listen: 'udp://239.255.77.1:0', allow: 'any', multicast, to: [] });
          await assert.rejects(
            start({ interface: 'sluice-none0' }),
            (e: unknown) => e instanceof SyscallError && e.errno === 'ENODEV' && /sluice-none0/.test(e.message),
          );
          // net.ipv4.igmp_max_msf is 10 by default; the 11th source is refused.
          const max = Number(readFileSync('/proc/sys/net/ipv4/igmp_max_msf', 'utf8'));
          const sources = Array.from({ length: max + 1 }, (_, i) => `10.255.0.${i + 1}`);
          await assert.rejects(
            start({ interface: 'lo', sources }),
            (e: unknown) => e instanceof SyscallError && e.errno === 'ENOBUFS' && /MCAST_JOIN_SOURCE_GROUP|addSourceSpecificMembership/.test(e.op),
          );
          assert.equal(s.flows().length, 0);
          // Within the limit it starts (and the failed attempts left the address free).
          const ok = await start({ interface: 'lo', sources: sources.slice(0, max) });
          assert.equal(ok.listen.address, '239.255.77.1');
        } finally {
          await s.close();
        }
      });
    },
  );
}
