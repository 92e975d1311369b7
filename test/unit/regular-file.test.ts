/**
 * Reading files users name (src/fs/regular-file.ts): regular files only,
 * size checked before reading, confinement to a folder through symbolic
 * links. FIFOs and devices must be refused without blocking or reading.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileRefusedError, isInside, readRegularFile } from '../../src/fs/regular-file.js';

const refused = (fn: () => unknown, reason: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FileRefusedError, String(e));
    assert.match(e.reason, reason);
    return true;
  });

test('regular files are read whole; FIFOs, devices and directories are refused without reading', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-rf-'));
  try {
    writeFileSync(join(dir, 'f'), 'hello');
    assert.equal(readRegularFile(join(dir, 'f'), { maxBytes: 5 }).data.toString(), 'hello');
    assert.equal(readRegularFile(join(dir, 'f'), { maxBytes: 100 }).stat.size, 5);
    // A FIFO with no writer: a plain read would block this thread forever.
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    refused(() => readRegularFile(join(dir, 'fifo'), { maxBytes: 100 }), /FIFO/);
    // /dev/zero never ends: read whole it grows memory until the OOM killer.
    refused(() => readRegularFile('/dev/zero', { maxBytes: 100 }), /character device/);
    refused(() => readRegularFile(dir, { maxBytes: 100 }), /directory/);
    refused(() => readRegularFile(join(dir, 'missing'), { maxBytes: 100 }), /ENOENT/);
    // Larger than the limit: refused from its size (a sparse 1 GiB file is never read).
    writeFileSync(join(dir, 'big'), '');
    truncateSync(join(dir, 'big'), 1024 ** 3);
    refused(() => readRegularFile(join(dir, 'big'), { maxBytes: 1024 }), /1073741824 bytes, more than the limit of 1024/);
    refused(() => readRegularFile(join(dir, 'f'), { maxBytes: 4 }), /5 bytes, more than the limit of 4/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('files of /proc report size 0 and are still read, within the limit', () => {
  const status = readRegularFile('/proc/self/status', { maxBytes: 1024 * 1024 });
  assert.match(status.data.toString(), /^Name:/);
  refused(() => readRegularFile('/proc/self/status', { maxBytes: 16 }), /grew past the limit of 16 bytes/);
});

test('within: symbolic links and .. cannot lead outside the folder', () => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-rf-'));
  try {
    const inside = join(root, 'in');
    mkdirSync(join(inside, 'sub'), { recursive: true });
    writeFileSync(join(root, 'secret'), 'private');
    writeFileSync(join(inside, 'sub', 'ok'), 'payload');
    symlinkSync(join(root, 'secret'), join(inside, 'link-out'));
    symlinkSync(join(inside, 'sub', 'ok'), join(inside, 'link-in'));
    assert.equal(readRegularFile(join(inside, 'sub', 'ok'), { maxBytes: 100, within: inside }).data.toString(), 'payload');
    assert.equal(readRegularFile(join(inside, 'link-in'), { maxBytes: 100, within: inside }).data.toString(), 'payload');
    refused(() => readRegularFile(join(inside, 'link-out'), { maxBytes: 100, within: inside }), /outside/);
    refused(() => readRegularFile(join(inside, '..', 'secret'), { maxBytes: 100, within: inside }), /outside/);
    assert.equal(isInside('/a/b', '/a/b/c'), true);
    assert.equal(isInside('/a/b', '/a/bc'), false);
    assert.equal(isInside('/a/b', '/a/b/..c'), true);
    assert.equal(isInside('/a/b', '/a'), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
