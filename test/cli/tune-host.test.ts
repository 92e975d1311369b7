/**
 * `--tune-host` end to end: `sluice relay` raises net.core.netdev_max_backlog
 * while it runs, says so, and puts the old value back after SIGTERM; without
 * root it refuses with a clear error. The setting is global (the initial
 * network namespace's), so the root test changes it for a few seconds only,
 * by a few packets (current value + 7), and restores it in any case.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collect, startCli, runCli, waitForEvent } from '../../harness/process/cli.js';
import { EXIT } from '../../src/cli/output.js';
import { startServe } from '../server/api-helpers.js';
import { BACKLOG_SYSCTL, readBacklogSetting } from '../../src/dataplane/kernel/softnet.js';

const root = process.getuid?.() === 0;
const current = readBacklogSetting();
const skip = !root
  ? 'needs root (writes a global sysctl)'
  : current === undefined
    ? `${BACKLOG_SYSCTL} not visible here (not the initial network namespace)`
    : undefined;
const relay = ['relay', '--listen', 'udp://127.0.0.1:0', '--to', 'udp://127.0.0.1:9', '--allow', '127.0.0.1', '--tier', 'portable'];

test('--tune-host backlog=N: raised while the relay runs, said on stderr, restored after SIGTERM', { skip, timeout: 120_000 }, async () => {
  const before = current!;
  const target = before + 7;
  const child = startCli([...relay, '--tune-host', `backlog=${target}`, '--json']);
  const done = collect(child, 100_000);
  try {
    await waitForEvent(child, 'ready');
    assert.equal(readBacklogSetting(), target);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, EXIT.OK, r.stderr);
    assert.match(r.stderr, new RegExp(`--tune-host: set net\\.core\\.netdev_max_backlog: ${before} -> ${target}`));
    assert.match(r.stderr, new RegExp(`--tune-host: restored net\\.core\\.netdev_max_backlog=${before}`));
    assert.equal(readBacklogSetting(), before);
  } finally {
    child.kill('SIGKILL');
    await done;
    // Whatever happened above, the host gets its value back.
    if (readFileSync(BACKLOG_SYSCTL, 'utf8').trim() === String(target)) writeFileSync(BACKLOG_SYSCTL, String(before));
  }
});

test('sluice serve --tune-host: raised while the daemon runs, logged, restored after SIGTERM', { skip, timeout: 120_000 }, async () => {
  const before = current!;
  const target = before + 7;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tune-serve-'));
  const config = join(dir, 'serve.yaml');
  writeFileSync(config, ['tier: portable', 'api:', '  listen: 127.0.0.1:0', '  tokenFile: ./api.token', ''].join('\n'));
  try {
    const serve = await startServe(config, ['--tune-host', `backlog=${target}`]);
    try {
      assert.equal(readBacklogSetting(), target);
      assert.ok(serve.records().some((r) => String(r.msg).includes(`set net.core.netdev_max_backlog: ${before} -> ${target}`)));
    } finally {
      assert.equal(await serve.stop(), EXIT.OK, serve.stderr());
    }
    assert.equal(readBacklogSetting(), before);
    assert.match(serve.stderr(), new RegExp(`restored net\\.core\\.netdev_max_backlog=${before}`));
  } finally {
    if (readFileSync(BACKLOG_SYSCTL, 'utf8').trim() === String(target)) writeFileSync(BACKLOG_SYSCTL, String(before));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--tune-host with a value already reached changes nothing', { skip, timeout: 120_000 }, async () => {
  const child = startCli([...relay, '--tune-host', `backlog=${Math.max(1, current! - 1)}`, '--json']);
  const done = collect(child, 100_000);
  await waitForEvent(child, 'ready');
  assert.equal(readBacklogSetting(), current);
  child.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, EXIT.OK, r.stderr);
  assert.match(r.stderr, /already at least .*left as it is/);
  assert.equal(readBacklogSetting(), current);
});

test('--tune-host without root: a clear error, nothing started', { timeout: 120_000 }, async () => {
  const r = await runCli([...relay, '--tune-host'], 100_000, { asNobody: true });
  assert.equal(r.code, EXIT.UNAVAILABLE, r.stderr);
  assert.match(r.stderr, /--tune-host: setting net\.core\.netdev_max_backlog needs root/);
});

test('--tune-host with a bad value is a usage error', { timeout: 120_000 }, async () => {
  const r = await runCli([...relay, '--tune-host', 'backlog=lots'], 100_000);
  assert.equal(r.code, EXIT.USAGE, r.stderr);
  assert.match(r.stderr, /expected nothing or backlog=N/);
});

test('doctor shows the backlog setting and the drops since boot (kernel tier available)', { timeout: 120_000 }, async (t) => {
  const r = await runCli(['doctor', '--json'], 100_000);
  assert.equal(r.code, EXIT.OK, r.stderr);
  const doc = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { tiers: { tier: string; available: boolean; notes?: string[] }[] };
  const kernel = doc.tiers.find((x) => x.tier === 'kernel');
  if (!kernel?.available) return t.skip('kernel tier unavailable here: doctor shows its reason instead');
  const note = kernel.notes?.find((n) => n.startsWith('net.core.netdev_max_backlog='));
  assert.ok(note, JSON.stringify(kernel.notes));
  assert.match(note, /=\d+: /);
  assert.match(note, /\d+ packet\(s\) dropped there since boot|softnet_stat unreadable/);
  assert.match(note, /--tune-host/);
});
