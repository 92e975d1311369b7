/**
 * Output through a pipe is never cut short (issue 16): a command that
 * exits after writing lets stdout drain first. `process.exit` right after
 * a large write used to drop what the pipe (64 KiB) had not taken yet:
 * `sluice status --json | jq` read a truncated document.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlServer } from '../../src/tpo/control-socket.js';
import { runCli } from '../../harness/process/cli.js';

test('sluice status --json through a pipe: over 1 MiB of status arrives whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-drain-'));
  // A gateway's status with many flows, served by the real control server.
  const flows = Array.from({ length: 6000 }, (_, i) => ({
    tuple: `tcp 10.0.${i >> 8}.${i & 255}:${40000 + (i % 20000)} -> 10.2.0.10:80`,
    role: 'source',
    peers: ['site-b'],
    state: 'open',
    bytesOut: i * 1000,
    bytesIn: i * 7,
    pad: 'x'.repeat(60),
  }));
  const status = { name: 'big', listen: '127.0.0.1:7400', io: 'portable', interception: 'explicit', listeners: [], peers: [], flows, counters: {} };
  const control = await startControlServer(join(dir, 'c.sock'), () => status);
  try {
    const r = await runCli(['status', '--socket', control.path, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const expected = `${JSON.stringify(status)}\n`;
    assert.ok(expected.length > 1024 * 1024, 'more than a pipe holds, many times over');
    assert.equal(r.stdout.length, expected.length, 'the whole document');
    assert.deepEqual(JSON.parse(r.stdout), status);
  } finally {
    await control.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the CLI exit path through a real pipe read slowly: everything written before exit arrives', async () => {
  // The CLI's own exit helper, in a child whose stdout is a pipe nobody reads for a while.
  const helper = fileURLToPath(new URL('../../src/cli/output.ts', import.meta.url));
  const script = `import { exitAfterOutput } from ${JSON.stringify(helper)}; process.stdout.write('y'.repeat(4 * 1024 * 1024) + '\\nend\\n'); process.stderr.write('e'.repeat(256 * 1024) + '\\n'); exitAfterOutput(3);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  child.stdout.pause();
  child.stderr.pause();
  // Let the child fill the pipes and reach its exit before anything is read.
  await new Promise((r) => setTimeout(r, 1500));
  let out = 0;
  let err = 0;
  let tail = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.length;
    tail = (tail + d.toString()).slice(-8);
  });
  child.stderr.on('data', (d: Buffer) => (err += d.length));
  child.stdout.resume();
  child.stderr.resume();
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 3);
  assert.equal(out, 4 * 1024 * 1024 + 5);
  assert.equal(tail.endsWith('\nend\n'), true);
  assert.equal(err, 256 * 1024 + 1);
});

test('sluice send --aggregate --json through a pipe: every message outcome arrives', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-drain-'));
  try {
    const { writeFile } = await import('node:fs/promises');
    const n = 2000;
    // Discard port 9 on loopback: nothing listens, the sends still complete.
    await writeFile(
      join(dir, 'agg.json'),
      JSON.stringify({
        schedule: { kind: 'delays', delaysMs: Array(n).fill(0) },
        messages: Array.from({ length: n }, (_, i) => ({ to: 'udp://127.0.0.1:9', text: `m${i}`, stream: `s${i % 7}` })),
        maxLatenessMs: 60_000,
      }),
    );
    const r = await runCli(['send', '--aggregate', join(dir, 'agg.json'), '--json', '--tier', 'portable']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.length > 64 * 1024, `a large document: ${r.stdout.length} bytes`);
    const out = JSON.parse(r.stdout) as { messages: unknown[] };
    assert.equal(out.messages.length, n);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
