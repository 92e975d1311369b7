/**
 * The host backlog drops (src/dataplane/kernel/softnet.ts): parsing
 * /proc/net/softnet_stat defensively, counting drops between samples, the
 * one warning; and `--tune-host`'s setting and restoring
 * (src/dataplane/kernel/host-tuning.ts) on files standing in for the sysctl.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BacklogWatch, backlogWarning, parseSoftnetStat, readSoftnetStat, type SoftnetStat } from '../../src/dataplane/kernel/softnet.js';
import { leftoverTuning, parseTuneHost, restoreLeftoverTuning, tuneHost } from '../../src/dataplane/kernel/host-tuning.js';
import { InvalidArgumentError, NotSupportedError } from '../../src/errors.js';

const row = (
  processed: number,
  dropped: number,
  squeeze = 0,
  extra = ' 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000',
) => `${[processed, dropped, squeeze].map((n) => n.toString(16).padStart(8, '0')).join(' ')}${extra}`;

test('softnet_stat: rows of hex columns are summed per column (kernels with 3 or 13 columns)', () => {
  const s = parseSoftnetStat(`${row(0x10, 2, 1)}\n${row(0xff, 0x30, 0, '')}\n`);
  assert.ok(s);
  assert.equal(s.cpus.length, 2);
  assert.deepEqual(s.cpus[1], { processed: 255, dropped: 48, timeSqueeze: 0 });
  assert.equal(s.processed, 0x10f);
  assert.equal(s.dropped, 50);
  assert.equal(s.timeSqueeze, 1);
});

test('softnet_stat: a malformed file counts as unavailable, never as numbers', () => {
  for (const text of [
    '',
    '\n\n',
    'hello world',
    '00000001 00000002', // too few columns
    `${row(1, 2)}\nzz000001 00000002 00000003`, // one bad row spoils the file
    '000000001 00000002 00000003', // more than 32 bits
    '-0000001 00000002 00000003',
    '0x000001 00000002 00000003',
    '1.5 2 3',
    '\u0000\u0000\u0000',
  ]) {
    assert.equal(parseSoftnetStat(text), undefined, JSON.stringify(text));
  }
  assert.equal(readSoftnetStat('/nonexistent/softnet_stat'), undefined);
});

test('this host: /proc/net/softnet_stat parses (one row per CPU)', (t) => {
  const s = readSoftnetStat();
  if (!s) return t.skip('no readable /proc/net/softnet_stat here');
  assert.ok(s.cpus.length >= 1);
});

/** A BacklogWatch over a scripted sequence of files. */
function scripted(files: (SoftnetStat | undefined)[], setting?: number) {
  const warnings: string[] = [];
  let i = 0;
  const w = new BacklogWatch(
    (m) => warnings.push(m),
    () => files[Math.min(i++, files.length - 1)],
    () => setting,
  );
  return { w, warnings };
}
const stat = (...dropped: number[]): SoftnetStat => parseSoftnetStat(dropped.map((d) => row(100, d)).join('\n'))!;

test('BacklogWatch: counts what rose between samples, per CPU, across a 32-bit wrap; warns once', () => {
  const { w, warnings } = scripted([stat(5, 7), stat(5, 7), stat(8, 7), stat(8, 10), stat(0xfffffffe, 10), stat(3, 10)], 1000);
  assert.equal(w.sample(), 0); // the base
  assert.equal(w.sample(), 0);
  assert.deepEqual(warnings, []);
  assert.equal(w.sample(), 3);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /net\.core\.netdev_max_backlog=1000/);
  assert.match(warnings[0]!, /netdev_max_backlog=10000/);
  assert.match(warnings[0]!, /--tune-host/);
  assert.equal(w.sample(), 3);
  assert.equal(w.total, 6);
  w.sample(); // from 8 to 0xfffffffe on CPU 0
  assert.equal(w.sample(), 5); // 0xfffffffe -> 3 wraps: 5
  assert.equal(warnings.length, 1, 'one warning only');
});

test('BacklogWatch: paused, unreadable or CPUs changing: nothing is counted for the gap', () => {
  const { w } = scripted([stat(0), stat(10), stat(50), undefined, stat(90), stat(95), stat(95, 0), stat(99, 1)]);
  w.sample();
  assert.equal(w.sample(), 10);
  w.pause();
  assert.equal(w.sample(), 0, 'after a pause the next sample is a base');
  assert.equal(w.sample(), 0, 'unreadable');
  assert.equal(w.available, false);
  assert.equal(w.sample(), 0, 'a base again');
  assert.equal(w.sample(), 5);
  assert.equal(w.sample(), 0, 'a CPU came online: a base again');
  assert.equal(w.sample(), 5);
  assert.equal(w.total, 20);
});

