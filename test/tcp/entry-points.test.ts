/**
 * tcp-redirect through each entry point other than TcpRelay.start (issue 22,
 * part 2): Sluice.apply (a flow object with stats and events), the config
 * file (parseConfigText: tcp-redirect entries in flows:), and `sluice run -c`.
 * Real sockets on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConflictError, PolicyValidationError, Sluice, parseConfigText, type TcpRelay } from '../../src/index.js';
import { startCli, collect as collectCli, waitForEvent } from '../../harness/process/cli.js';
import { collect, connectTo, randomBytes, refusedAttempt, sha, startUpstream } from './tcp-harness.js';

async function echoThrough(relay: TcpRelay, n: number, seed: number): Promise<void> {
  const c = await connectTo(relay);
  const data = randomBytes(n, seed);
  const got = collect(c);
  c.end(data);
  assert.equal(sha(await got), sha(data));
}

test('Sluice.apply(tcp-redirect): a flow object with counters and events; names shared with UDP flows; closed with the Sluice', async () => {
  const upstream = await startUpstream((s) => s.pipe(s));
  const sluice = await Sluice.open({ tier: 'portable' });
  try {
    const added: string[] = [];
    sluice.on('tcpflowadded', (f) => added.push(f.name));
    const web = await sluice.apply({
      type: 'tcp-redirect',
      name: 'web',
      listen: 'tcp://127.0.0.1:0',
      to: `tcp://127.0.0.1:${upstream.port}`,
      allow: '127.0.0.1',
    });
    assert.deepEqual(added, ['web']);
    assert.equal(web.type, 'tcp-redirect');
    assert.equal(sluice.tcpFlow('web'), web);
    assert.deepEqual(sluice.tcpFlows(), [web]);
    assert.equal(sluice.flows().length, 0, 'a tcp-redirect is not a UDP flow');
    const events: string[] = [];
    web.on('accepted', (src) => events.push(`accepted ${src}`));
    const ended = new Promise<unknown>((resolve) => web.once('pairend', (_src, end) => resolve(end)));
    await echoThrough(web, 300_000, 5);
    const end = (await ended) as { reason: string; bytesToUpstream: number; bytesToClient: number };
    assert.deepEqual(events, ['accepted 127.0.0.1']);
    assert.equal(end.reason, 'closed');
    assert.equal(end.bytesToUpstream, 300_000);
    assert.equal(end.bytesToClient, 300_000);
    const st = web.stats();
    assert.equal(st.accepted, 1);
    assert.equal(st.active, 0);
    assert.equal(st.closed, 1);
    assert.equal(st.bytesToUpstream, 300_000);
    assert.equal(st.bytesToClient, 300_000);

    // One name space for every flow of a Sluice, both ways.
    await assert.rejects(
      sluice.apply({ type: 'tcp-redirect', name: 'web', listen: 'tcp://127.0.0.1:0', to: `tcp://127.0.0.1:${upstream.port}`, allow: 'any' }),
      ConflictError,
    );
    await assert.rejects(sluice.apply({ type: 'redirect', name: 'web', listen: 'udp://127.0.0.1:0', to: 'udp://127.0.0.1:9', allow: 'any' }), ConflictError);
    // Bad input is a PolicyValidationError naming the field.
    await assert.rejects(
      sluice.apply({ type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: 'tcp://127.0.0.1:0', allow: 'any' }),
      (err: unknown) => err instanceof PolicyValidationError && err.issues.some((i) => i.path === 'to'),
    );

    // remove(): its last counters in 'tcpflowremoved', gone from the list.
    const removed = new Promise<[TcpRelay, unknown]>((resolve) => sluice.once('tcpflowremoved', (f, s) => resolve([f, s])));
    const last = await web.remove();
    const [f, s] = await removed;
    assert.equal(f, web);
    assert.deepEqual(s, last);
    assert.equal(sluice.tcpFlows().length, 0);

    // A second one is closed by sluice.close(): its port refuses afterwards.
    const other = await sluice.apply({ type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: `tcp://127.0.0.1:${upstream.port}`, allow: 'any' });
    const port = Number(new URL(other.listen).port);
    const closed = once(other, 'close');
    await sluice.close();
    await closed;
    assert.equal(other.closed, true);
    const probe = connect({ host: '127.0.0.1', port });
    const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  } finally {
    await sluice.close();
    await upstream.close();
  }
});

test('Sluice.apply(tcp-redirect): a source outside allow is refused, with an event and a counter', async () => {
  const upstream = await startUpstream((s) => s.pipe(s));
  const sluice = await Sluice.open({ tier: 'portable' });
  try {
    const relay = await sluice.apply({ type: 'tcp-redirect', listen: 'tcp://127.0.0.1:0', to: `tcp://127.0.0.1:${upstream.port}`, allow: '10.0.0.0/8' });
    const refused = new Promise<[string, string]>((resolve) => relay.once('refused', (src, why) => resolve([src, why])));
    assert.notEqual(await refusedAttempt(relay), 'end');
    assert.deepEqual(await refused, ['127.0.0.1', 'notAllowed']);
    assert.equal(relay.stats().refused.notAllowed, 1);
    assert.equal(relay.stats().accepted, 0);
    assert.equal(upstream.sockets.length, 0, 'nothing reached the upstream');
  } finally {
    await sluice.close();
    await upstream.close();
  }
});

const udp = { type: 'redirect', listen: 'udp://127.0.0.1:25000', to: 'udp://127.0.0.1:25001', allow: 'any' };
const tcpEntry = (port: number, name?: string) => ({
  type: 'tcp-redirect',
  ...(name ? { name } : {}),
  listen: `tcp://127.0.0.1:${port}`,
  to: 'tcp://127.0.0.1:8080',
  allow: '127.0.0.1',
});

test('config file: tcp-redirect entries in flows: are validated and returned apart from the UDP flows', () => {
  const c = parseConfigText(JSON.stringify({ tier: 'portable', flows: [tcpEntry(24000, 'web'), udp] }), 'x.yaml');
  assert.equal(c.tier, 'portable');
  assert.equal(c.flows.length, 1);
  assert.equal(c.flows[0]!.type, 'redirect');
  assert.equal(c.tcp.length, 1);
  assert.equal(c.tcp[0]!.name, 'web');
  // Only tcp-redirects: the file's tier still checked.
  assert.equal(parseConfigText(JSON.stringify({ flows: [tcpEntry(24000)] })).tcp.length, 1);
  assert.throws(
    () => parseConfigText(JSON.stringify({ tier: 'fast', flows: [tcpEntry(24000)] })),
    (e: unknown) => e instanceof PolicyValidationError && e.issues.some((i) => i.path === 'tier'),
  );
});

test('config file: bad tcp-redirect entries and clashes are named by their index in the file', () => {
  const issues = (doc: unknown): { path: string; message: string }[] => {
    try {
      parseConfigText(JSON.stringify(doc));
    } catch (e) {
      assert.ok(e instanceof PolicyValidationError);
      return [...e.issues];
    }
    assert.fail('expected a PolicyValidationError');
  };
  // flows[1] bad tcp (no allow), flows[2] bad UDP (no to): each under its own index.
  const a = issues({ flows: [udp, { ...tcpEntry(24000), allow: undefined }, { type: 'redirect', listen: 'udp://127.0.0.1:25002', allow: 'any' }] });
  assert.ok(
    a.some((i) => i.path === 'flows[1].allow'),
    JSON.stringify(a),
  );
  assert.ok(
    a.some((i) => i.path.startsWith('flows[2].to')),
    JSON.stringify(a),
  );
  // A name used by a UDP flow and a tcp-redirect; two tcp-redirects on one port.
  const b = issues({ flows: [{ ...udp, name: 'x' }, tcpEntry(24000, 'x'), tcpEntry(24001), { ...tcpEntry(24001), listen: 'tcp://0.0.0.0:24001' }] });
  assert.ok(
    b.some((i) => i.path === 'flows[1].name' && /flows\[0\]/.test(i.message)),
    JSON.stringify(b),
  );
  assert.ok(
    b.some((i) => i.path === 'flows[3].listen' && /flows\[2\]/.test(i.message)),
    JSON.stringify(b),
  );
});

test('sluice run -c: a config with a tcp-redirect relays TCP and reports its counters', async () => {
  const upstream = await startUpstream((s) => s.pipe(s));
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tcp-run-'));
  try {
    const file = join(dir, 'sluice.yaml');
    writeFileSync(
      file,
      [
        'tier: portable',
        'flows:',
        '  - type: tcp-redirect',
        '    name: web',
        '    listen: tcp://127.0.0.1:0',
        `    to: tcp://127.0.0.1:${upstream.port}`,
        '    allow: 127.0.0.1',
        '',
      ].join('\n'),
    );
    const child = startCli(['run', '-c', file, '--json']);
    const done = collectCli(child);
    const ready = (await waitForEvent(child, 'ready')) as { tcpFlows: { name: string; listen: string; mode: string }[] };
    assert.equal(ready.tcpFlows.length, 1);
    assert.equal(ready.tcpFlows[0]!.name, 'web');
    const c = connect({ host: '127.0.0.1', port: Number(new URL(ready.tcpFlows[0]!.listen).port) });
    await once(c, 'connect');
    const data = randomBytes(200_000, 11);
    const got = collect(c);
    c.end(data);
    assert.equal(sha(await got), sha(data));
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    const final = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { event: string; tcpFlows: { name: string; accepted: number; bytesToUpstream: number }[] };
    assert.equal(final.event, 'final');
    assert.equal(final.tcpFlows[0]!.name, 'web');
    assert.equal(final.tcpFlows[0]!.accepted, 1);
    assert.equal(final.tcpFlows[0]!.bytesToUpstream, 200_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await upstream.close();
  }
});
