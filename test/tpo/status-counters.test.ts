/**
 * `sluice status` shows what a listening socket dropped and why (issue 16:
 * every listening socket is a fuzz target, so an operator must see what
 * hit it): the peer port's receive and send drops (unknown source,
 * truncated, handler failures; queue full, send errors), the port demux's
 * (malformed, no link, no source), and per peer the link's handshake
 * counters (responses sent, the unconfirmed session offer, bad
 * handshakes, no session) and the session's drops by reason. Human output
 * and --json, through the real CLI against a real gateway's control socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTpoConfig } from '../../src/tpo/config/config.js';
import { Gateway } from '../../src/tpo/gateway/gateway.js';
import type { GatewayStatus } from '../../src/tpo/gateway/status.js';
import { startControlServer } from '../../src/tpo/control-socket.js';
import { encodeInitiate } from '../../src/wire/tpo/handshake.js';
import { runCli } from '../../harness/process/cli.js';
import { freeUdpPort } from './gateway-helpers.js';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('sluice status (human and --json) shows the peer port, demux and peer link drop counters', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-status-'));
  const key = randomBytes(32);
  const port = await freeUdpPort();
  const gw = await Gateway.start(parseTpoConfig({ name: 'b', listen: `127.0.0.1:${port}`, peers: [{ name: 'a', key: key.toString('hex'), keyId: 1 }] }), {
    io: 'portable',
  });
  const path = join(dir, 'b.sock');
  const control = await startControlServer(path, () => gw.status());
  const attacker = dgram.createSocket('udp4');
  await new Promise<void>((r) => attacker.bind(0, '127.0.0.1', r));
  try {
    const send = (b: Uint8Array) => attacker.send(b, port, '127.0.0.1');
    // Not version 1: malformed at the demux (3).
    for (let i = 0; i < 3; i++) send(Buffer.from([9, 1, 2, 3, 4, 5, 6, 7, 8]));
    // Transport datagrams for a connection id nobody has: no link (2).
    for (let i = 0; i < 2; i++) send(Buffer.concat([Buffer.from([1, 1, 0, 1, 0, 0, 0x30, 0x39]), randomBytes(40)]));
    // An initiation for the peer's key id under another key: a bad handshake at the link (1).
    send(encodeInitiate(randomBytes(32), { initiatorId: 1, keyId: 1, timestamp: Date.now(), nonce: randomBytes(16) }));
    // A valid initiation nobody confirms (a replay would look the same): one response, an unconfirmed offer.
    send(encodeInitiate(key, { initiatorId: 2, keyId: 1, timestamp: Date.now(), nonce: randomBytes(16) }));
    await until(() => gw.status().port.datagramsReceived >= 7, 10_000, 'the 7 datagrams');

    const json = await runCli(['status', '--socket', path, '--json'], 60_000);
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as GatewayStatus;
    assert.deepEqual(s.demux, { malformed: 3, noLink: 2, noSource: 0 });
    assert.deepEqual(s.port.receiveDropped, { unknownSource: 0, truncated: 0, listenerError: 0 });
    assert.deepEqual(s.port.sendDropped, { queueFull: 0, sendError: 0, closed: 0 });
    assert.equal(s.port.datagramsReceived, 7);
    assert.equal(s.port.datagramsSent, 1, 'the one response');
    const p = s.peers[0]!;
    assert.equal(p.link.responsesSent, 1);
    assert.equal(p.link.unconfirmed, 1);
    assert.equal(p.link.droppedHandshake, 1);
    assert.equal(p.link.droppedNoSession, 0);
    assert.equal(p.link.handlerErrors, 0);
    assert.deepEqual(p.drops, { malformed: 0, otherConnection: 0, unauthenticated: 0, replayed: 0 });
    assert.equal(s.sequencer.heldBytes, 0);

    const human = await runCli(['status', '--socket', path], 60_000);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      /peer port: received 7, sent 1; receive drops: unknownSource=0 truncated=0 handlerFailures=0; send drops: queueFull=0 sendError=0 closed=0/,
    );
    assert.match(human.stdout, /demux drops: malformed=3 noLink=2 noSource=0/);
    const header = human.stdout.split('\n').find((l) => l.startsWith('peer') && l.includes('responses'));
    assert.ok(header, `a table of the link's counters:\n${human.stdout}`);
    const cols = header.split(/\s{2,}/);
    const row = human.stdout.split('\n')[human.stdout.split('\n').indexOf(header) + 2]!.trim().split(/\s+/);
    const at = (name: string) => row[cols.indexOf(name)];
    assert.equal(at('responses'), '1');
    assert.equal(at('unconfirmed'), '1');
    assert.equal(at('bad handshake'), '1');
  } finally {
    attacker.close();
    await control.close();
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
