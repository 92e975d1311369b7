/**
 * Issue 19: a TpoGateway's peers and table changed while it runs, with
 * real traffic on loopback (explicit mode, no root). A peer added at run
 * time pairs; a table entry added at run time carries a flow byte-exact;
 * invalid input is refused field by field and clashes as conflicts;
 * removing an entry closes its listener while its TCP flows carry on;
 * removing a peer resets its flows and tells it goodbye.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConflictError, NotSupportedError, PolicyValidationError, SyscallError } from '../../src/errors.js';
import { parseTpoConfig, TpoGateway, type TpoPeerFlowsReset, type TpoTableEntryView } from '../../src/tpo/index.js';
import { clientOutcome, collect, freeTcpPort, freeUdpPort, hashServer, sha, until } from './gateway-helpers.js';

/** A client that connects, sends `first`, and finishes (sends `rest`, half-closes, reads the answer) when told. */
function slowClient(port: number, first: Buffer): Promise<{ finish: (rest: Buffer) => Promise<string>; ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    const ended = new Promise<string>((done) => {
      s.on('data', (d) => (got += d));
      s.on('end', () => done(`end:${got}`));
      s.on('error', (e: NodeJS.ErrnoException) => done(`error:${e.code}`));
      s.on('close', () => done(`close:${got}`));
    });
    s.once('error', reject);
    s.on('connect', () => {
      s.write(first);
      resolve({
        ended,
        finish: async (rest) => {
          s.end(rest);
          return ended;
        },
      });
    });
  });
}

function issues(err: unknown): string[] {
  assert.ok(err instanceof PolicyValidationError, `a PolicyValidationError: ${String(err)}`);
  return err.issues.map((i) => `${i.path}: ${i.message}`);
}

