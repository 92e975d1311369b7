/**
 * The host's backlog queue drops, counted where the user sees them: a
 * kernel-tier 1→512 replicate to local subscribers whose copies overflow
 * the backlog queue shows them as hostDrops.hostBacklog in its stats and
 * raises the one 'hostwarning'. Not a test file itself:
 * test/kernel/backlog.test.ts runs it inside a namespace it creates.
 *
 * Nothing global changes: instead of lowering net.core.netdev_max_backlog
 * (global), receive packet steering on this namespace's lo sends every
 * packet to another CPU's backlog (this process pinned to CPU 0, packets
 * steered to CPU 1), so a burst of datagrams waits there
 * together and their copies (512 each) overflow the default 1000.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice } from '../../src/index.js';
import { MAX_SUBS } from '../../src/dataplane/kernel/layout.js';
import { readBacklogSetting, readSoftnetStat } from '../../src/dataplane/kernel/softnet.js';
import { openReceiver, openSender, seqDatagram } from '../../harness/traffic/udp.js';

const cpus = availableParallelism();
const skip = cpus < 2 ? `needs 2 CPUs to steer lo's packets to another CPU's backlog (this host has ${cpus})` : undefined;

test('backlog queue drops show in the kernel flow stats as hostBacklog, and warn once', { skip }, async () => {
  // This namespace's lo only: every packet to CPU 1's backlog, while this process (sender, relay, receivers) runs on CPU 0,
  // so a burst arrives there faster than CPU 1 drains it (on CPU 1 itself each send would be drained before the next).
  writeFileSync('/sys/class/net/lo/queues/rx-0/rps_cpus', '2');
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const s = await Sluice.open({ tier: 'kernel' });
  after(() => s.close());
  const warnings: string[] = [];
  s.on('hostwarning', (m) => warnings.push(m));
  const subs = await Promise.all(Array.from({ length: MAX_SUBS }, () => openReceiver()));
  const src = await openSender();
  const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: subs.map((r) => r.url), allow: '127.0.0.1' });
  const before = readSoftnetStat();
  assert.ok(before, '/proc/net/softnet_stat readable');
  // Bursts of 20 datagrams (10,240 copies each), bounded: until the host drops, at most 30 bursts.
  let sent = 0;
  for (let burst = 0; burst < 30; burst++) {
    for (let i = 0; i < 20; i++) src.socket.send(seqDatagram(sent++, 200), flow.listen.port, '127.0.0.1');
    await sleep(150);
    if ((readSoftnetStat()?.dropped ?? 0) > before.dropped) break;
  }
  for (const r of subs) await r.settle(200, 10_000);
  const stats = flow.stats();
  const got = subs.reduce((n, r) => n + r.received.length, 0);
  const lost = stats.packetsOut - got;
  assert.equal(stats.packetsOut, sent * MAX_SUBS, 'the program made every copy');
  assert.ok(lost > 0, `the backlog queue dropped nothing (backlog ${readBacklogSetting() ?? '?'}); ${JSON.stringify(stats.drops)}`);
  // Sampled every 2 s while the flow runs, and at its removal.
  const deadline = Date.now() + 10_000;
  while ((flow.stats().hostDrops?.hostBacklog ?? 0) < lost && Date.now() < deadline) await sleep(100);
  const host = flow.stats().hostDrops?.hostBacklog ?? 0;
  // Every lost copy is counted; the count is host-wide, so other traffic's drops may add to it.
  assert.ok(host >= lost, `hostBacklog ${host} < copies lost ${lost}`);
  assert.deepEqual(s.hostDrops(), { hostBacklog: host });
  // The policy's own reasons stay at zero: the loss is outside Sluice.
  assert.equal(
    Object.values(stats.drops).reduce((a, b) => a + b, 0),
    0,
  );
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /net\.core\.netdev_max_backlog/);
  assert.match(warnings[0]!, /--tune-host/);
  const final = await flow.remove();
  assert.ok((final?.hostDrops?.hostBacklog ?? 0) >= host);
  for (const r of subs) await r.close();
  await src.close();
});
