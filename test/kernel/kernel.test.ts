/**
 * Kernel-tier tests that need root: the in-namespace checks of
 * test/kernel/in-netns.ts, and a restart with pinned state under traffic.
 * Everything runs in namespaces these tests create; bpffs for the pins is
 * mounted on a private temporary directory and removed afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootSkipReason, withTopology, type NsProcess } from '../helpers/netns.js';
import { runTestFileInNamespace } from '../helpers/in-namespace.js';
import { probeKernelTier } from '../../src/dataplane/kernel/kernel-plane.js';
import { CHUNK, MAX_SUBS } from '../../src/dataplane/kernel/layout.js';

const root = rootSkipReason();
const probe = root ? undefined : await probeKernelTier();
const skip = root ?? (probe && !probe.available ? `kernel tier unavailable: ${probe.detail}` : undefined);
const RELAY = fileURLToPath(new URL('../fixtures/kernel-relay.ts', import.meta.url));
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const COUNT = fileURLToPath(new URL('../fixtures/udp-count-ports.ts', import.meta.url));
/** More than one program run's worth (CHUNK), so every datagram crosses a tail call. */
const SUBS = CHUNK + 8;

function event(proc: NsProcess, name: string): Record<string, any> {
  const e = proc.jsonLines<Record<string, any>>().find((j) => j.event === name);
  assert.ok(e, `no '${name}' from ${proc.description}:\n${proc.stdout()}\n${proc.stderr()}`);
  return e;
}

test('kernel tier specifics, inside a network namespace', { skip, timeout: 300_000 }, async () => {
  // The spill test sends more than MAX_SUBS local copies per datagram; each
  // waits in the CPU's backlog (netdev_max_backlog, global, 1000 by default).
  const sysctl = '/proc/sys/net/core/netdev_max_backlog';
  const before = readFileSync(sysctl, 'utf8').trim();
  writeFileSync(sysctl, String(Math.max(Number(before), 4 * MAX_SUBS)));
  try {
    await runTestFileInNamespace('test/kernel/in-netns.ts');
  } finally {
    writeFileSync(sysctl, before);
  }
});

test(`pinned state keeps forwarding while the process restarts; the new process adopts it (${SUBS} subscribers: the tail-call chain is swapped too)`, { skip, timeout: 180_000 }, async () => {
  const bpffs = mkdtempSync(join(tmpdir(), 'sluice-bpffs-'));
  execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  try {
    await withTopology({ namespaces: ['k'] }, async (topo) => {
      const total = 3000;
      const to = Array.from({ length: SUBS }, (_, i) => ['--to', `udp://127.0.0.1:${7000 + i}`]).flat();
      const flowArgs = ['--listen', 'udp://127.0.0.1:5000', ...to, '--allow', '127.0.0.1', '--pin', bpffs];
      const rx = topo.runNode('k', COUNT, ['--host', '127.0.0.1', '--first', '7000', '--count', String(SUBS), '--expect', String(total), '--linger-ms', '500', '--timeout', '90000']);
      await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
      const first = topo.runNode('k', RELAY, [...flowArgs, '--keep']);
      await first.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });

      // About 3 s of traffic; the relay process is gone for part of it.
      const tx = topo.runNode('k', SEND, ['--to', '127.0.0.1:5000', '--count', String(total), '--size', '1316', '--burst', '5', '--gap-ms', '5', '--timeout', '60000']);
      await sleep(500);
      first.signal('SIGTERM');
      assert.equal((await first.waitExit(30_000)).code, 0, first.stderr());
      await sleep(500);
      // Nothing of ours runs now: the pinned program and maps forward alone.
      const second = topo.runNode('k', RELAY, flowArgs);
      await second.waitForLine(/"event":"ready"/, { timeoutMs: 60_000, stream: 'stdout' });
      const ready = event(second, 'ready');
      // Counters continued: the adopted flow already counted what came before.
      assert.ok(ready.stats.packetsIn > 0, JSON.stringify(ready));
      assert.equal(ready.swept, 0);

      assert.equal((await tx.waitExit(60_000)).code, 0, tx.stderr());
      await rx.waitExit(90_000);
      const got = event(rx, 'done');
      assert.equal(got.missing, 0, `lost across the restart: ${JSON.stringify(got)}`);
      assert.equal(got.complete, SUBS);
      assert.equal(got.duplicates, 0);

      second.signal('SIGTERM');
      assert.equal((await second.waitExit(30_000)).code, 0, second.stderr());
      const final = event(second, 'final');
      assert.equal(final.stats.packetsIn, total);
      assert.equal(final.stats.packetsOut, total * SUBS);
      assert.ok(final.stats.destinations.every((d: { packetsOut: number }) => d.packetsOut === total), JSON.stringify(final.stats.destinations));
      // A normal close of the last flow leaves nothing pinned.
      assert.deepEqual(readdirSync(bpffs).filter((n) => n.startsWith('net-')), []);
    });
  } finally {
    execFileSync('umount', [bpffs]);
    rmdirSync(bpffs);
  }
});
