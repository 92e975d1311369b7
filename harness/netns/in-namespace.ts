/**
 * Runs a node:test file inside a fresh test namespace (lo up, nothing else)
 * and fails with its output unless every test in it passed. Used for tests
 * that attach eBPF programs: they must never touch the host's interfaces.
 */
import assert from 'node:assert/strict';
import { withTopology } from './netns.js';

export async function runTestFileInNamespace(file: string, timeoutMs = 240_000): Promise<string> {
  return withTopology({ namespaces: ['k'] }, async (topo) => {
    // The inner bound applies to each test and to each describe() as a whole (a suite of many
    // tests on a loaded host takes minutes), so it is the outer bound less a margin to report.
    const inner = Math.max(60_000, timeoutMs - 20_000);
    const child = topo.spawn('k', process.execPath, ['--import', 'tsx', '--test', `--test-timeout=${inner}`, '--test-reporter=tap', file]);
    const exit = await child.waitExit(timeoutMs);
    const out = child.stdout();
    // Forward the inner TAP so the outer run shows every inner test.
    process.stdout.write(
      out
        .split('\n')
        .map((l) => `# [in namespace] ${l}`)
        .join('\n') + '\n',
    );
    assert.equal(exit.code, 0, `${file} failed in its namespace:\n${out}\n${child.stderr()}`);
    assert.match(out, /^# fail 0$/m);
    return out;
  });
}
