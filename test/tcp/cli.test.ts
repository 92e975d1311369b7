import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCli, collect, waitForEvent } from '../../harness/process/cli.js';
import { randomBytes, sha, startUpstream, collect as collectBytes } from './tcp-harness.js';
import { connect } from 'node:net';
import { once } from 'node:events';

test('sluice relay --listen tcp:// relays through the splice path and reports counters', async () => {
  const upstream = await startUpstream((s) => s.pipe(s));
  const child = startCli(['relay', '--listen', 'tcp://127.0.0.1:0', '--to', `tcp://127.0.0.1:${upstream.port}`, '--allow', '127.0.0.1', '--json']);
  const done = collect(child);
  const ready = (await waitForEvent(child, 'ready')) as { listen: string; mode: string };
  assert.equal(ready.mode, 'splice');
  const c = connect({ host: '127.0.0.1', port: Number(new URL(ready.listen).port) });
  await once(c, 'connect');
  const data = randomBytes(500_000, 99);
  const got = collectBytes(c);
  c.end(data);
  assert.equal(sha(await got), sha(data));
  child.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  const final = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  assert.equal(final.event, 'final');
  assert.equal(final.signal, 'SIGTERM');
  assert.equal(final.accepted, 1);
  assert.equal(final.bytesToUpstream, 500_000);
  assert.equal(final.bytesToClient, 500_000);
  await upstream.close();
});

test('sluice relay: a tcp:// listen with a udp:// destination is a usage error', async () => {
  const child = startCli(['relay', '--listen', 'tcp://127.0.0.1:0', '--to', 'udp://127.0.0.1:5000', '--allow', 'any']);
  const r = await collect(child);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unsupported scheme 'udp:\/\/'/);
});

test('sluice relay: a tcp:// listen without --allow is a usage error naming allow', async () => {
  const r = await collect(startCli(['relay', '--listen', 'tcp://127.0.0.1:0', '--to', 'tcp://127.0.0.1:5000']));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /allow: required/);
});