test('backlogWarning suggests at least 10000, and twice a value already above it', () => {
  assert.match(backlogWarning(1, 20_000), /netdev_max_backlog=40000/);
  assert.match(backlogWarning(1, undefined), /not shown in this network namespace/);
});

test('--tune-host values', () => {
  assert.deepEqual(parseTuneHost(true), { backlog: 10_000 });
  assert.deepEqual(parseTuneHost('backlog=2500'), { backlog: 2500 });
  for (const bad of ['backlog=0', 'backlog=-1', 'backlog=x', 'rmem=5', 'backlog=99999999999', '5000']) {
    assert.throws(() => parseTuneHost(bad), InvalidArgumentError, bad);
  }
});

const root = process.getuid?.() === 0;

test('--tune-host refuses without root, saying so', { skip: root ? 'running as root: the refusal is for other users' : false }, () => {
  assert.throws(
    () => tuneHost({ backlog: 10_000 }),
    (e: unknown) => e instanceof NotSupportedError && /needs root/.test(e.message),
  );
});

test(
  'tuneHost raises, records, restores; leaves a higher value and a value someone else changed',
  { skip: root ? false : 'needs root (tuneHost checks the uid first)' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-tune-'));
    try {
      const sysctl = join(dir, 'netdev_max_backlog');
      const record = join(dir, 'run', 'host-tuning.json');
      writeFileSync(sysctl, '1000\n');
      const t = tuneHost({ backlog: 10_000 }, sysctl, record);
      assert.equal(t.changed, true);
      assert.match(t.message, /1000 -> 10000/);
      assert.equal(readFileSync(sysctl, 'utf8'), '10000');
      assert.equal(JSON.parse(readFileSync(record, 'utf8')).original, 1000);
      assert.match(leftoverTuning(sysctl, record) ?? '', /running/);
      assert.equal(restoreLeftoverTuning(sysctl, record), undefined, 'a live process keeps its setting');
      assert.equal(t.restore(), 'restored net.core.netdev_max_backlog=1000');
      assert.equal(readFileSync(sysctl, 'utf8'), '1000');
      assert.equal(t.restore(), undefined, 'idempotent');
      assert.equal(leftoverTuning(sysctl, record), undefined);

      writeFileSync(sysctl, '20000');
      const high = tuneHost({ backlog: 10_000 }, sysctl, record);
      assert.equal(high.changed, false);
      assert.match(high.message, /already/);
      assert.equal(readFileSync(sysctl, 'utf8'), '20000');

      writeFileSync(sysctl, '1000');
      const t2 = tuneHost({ backlog: 5000 }, sysctl, record);
      writeFileSync(sysctl, '7000'); // an operator's change meanwhile
      assert.match(t2.restore() ?? '', /changed by someone else/);
      assert.equal(readFileSync(sysctl, 'utf8'), '7000');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("a crashed --tune-host's setting: doctor names it, detach restores it", { skip: root ? false : 'needs root' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tune-'));
  try {
    const sysctl = join(dir, 'netdev_max_backlog');
    const record = join(dir, 'host-tuning.json');
    writeFileSync(sysctl, '10000');
    // A record whose process is gone (pid 2^22 + 1 exceeds pid_max's default; the start time cannot match).
    writeFileSync(record, JSON.stringify({ setting: 'net.core.netdev_max_backlog', original: 1000, written: 10_000, pid: 4_194_305, start: '1' }));
    assert.match(leftoverTuning(sysctl, record) ?? '', /did not stop cleanly.*had 1000.*sluice detach/);
    // A later --tune-host keeps the host's own value as the original.
    const t = tuneHost({ backlog: 20_000 }, sysctl, record);
    assert.match(t.message, /restored to 1000/);
    t.restore();
    assert.equal(readFileSync(sysctl, 'utf8'), '1000');

    writeFileSync(sysctl, '10000');
    writeFileSync(record, JSON.stringify({ setting: 'net.core.netdev_max_backlog', original: 1000, written: 10_000, pid: 4_194_305, start: '1' }));
    assert.equal(restoreLeftoverTuning(sysctl, record), 'restored net.core.netdev_max_backlog=1000');
    assert.equal(readFileSync(sysctl, 'utf8'), '1000');
    assert.equal(leftoverTuning(sysctl, record), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
