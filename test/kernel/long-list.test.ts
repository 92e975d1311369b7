/**
 * A long list at an interface's ingress needs little of the host's backlog
 * queue (root). Three namespaces: a sender, the relay (kernel tier, tcx) and
 * 100 subscribers behind a veth. The relay's input is steered to CPU 1 while
 * the sender runs on CPU 0, so its bursts wait in CPU 1's backlog together,
 * as a NIC's interrupt batches do. Every copy the program makes for the
 * subscribers' veth is queued to that backlog too: sent in one go, a burst
 * of 20 datagrams to 100 subscribers needs room for 2,000 (the default
 * net.core.netdev_max_backlog is 1,000). The program sends a list in runs
 * of 8 and puts the packet back through the input queue between runs
 * (bpf/sluice.c, yield_to_backlog), so every subscriber must get every
 * datagram, byte-exact and in order, and the `resumed` counter must show
 * twelve resumes per datagram (13 runs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withTopology } from '../../harness/netns/netns.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';
import { RESUME_RUN } from '../../src/dataplane/kernel/layout.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/long-list.ts', import.meta.url));
const SUBS = 100;
const BURST = 20;
const BURSTS = 30;
const FIRST_PORT = 7000;
const cpus = availableParallelism();
const skip = (await kernelTierSkipReason()) ?? (cpus < 2 ? `needs 2 CPUs to steer the relay's input to another CPU's backlog (this host has ${cpus})` : false);

interface PortReport {
  port: number;
  got: number;
  missing: number;
  outOfOrder: number;
  bad: number;
}

test(
  `a ${SUBS}-subscriber list at ingress: bursts of ${BURST} reach everyone, in order, with the packet resumed between chunks`,
  { skip, timeout: 240_000 },
  async (t) => {
    const backlog = Number(readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8'));
    t.diagnostic(`netdev_max_backlog ${backlog}; a burst's copies in one go: ${BURST * SUBS}`);
    const links = [
      { a: { ns: 'gen', ifname: 'lg0', ipv4: '10.214.1.2/24' }, b: { ns: 'relay', ifname: 'lri', ipv4: '10.214.1.1/24' } },
      { a: { ns: 'relay', ifname: 'lro', ipv4: '10.214.2.1/24' }, b: { ns: 'sink', ifname: 'ls0', ipv4: '10.214.2.2/24' } },
    ];
    await withTopology({ namespaces: ['gen', 'relay', 'sink'], links }, async (topo) => {
      await topo.exec('relay', 'sh', ['-c', 'echo 2 > /sys/class/net/lri/queues/rx-0/rps_cpus']);
      const total = 1 + BURST * BURSTS;
      const rx = topo.runNode('sink', FIXTURE, [
        'rx',
        '--bind',
        '10.214.2.2',
        '--ports',
        `${FIRST_PORT}:${SUBS}`,
        '--count',
        String(total),
        '--timeout',
        '90000',
      ]);
      await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
      const relay = topo.runNode('relay', FIXTURE, [
        'relay',
        '--listen',
        'udp://10.214.1.1:5000',
        '--allow',
        '10.214.1.0/24',
        '--to-host',
        '10.214.2.2',
        '--ports',
        `${FIRST_PORT}:${SUBS}`,
      ]);
      await relay.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
      const send = async (first: number, bursts: number, burst: number) => {
        const tx = topo.spawn('gen', 'taskset', [
          '-c',
          '0',
          process.execPath,
          '--import',
          'tsx',
          FIXTURE,
          'tx',
          '--bind',
          '10.214.1.2',
          '--to',
          '10.214.1.1:5000',
          '--first',
          String(first),
          '--bursts',
          String(bursts),
          '--burst',
          String(burst),
          '--gap-ms',
          '100',
        ]);
        assert.equal((await tx.waitExit(60_000)).code, 0, tx.stderr());
      };
      // One first: the program punts until the relay's neighbour entry for the sink is resolved (the companion's send does it).
      await send(0, 1, 1);
      await send(1, BURSTS, BURST);
      assert.equal((await rx.waitExit(120_000)).code, 0, rx.stderr());
      const ports = rx.jsonLines<{ event: string; ports: PortReport[] }>().find((j) => j.event === 'done')!.ports;
      relay.signal('SIGTERM');
      assert.equal((await relay.waitExit(30_000)).code, 0, relay.stderr());
      const final = relay
        .jsonLines<{ event: string; stats: { packetsIn: number; packetsOut: number }; detail: { counters: Record<string, number> } }>()
        .find((j) => j.event === 'final')!;
      const short = ports.filter((p) => p.got !== total || p.missing || p.outOfOrder || p.bad);
      assert.deepEqual(short, [], `subscribers short of ${total}: ${JSON.stringify(short.slice(0, 5))} (${short.length} of ${SUBS})`);
      assert.equal(final.stats.packetsIn, total);
      assert.equal(final.stats.packetsOut, total * SUBS);
      const c = final.detail.counters;
      const carried = c.packetsIn! - c.toStackPackets!;
      t.diagnostic(`carried by the program ${carried} of ${total}; resumed ${c.resumed}`);
      assert.ok(carried >= BURST * BURSTS, `the program carried the bursts: ${JSON.stringify(c)}`);
      assert.equal(c.resumed, carried * (Math.ceil(SUBS / RESUME_RUN) - 1), JSON.stringify(c));
    });
  },
);
