/**
 * A dead engine is an error the user sees (issue 16, item 3): when the
 * batched tier's worker thread stops on its own, the library emits
 * 'engineFailed' with an EngineFailedError naming the engine, refuses new
 * work with it, frees the dead worker's ports, and `sluice relay` logs it
 * and exits 1 instead of running on (and later exiting 0) with nothing
 * relayed.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { Sluice, EngineFailedError } from '../../src/index.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { captureEngineWorker } from '../../harness/process/worker-killer.js';
import { CLI, collect } from '../../harness/process/cli.js';
import { openReceiver } from '../../harness/traffic/udp.js';
import { rootSkipReason, withTopology } from '../../harness/netns/netns.js';
import { probeKernelTier } from '../../src/dataplane/kernel/probe.js';

const probe = probeBatchedIo();
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KILLER = fileURLToPath(new URL('../fixtures/kill-engine-worker.ts', import.meta.url));
const root = rootSkipReason();
const kernel = root ? undefined : await probeKernelTier();
const kernelSkip = root ?? (kernel && !kernel.available ? `kernel tier unavailable: ${kernel.detail}` : undefined);

describe('a dead batched engine', { skip: probe.available ? undefined : `batched tier unavailable: ${probe.reason}` }, () => {
  test("the library emits 'engineFailed', refuses new flows and frees the listen port", async () => {
    const capture = captureEngineWorker();
    const s = await Sluice.open({ tier: 'batched' });
    const dst = await openReceiver();
    try {
      const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
      const port = flow.listen.port;
      const worker = await capture.engine;
      capture.restore();
      const failed = once(s, 'engineFailed');
      await worker.terminate();
      const [error] = (await failed) as [EngineFailedError];
      assert.ok(error instanceof EngineFailedError);
      assert.equal(error.code, 'SLUICE_ERR_ENGINE_FAILED');
      assert.match(error.message, /batched tier's engine .*stopped: its thread exited/);
      assert.equal(s.failure, error);
      await assert.rejects(s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' }), (e: unknown) => e === error);
      assert.equal(flow.stats().packetsIn, 0, 'the last counters stay readable');
      // The dead worker's socket was closed from the application thread.
      const probeSocket = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        probeSocket.once('error', reject);
        probeSocket.bind(port, '127.0.0.1', () => resolve());
      });
      await new Promise<void>((r) => probeSocket.close(() => r()));
      const final = await s.close();
      assert.equal(final.length, 1);
    } finally {
      capture.restore();
      await s.close();
      await dst.close();
    }
  });

  test('a send engine that dies rejects the send in flight with EngineFailedError', async () => {
    const capture = captureEngineWorker('aggregate');
    const s = await Sluice.open({ tier: 'batched' });
    try {
      // Two messages 5 s apart: the job is still running when its worker goes.
      const sending = s.sendAggregate({
        messages: [0, 1].map(() => ({ to: 'udp://127.0.0.1:9', data: new Uint8Array(8) })),
        schedule: { kind: 'delays', delaysMs: [0, 5000] },
      });
      const worker = await capture.engine;
      capture.restore();
      await worker.terminate();
      await assert.rejects(sending, (e: unknown) => e instanceof EngineFailedError && /send engine .*stopped: its thread exited/.test(e.message));
    } finally {
      capture.restore();
      await s.close();
    }
  });

  for (const json of [false, true]) {
    test(`sluice relay${json ? ' --json' : ''} logs the failure, naming the engine, and exits 1`, { timeout: 120_000 }, async () => {
      const dst = await openReceiver();
      const args = ['relay', '--tier', 'batched', '--listen', 'udp://127.0.0.1:0', '--to', dst.url, '--allow', '127.0.0.1', ...(json ? ['--json'] : [])];
      const child = spawn(process.execPath, ['--import', 'tsx', '--import', KILLER, CLI, ...args], { cwd: ROOT, stdio: 'pipe' });
      // Before the fix the relay ran on with a dead engine: the kill after 90 s
      // is the failure (generous: a cold tsx start under load takes seconds).
      const r = await collect(child, 90_000);
      await dst.close();
      assert.equal(r.signal, null, `still running after 90 s: ${r.stderr}`);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /sluice: the batched tier's engine \(worker thread 'sluice-batched'\) stopped: its thread exited \(code 1\); its flows no longer move packets/,
      );
      if (json) {
        const events = r.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { event: string; engine?: string; error?: string });
        assert.deepEqual(
          events.map((e) => e.event),
          ['ready', 'engineFailed', 'final'],
        );
        assert.match(events[1]!.engine!, /batched tier's engine/);
        assert.match(events[2]!.error!, /stopped/);
      }
    });
  }

  test('sluice relay --tier kernel exits 1 when its batched companion dies (inside a network namespace)', { skip: kernelSkip, timeout: 240_000 }, async () => {
    await withTopology({ namespaces: ['k'] }, async (topo) => {
      const child = topo.spawn('k', process.execPath, [
        '--import',
        'tsx',
        '--import',
        KILLER,
        CLI,
        'relay',
        '--tier',
        'kernel',
        '--listen',
        'udp://127.0.0.1:5000',
        '--to',
        'udp://127.0.0.1:6000',
        '--allow',
        '127.0.0.1',
        '--json',
      ]);
      const exit = await child.waitExit(180_000);
      assert.equal(exit.code, 1, child.stderr());
      assert.match(child.stderr(), /sluice: the kernel tier's batched companion \(worker thread 'sluice-batched'\) stopped: its thread exited/);
      assert.ok(child.jsonLines<{ event: string }>().some((e) => e.event === 'engineFailed'));
    });
  });
});