test('run-time peers and table entries: validated like the config file, applied with traffic flowing', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-runtime-'));
  const server = await hashServer();
  const [portA, portB, web, web2, taken] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
  const k = randomBytes(32).toString('hex');
  const b = await TpoGateway.start({
    config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: k, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
    control: false,
  });
  // A starts with a peer that never answers (a responder for another site) and no table.
  writeFileSync(
    join(dir, 'a.yaml'),
    JSON.stringify({ name: 'a', listen: `127.0.0.1:${portA}`, peers: [{ name: 'x', key: randomBytes(32).toString('hex'), keyId: 9 }] }),
  );
  const a = await TpoGateway.start({ config: join(dir, 'a.yaml'), control: false });
  const added = collect(a, 'peeradded');
  const entries = collect(a, 'tableentryadded') as TpoTableEntryView[];
  const resets = collect(a, 'peerflowsreset') as TpoPeerFlowsReset[];
  const downAtB = collect(b, 'peerdown');
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', r));
  try {
    assert.equal(a.status().interception, 'explicit', 'explicit interception, with no listener yet');

    // ---- peers ----
    // The key in a file beside the config (read relative to it), mode 600.
    writeFileSync(join(dir, 'b.key'), k);
    chmodSync(join(dir, 'b.key'), 0o600);
    const peer = await a.addPeer({ name: 'b', address: `127.0.0.1:${portB}`, keyFile: 'b.key', keyId: 1, maxRate: '50M' });
    assert.deepEqual(peer, { name: 'b', address: `127.0.0.1:${portB}`, keyId: 1, maxRate: 50_000_000 });
    assert.deepEqual(added, [peer]);
    await until('the run-time peer pairs', () => a.status().peers.find((p) => p.name === 'b')?.up === true);
    assert.deepEqual(
      a.peers().map((p) => p.name),
      ['x', 'b'],
    );
    assert.ok(!JSON.stringify(a.peers()).includes(k), 'a view never shows a key');

    // Invalid peers: field paths, as in the config file (without the peers[i] prefix).
    const bad = await a.addPeer({ name: 'c', key: 'abcd', maxRate: 1 }).catch((e: unknown) => e);
    assert.deepEqual(issues(bad), ['key: 32 to 128 hex digits']);
    const bad2 = await a.addPeer({ name: 'c', address: 'nowhere', key: k, keyId: 3, maxRate: 0 }).catch((e: unknown) => e);
    const i2 = issues(bad2);
    assert.ok(
      i2.some((i) => i.startsWith('address: ')),
      i2.join('; '),
    );
    assert.ok(
      i2.some((i) => /^maxRate: 0 bits\/s is below the least rate/.test(i)),
      i2.join('; '),
    );
    assert.deepEqual(issues(await a.addPeer({ name: 'c', key: k, keyid: 3 }).catch((e: unknown) => e)), [": unknown field 'keyid'"]);
    await assert.rejects(a.addPeer({ name: 'b', key: k, keyId: 4 }), (e: unknown) => e instanceof ConflictError && /a peer named 'b' exists/.test(e.message));
    await assert.rejects(a.addPeer({ name: 'c', key: k, keyId: 1 }), (e: unknown) => e instanceof ConflictError && /keyId 1 is peer 'b''s/.test(e.message));
    assert.equal(a.peers().length, 2, 'nothing was added by the refused changes');

    // ---- table entries ----
    const entry = await a.addTableEntry({ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${web}`, target: `127.0.0.1:${server.port}`, peers: ['b'] });
    assert.deepEqual(entry, {
      name: 'web',
      protocol: 'tcp',
      peers: ['b'],
      domain: 0,
      listen: `127.0.0.1:${web}`,
      target: `127.0.0.1:${server.port}`,
    });
    assert.deepEqual(entries, [entry]);
    assert.deepEqual(
      a.status().listeners.map((l) => l.entry),
      ['web'],
    );
    // A flow through the entry added at run time, byte-exact.
    const data = randomBytes(500_000);
    const c1 = await slowClient(web, data.subarray(0, 1000));
    assert.equal(await c1.finish(data.subarray(1000)), `end:${sha(data)}`);

    assert.deepEqual(issues(await a.addTableEntry({ name: 'open', protocol: 'tcp', listen: '0.0.0.0:1', target: '127.0.0.1:1' }).catch((e: unknown) => e)), [
      "src: required for a listener on 0.0.0.0, which other hosts can reach: the clients it carries (ADDRESS or ADDRESS/PREFIX), or 'any' for everyone",
    ]);
    assert.deepEqual(
      issues(await a.addTableEntry({ protocol: 'tcp', listen: `127.0.0.1:1`, target: '127.0.0.1:1', peers: ['nobody'] }).catch((e: unknown) => e)),
      ["peers: no peer named 'nobody'"],
    );
    assert.deepEqual(
      issues(await a.addTableEntry({ protocol: 'tcp', listen: `127.0.0.1:1`, target: '127.0.0.1:1', dstPort: '9-1' }).catch((e: unknown) => e)),
      ['dstPort: port range 9-1 runs backwards'],
    );
    assert.deepEqual(issues(await a.addTableEntry({ protocol: 'sctp', listen: `127.0.0.1:1` }).catch((e: unknown) => e)).length, 1);
    await assert.rejects(
      a.addTableEntry({ name: 'web', protocol: 'tcp', listen: `127.0.0.1:1`, target: '127.0.0.1:1' }),
      (e: unknown) => e instanceof ConflictError && /a table entry named 'web' exists/.test(e.message),
    );
    await assert.rejects(
      a.addTableEntry({ name: 'taken', protocol: 'tcp', listen: `127.0.0.1:${taken}`, target: '127.0.0.1:1' }),
      (e: unknown) => e instanceof SyscallError && e.errno === 'EADDRINUSE' && /table entry taken/.test(e.message),
    );
    assert.deepEqual(
      a.table().map((e) => e.name),
      ['web'],
      'refused entries are not added',
    );

    // Removing an entry: its listener closes, the TCP flow it carries goes on.
    const c2 = await slowClient(web, data.subarray(0, 1000));
    await until('the flow is carried', () => a.status().flows.length === 1);
    assert.deepEqual(await a.removeTableEntry('web'), { name: 'web', flowsEnded: 0 });
    assert.equal((await clientOutcome(web)).outcome, 'refused', 'no listener any more');
    assert.equal(await c2.finish(data.subarray(1000)), `end:${sha(data)}`, 'the flow it carried went on to its end');
    assert.equal(await a.removeTableEntry('web'), undefined, 'no such entry');

    // Removing a peer: a table entry that names it first; then its flows are reset and it hears goodbye.
    await a.addTableEntry({ name: 'web2', protocol: 'tcp', listen: `127.0.0.1:${web2}`, target: `127.0.0.1:${server.port}`, peers: ['b'] });
    const c3 = await slowClient(web2, data.subarray(0, 1000));
    await until('the flow is carried', () => a.status().flows.length === 1);
    await assert.rejects(a.removePeer('b'), (e: unknown) => e instanceof ConflictError && /table entry 'web2' names peer 'b'/.test(e.message));
    assert.deepEqual(await a.removeTableEntry('web2'), { name: 'web2', flowsEnded: 0 });
    assert.deepEqual(await a.removePeer('b'), { name: 'b', flowsReset: 1 });
    assert.equal(await c3.ended, 'error:ECONNRESET', "the peer's flow is reset");
    assert.deepEqual(
      resets.map((r) => [r.peer, r.flows, r.cause]),
      [['b', 1, 'removed']],
    );
    await until('b hears goodbye', () => downAtB.length > 0);
    assert.deepEqual(
      a.status().peers.map((p) => p.name),
      ['x'],
    );
    assert.equal(a.status().flows.length, 0);
    assert.equal(await a.removePeer('b'), undefined, 'no such peer');

    // And back: the same peer added again pairs again.
    await a.addPeer({ name: 'b', address: `127.0.0.1:${portB}`, key: k, keyId: 1 });
    await until('the peer pairs again', () => a.status().peers.find((p) => p.name === 'b')?.up === true);

    // A closed gateway refuses changes.
    await a.close();
    await assert.rejects(a.addPeer({ name: 'd', key: k, keyId: 5 }), /closed/);
  } finally {
    blocker.close();
    await a.close();
    await b.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'a UDP entry removed at run time ends its flows (their replies left from its socket); transparent-mode gateways refuse table changes',
  { timeout: 60_000 },
  async () => {
    const [portA, portB, udpListen] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
    const k = randomBytes(32).toString('hex');
    const echo = (await import('node:dgram')).createSocket('udp4');
    echo.on('message', (m, r) => echo.send(m, r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    const b = await TpoGateway.start({
      config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: k, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
      control: false,
    });
    const a = await TpoGateway.start({
      config: parseTpoConfig({ name: 'a', listen: `127.0.0.1:${portA}`, peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: k, keyId: 1 }] }),
      control: false,
    });
    const client = (await import('node:dgram')).createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    try {
      await until('the pair', () => a.status().peers[0]!.up);
      await a.addTableEntry({ name: 'dns', protocol: 'udp', listen: `127.0.0.1:${udpListen}`, target: `127.0.0.1:${echo.address().port}` });
      const answered = new Promise<string>((r) => client.once('message', (m) => r(m.toString())));
      client.send('ping', udpListen, '127.0.0.1');
      assert.equal(await answered, 'ping', 'the echo came back through the pair');
      assert.equal(a.status().flows.length, 1);
      assert.deepEqual(await a.removeTableEntry('dns'), { name: 'dns', flowsEnded: 1 });
      assert.equal(a.status().flows.length, 0);
      await until('b ends its side', () => b.status().flows.length === 0);

      // Transparent interception's rules are made at start: no run-time table changes (this gateway never starts its rules).
      const t = await TpoGateway.start({
        config: parseTpoConfig({ name: 't', listen: '127.0.0.1:0', intercept: { mode: 'transparent' }, peers: [{ name: 'b', key: k, keyId: 1 }] }),
        control: false,
      });
      try {
        await assert.rejects(
          t.addTableEntry({ protocol: 'tcp', dst: '10.0.0.0/8' }),
          (e: unknown) => e instanceof NotSupportedError && /transparent/.test(e.message),
        );
      } finally {
        await t.close();
      }
    } finally {
      client.close();
      echo.close();
      await a.close();
      await b.close();
    }
  },
);
