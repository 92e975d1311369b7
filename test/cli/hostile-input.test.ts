/**
 * Hostile files given to the CLI (issue 16): every config and JSON file the
 * CLI reads refuses alias bombs, deep nesting, numbers that are not finite,
 * FIFOs, devices and oversized files with exit code 2 and a message that
 * names the file and, where it can be known, the field. Nothing blocks,
 * nothing prints a stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, type CliResult } from '../../harness/process/cli.js';

const bombYaml = (key: string) => {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (const [i, c] of [...'bcdefghi'].entries()) lines.push(`${c}: &${c} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`);
  lines.push(`${key}: *i`);
  return `${lines.join('\n')}\n`;
};
const deep = (key: string) => `${key}: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`;
const tpoBase = `listen: 127.0.0.1:0\npeers:\n  - { name: b, address: "127.0.0.1:9", key: ${'ab'.repeat(32)}, keyId: 1 }\n`;

function refused(r: CliResult, file: string, why: RegExp): void {
  assert.equal(r.code, 2, `exit code 2 expected: ${r.stderr}`);
  assert.ok(r.stderr.includes(file), `the message names ${file}: ${r.stderr}`);
  assert.match(r.stderr, why);
  assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /, 'no stack trace');
}

test('sluice run/validate --config: alias bomb, deep nesting, 1e400, FIFO, /dev/zero and an oversized file exit 2 naming file and field', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-hostile-'));
  try {
    const f = (name: string) => join(dir, name);
    await writeFile(f('bomb.yaml'), bombYaml('flows'));
    await writeFile(f('deep.yaml'), deep('flows'));
    await writeFile(
      f('inf.yaml'),
      'flows:\n  - {type: redirect, listen: "udp://127.0.0.1:5000", to: "udp://127.0.0.1:6000", allow: any, maxQueuedPackets: 1e400}\n',
    );
    execFileSync('mkfifo', [f('fifo.yaml')]);
    await writeFile(f('big.yaml'), '');
    await truncate(f('big.yaml'), 64 * 1024 * 1024);
    const [bomb, deepR, inf, fifo, zero, big, runBomb] = await Promise.all([
      runCli(['validate', '--config', f('bomb.yaml')]),
      runCli(['validate', '--config', f('deep.yaml')]),
      runCli(['validate', '--config', f('inf.yaml')]),
      runCli(['validate', '--config', f('fifo.yaml')]),
      runCli(['validate', '--config', '/dev/zero']),
      runCli(['validate', '--config', f('big.yaml')]),
      runCli(['run', '--config', f('bomb.yaml')]),
    ]);
    refused(bomb, 'bomb.yaml', /aliases expand too far/);
    refused(runBomb, 'bomb.yaml', /aliases expand too far/);
    refused(deepR, 'deep.yaml', /nested deeper than 32 levels/);
    refused(inf, 'inf.yaml', /flows\[0\]\.maxQueuedPackets: must be a finite number \(got Infinity\)/);
    refused(fifo, 'fifo.yaml', /a FIFO \(named pipe\), not a regular file/);
    refused(zero, '/dev/zero', /a character device, not a regular file/);
    refused(big, 'big.yaml', /67108864 bytes, more than the limit of 8388608/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sluice tpo --config: alias bomb, deep nesting and 1e400 exit 2 naming file and field', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-hostile-'));
  try {
    const f = (name: string) => join(dir, name);
    await writeFile(f('bomb.yaml'), `${tpoBase}${bombYaml('table')}`);
    await writeFile(f('deep.yaml'), `${tpoBase}${deep('table')}`);
    await writeFile(f('inf.yaml'), `${tpoBase}limits: { maxFlows: 1e400 }\n`);
    const [bomb, deepR, inf] = await Promise.all([
      runCli(['tpo', '--config', f('bomb.yaml')]),
      runCli(['tpo', '--config', f('deep.yaml')]),
      runCli(['tpo', '--config', f('inf.yaml')]),
    ]);
    refused(bomb, 'bomb.yaml', /aliases expand too far/);
    refused(deepR, 'deep.yaml', /nested deeper than 32 levels/);
    refused(inf, 'inf.yaml', /limits\.maxFlows: must be a finite number \(got Infinity\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sluice send --aggregate: deep JSON, 1e400 and a FIFO exit 2 naming file and field', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-hostile-'));
  try {
    const f = (name: string) => join(dir, name);
    await writeFile(
      f('deep.json'),
      `{"messages": [{"to": "udp://127.0.0.1:9", "text": "x"}], "schedule": {"kind": "delays", "delaysMs": [0]}, "x": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    );
    await writeFile(f('inf.json'), '{"messages": [{"to": "udp://127.0.0.1:9", "text": "x"}], "schedule": {"kind": "delays", "delaysMs": [1e400]}}');
    execFileSync('mkfifo', [f('fifo.json')]);
    const [deepR, inf, fifo] = await Promise.all([
      runCli(['send', '--aggregate', f('deep.json')]),
      runCli(['send', '--aggregate', f('inf.json')]),
      runCli(['send', '--aggregate', f('fifo.json')]),
    ]);
    refused(deepR, 'deep.json', /nested deeper than 32 levels/);
    refused(inf, 'inf.json', /schedule\.delaysMs\[0\]: must be a finite number \(got Infinity\)/);
    refused(fifo, 'fifo.json', /FIFO/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
