/**
 * `sluice send --aggregate`: `file` payloads (src/cli/send.ts). Whoever
 * wrote the JSON must not make the user send a private file, block the
 * send on a FIFO, or fill memory from /dev/zero or a huge file: paths are
 * relative to the JSON's folder and confined to it (no absolute paths, no
 * `..`, no symbolic link out) unless --allow-any-file; regular files only;
 * sizes checked before reading.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aggregateFromJson } from '../../src/cli/send.js';
import { PolicyValidationError } from '../../src/errors.js';

const doc = (files: string[]) =>
  JSON.stringify({ schedule: { kind: 'delays', delaysMs: files.map(() => 0) }, messages: files.map((file) => ({ to: 'udp://127.0.0.1:9', file })) });

async function refusal(text: string, base: string, opts = {}): Promise<{ path: string; message: string }[]> {
  try {
    await aggregateFromJson(text, base, opts);
  } catch (e) {
    assert.ok(e instanceof PolicyValidationError, String(e));
    return [...e.issues];
  }
  assert.fail('expected the aggregate to be refused');
}

test('file payloads: inside the folder only, regular files only, sizes checked before reading', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-aggfiles-'));
  try {
    const base = join(root, 'job');
    mkdirSync(join(base, 'sub'), { recursive: true });
    writeFileSync(join(root, 'secret'), 'PRIVATE KEY');
    writeFileSync(join(base, 'a.bin'), 'A');
    writeFileSync(join(base, 'sub', 'b.bin'), 'B');
    symlinkSync(join(root, 'secret'), join(base, 'innocent.bin'));
    symlinkSync(join(base, 'sub', 'b.bin'), join(base, 'b-link.bin'));
    execFileSync('mkfifo', [join(base, 'fifo')]);
    symlinkSync('/dev/zero', join(base, 'zero'));
    writeFileSync(join(base, 'huge.bin'), '');
    truncateSync(join(base, 'huge.bin'), 1024 ** 3);
    writeFileSync(join(base, 'max.bin'), Buffer.alloc(65507, 1));

    const ok = await aggregateFromJson(doc(['a.bin', 'sub/b.bin', 'b-link.bin', './sub/../a.bin', 'max.bin']), base);
    assert.deepEqual(
      ok.messages.map((m) => Buffer.from(m.data).subarray(0, 1).toString()),
      ['A', 'B', 'B', 'A', '\x01'],
    );

    const cases: [string, RegExp][] = [
      ['../secret', /cannot read \.\.\/secret: resolves to .*secret, outside .*job \(files must be in the JSON file's folder; pass --allow-any-file/],
      [join(root, 'secret'), /absolute paths are refused/],
      ['innocent.bin', /cannot read innocent\.bin: resolves to .*secret, outside/],
      ['fifo', /cannot read fifo: a FIFO \(named pipe\), not a regular file/],
      ['zero', /cannot read zero: a character device, not a regular file/],
      ['sub', /cannot read sub: a directory, not a regular file/],
      ['huge.bin', /cannot read huge\.bin: 1073741824 bytes, more than the limit of 65507 \(a message is at most one UDP payload\)/],
      ['missing.bin', /cannot read missing\.bin: ENOENT/],
    ];
    for (const [file, why] of cases) {
      const issues = await refusal(doc(['a.bin', file]), base);
      assert.equal(issues.length, 1, `${file}: ${JSON.stringify(issues)}`);
      assert.equal(issues[0]!.path, 'messages[1].file');
      assert.match(issues[0]!.message, why);
    }
    // With the flag: files anywhere, still regular files of bounded size.
    const any = await aggregateFromJson(doc([join(root, 'secret'), '../secret', 'innocent.bin']), base, { allowAnyFile: true });
    assert.deepEqual(
      any.messages.map((m) => Buffer.from(m.data).toString()),
      ['PRIVATE KEY', 'PRIVATE KEY', 'PRIVATE KEY'],
    );
    assert.match((await refusal(doc(['fifo']), base, { allowAnyFile: true }))[0]!.message, /FIFO/);
    // The aggregate's 64 MiB are counted before each read: the 1025th copy of a maximal payload is refused unread.
    const many = await refusal(doc(Array(1025).fill('max.bin')), base);
    assert.equal(many[0]!.path, 'messages[1024].file');
    // More messages than an aggregate carries: refused before any file is opened (the FIFO would say so).
    const tooMany = await refusal(doc(Array(65537).fill('fifo')), base);
    assert.deepEqual(tooMany, [{ path: 'messages', message: '65537 messages; an aggregate carries at most 65536' }]);
    assert.match(many[0]!.message, /65507 bytes, more than the limit of 29696 \(the aggregate may carry 67108864 bytes in all; 29696 are left\)/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
