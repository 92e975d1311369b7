/** The API token file (src/server/token.ts) and the state file (src/server/state-file.ts). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateToken, readToken, TokenFileError } from '../../src/server/token.js';
import { readStateFile, writeStateFile } from '../../src/server/state-file.js';
import { PolicyValidationError, type FlowPolicy } from '../../src/index.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-token-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('API token', () => {
  test('created on first use: 32 random bytes base64url, mode 0600, in a new 0700 directory; then read back', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'a', 'b', 'api.token');
    const tok = loadOrCreateToken(path);
    assert.equal(tok.created, true);
    assert.match(tok.value, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'a', 'b')).mode & 0o777, 0o700);
    const again = loadOrCreateToken(path);
    assert.equal(again.created, false);
    assert.equal(again.value, tok.value);
    assert.equal(again.matches(tok.value), true);
    assert.equal(again.matches(`${tok.value}x`), false);
    assert.equal(again.matches(''), false);
    assert.notEqual(loadOrCreateToken(join(dir, 'other.token')).value, tok.value);
  });

  test('a file group or others may read or write is refused, saying how to fix it', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'api.token');
    writeFileSync(path, 'abcdefghijklmnopqrstuvwxyz\n', { mode: 0o644 });
    chmodSync(path, 0o644);
    assert.throws(
      () => loadOrCreateToken(path),
      (e: unknown) => e instanceof TokenFileError && /mode 0644 .*chmod 600/.test(e.message),
    );
    chmodSync(path, 0o620);
    assert.throws(() => readToken(path), /group or others/);
    chmodSync(path, 0o400);
    assert.equal(readToken(path).value, 'abcdefghijklmnopqrstuvwxyz');
  });

  test('a short, empty or binary token, or a directory, is refused', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'api.token');
    for (const content of ['', 'short', 'has space inside the token\n', '\u0001'.repeat(20)]) {
      writeFileSync(path, content, { mode: 0o600 });
      assert.throws(() => readToken(path), /expected one token/, JSON.stringify(content));
    }
    assert.throws(() => loadOrCreateToken(dir), /directory/);
  });
});

describe('state file', () => {
  const flows: FlowPolicy[] = [{ name: 'tv', type: 'replicate', listen: 'udp://127.0.0.1:5000', allow: 'any', to: ['udp://127.0.0.1:6000'] }];

  test('written atomically (no temp file left), version 1, read back the same', async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 's.state.json');
    assert.equal(readStateFile(path), undefined);
    const at = new Date('2025-01-02T03:04:05.000Z');
    await writeStateFile(path, { flows, tpo: {} }, at);
    assert.deepEqual(readdirSync(dir), ['s.state.json']);
    const st = readStateFile(path)!;
    assert.equal(st.version, 1);
    assert.equal(st.writtenAt, at.toISOString());
    assert.deepEqual(st.flows, flows);
    await writeStateFile(path, { flows: [], tpo: {} });
    assert.deepEqual(readStateFile(path)!.flows, []);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).version, 1);
  });

  test('a bad state file is refused with the field path', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 's.json');
    const bad = (doc: unknown, re: RegExp) => {
      writeFileSync(path, typeof doc === 'string' ? doc : JSON.stringify(doc));
      assert.throws(
        () => readStateFile(path),
        (e: unknown) => e instanceof PolicyValidationError && re.test(e.message),
        JSON.stringify(doc),
      );
    };
    bad('{', /not JSON/);
    bad({ version: 2, writtenAt: 'x', flows: [] }, /version: .*version 1/);
    bad({ version: 1, writtenAt: 'x', flows: [{ ...flows[0], to: ['nope'] }] }, /flows\[0\]\.to\[0\]/);
    bad({ version: 1, writtenAt: 'x', flows: [], extra: 1 }, /unknown field 'extra'/);
  });
});
