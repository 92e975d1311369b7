/**
 * The closing failure list of `npm test` (test/reporters/failures.mjs):
 * node's runner on sample files lists every failing leaf test with its file,
 * line and suite path, every file that failed outside a test with the
 * stderr that explains it, and ends with the "N passed, N failed, N skipped"
 * line; the exit code stays non-zero on failure and zero without.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REPORTER = './test/reporters/failures.mjs';
const fixture = (name: string): string => `test/fixtures/reporter/${name}`;

function runWithReporter(files: string[]): { status: number | null; out: string } {
  const env = { ...process.env };
  // We run inside node:test ourselves; the child must be a runner of its own.
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-reporter=${REPORTER}`, '--test-reporter-destination=stdout', ...files], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, out: r.stdout };
}

test('failing leaves at any depth, and files that crash at import or after their tests, are listed; exit code 1', () => {
  const { status, out } = runWithReporter([fixture('failing.mjs'), fixture('crash-at-import.mjs'), fixture('crash-after-tests.mjs'), fixture('passing.mjs')]);
  assert.equal(status, 1, out);
  const list = out.slice(out.indexOf('── failed tests'));
  assert.match(list, /^── failed tests \(5\) ──$/m);
  assert.match(list, /^✖ test\/fixtures\/reporter\/failing\.mjs:\d+ {2}suite A › fails inside\n {4}AssertionError.*1 == 2$/m);
  assert.match(list, /^✖ test\/fixtures\/reporter\/failing\.mjs:\d+ {2}suite A › inner › deep fail\n {4}deep$/m);
  assert.match(list, /^✖ test\/fixtures\/reporter\/failing\.mjs:\d+ {2}parent with failing subtest › child fails\n {4}c$/m);
  assert.match(
    list,
    /^✖ test\/fixtures\/reporter\/crash-at-import\.mjs {2}\(the file itself, outside any test\)\n {4}exit code 1\n(?: {4}\| .*\n)*? {4}\| Error: file crashed at import$/m,
  );
  assert.match(
    list,
    /^✖ test\/fixtures\/reporter\/crash-after-tests\.mjs {2}\(the file itself, outside any test\)\n {4}exit code 1\n {4}\| .*async crash after tests/m,
  );
  // Parents that failed only through a subtest are not listed again.
  assert.doesNotMatch(list, /✖ \S+ {2}suite A\n|✖ \S+ {2}parent with failing subtest\n/);
  // The closing line: passes are 'passes' + 'top pass' + 'ok one' + 'fine'; skipped: 'top skip', 'skipped', 'todo'.
  assert.match(out.trimEnd().split('\n').at(-1) ?? '', /^summary: 4 passed, 5 failed, 3 skipped$/);
});

test('a passing run says so, exits 0, and still ends with the closing line', () => {
  const { status, out } = runWithReporter([fixture('passing.mjs')]);
  assert.equal(status, 0, out);
  assert.match(out, /── failed tests \(0\) ──\nnone\n/);
  assert.equal(out.trimEnd().split('\n').at(-1), 'summary: 1 passed, 0 failed, 2 skipped');
});
