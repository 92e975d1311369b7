/**
 * `sluice serve --pin` on the kernel tier (issue 19: "a restart with --pin
 * on the kernel tier keeps forwarding meanwhile, as today"): the daemon is
 * stopped and started again under traffic, and every subscriber gets every
 * datagram, none twice. Root only; everything runs in a namespace this test
 * creates, with bpffs mounted on a private temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { withTopology, type NsProcess } from '../../harness/netns/netns.js';
import { CLI } from '../../harness/process/cli.js';
import { kernelTierSkipReason } from '../../harness/netns/kernel-skip.js';

const skip = await kernelTierSkipReason();
const SEND = fileURLToPath(new URL('../fixtures/udp-send.ts', import.meta.url));
const COUNT = fileURLToPath(new URL('../fixtures/udp-count-ports.ts', import.meta.url));
const SUBS = 4;

function doneEvent(proc: NsProcess): Record<string, any> {
  const e = proc.jsonLines<Record<string, any>>().find((j) => j.event === 'done');
  assert.ok(e, `no 'done' from ${proc.description}:\n${proc.stdout()}\n${proc.stderr()}`);
  return e;
}

test(
  'sluice serve --pin: stopped and started again under traffic, the kernel forwards all along; the new daemon adopts the flow',
  { skip, timeout: 180_000 },
  async () => {
    const bpffs = mkdtempSync(join(tmpdir(), 'sluice-bpffs-'));
    const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-pin-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
    try {
      const config = join(dir, 'serve.yaml');
      const to = Array.from({ length: SUBS }, (_, i) => `      - udp://127.0.0.1:${7000 + i}`).join('\n');
      writeFileSync(
        config,
        `tier: kernel\nflows:\n  - name: pinned\n    type: replicate\n    listen: udp://127.0.0.1:5000\n    allow: 127.0.0.1\n    to:\n${to}\napi:\n  listen: 127.0.0.1:0\n  tokenFile: ./api.token\n`,
      );
      const serveArgs = ['serve', '--config', config, '--pin', bpffs, '--log-level', 'info'];
      await withTopology({ namespaces: ['k'] }, async (topo) => {
        const total = 3000;
        const rx = topo.runNode('k', COUNT, [
          '--host',
          '127.0.0.1',
          '--first',
          '7000',
          '--count',
          String(SUBS),
          '--expect',
          String(total),
          '--linger-ms',
          '500',
          '--timeout',
          '90000',
        ]);
        await rx.waitForLine(/"event":"ready"/, { timeoutMs: 30_000 });
        const first = topo.runNode('k', CLI, serveArgs);
        await first.waitForLine(/"msg":"ready"/, { timeoutMs: 60_000 });
        assert.match(first.stderr(), /"tier":"kernel"/);

        // About 3 s of traffic; no daemon runs for part of it.
        const tx = topo.runNode('k', SEND, [
          '--to',
          '127.0.0.1:5000',
          '--count',
          String(total),
          '--size',
          '1316',
          '--burst',
          '5',
          '--gap-ms',
          '5',
          '--timeout',
          '60000',
        ]);
        await sleep(500);
        first.signal('SIGTERM');
        assert.equal((await first.waitExit(30_000)).code, 0, first.stderr());
        await sleep(500);
        const second = topo.runNode('k', CLI, serveArgs);
        await second.waitForLine(/"msg":"ready"/, { timeoutMs: 60_000 });
        // Adopted, not removed as a flow the config no longer has.
        assert.doesNotMatch(second.stderr(), /removed pinned flows/);

        assert.equal((await tx.waitExit(60_000)).code, 0, tx.stderr());
        await rx.waitExit(90_000);
        const got = doneEvent(rx);
        assert.equal(got.missing, 0, `lost across the restart: ${JSON.stringify(got)}`);
        assert.equal(got.complete, SUBS);
        assert.equal(got.duplicates, 0);

        second.signal('SIGTERM');
        assert.equal((await second.waitExit(30_000)).code, 0, second.stderr());
        // --pin leaves the flow forwarding after a stop: detach removes it.
        const detach = topo.runNode('k', CLI, ['detach', '--pin-dir', bpffs]);
        assert.equal((await detach.waitExit(30_000)).code, 0, detach.stderr());
        assert.match(detach.stdout(), /detached: removed \d+ pinned object/);
        assert.deepEqual(
          readdirSync(bpffs).filter((n) => n.startsWith('net-')),
          [],
        );
      });
    } finally {
      execFileSync('umount', [bpffs]);
      rmdirSync(bpffs);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
