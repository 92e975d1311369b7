/**
 * Issue 19: the TPO failures a new user could not see. Two TpoGateways on
 * loopback (explicit mode, no root):
 *   - keys that differ: the responder says the handshakes fail
 *     authentication, the initiator that the peer does not answer (with
 *     the likely causes), and a client is reset within
 *     limits.sessionWaitMs instead of hanging;
 *   - a peer that is not there at all: the same, from the initiator alone;
 *   - a destination that refuses the connection: the client is reset at
 *     once, and both gateways say why with the flow's tuple.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseTpoConfig, TpoGateway, type TpoFlowFailure, type TpoHandshakeFailure, type TpoPeerUnreachable } from '../../src/tpo/index.js';
import { clientOutcome, collect, freeTcpPort, freeUdpPort, until } from './gateway-helpers.js';

const key = () => randomBytes(32).toString('hex');

test(
  'keys that differ: the responder reports failed authentication, the initiator an unreachable peer, and a client is reset within limits.sessionWaitMs',
  { timeout: 60_000 },
  async () => {
    const [portA, portB, listen] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort()];
    const b = await TpoGateway.start({
      config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: key(), keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
      control: false,
    });
    const handshakes = collect(b, 'handshakefailure') as TpoHandshakeFailure[];
    const a = await TpoGateway.start({
      config: parseTpoConfig({
        name: 'a',
        listen: `127.0.0.1:${portA}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: key(), keyId: 1 }],
        table: [{ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
        limits: { sessionWaitMs: 1000 },
      }),
      control: false,
    });
    const unreachable = collect(a, 'peerunreachable') as TpoPeerUnreachable[];
    const fails = collect(a, 'flowfail') as TpoFlowFailure[];
    try {
      // The client: carried nowhere (no session), reset within the bound instead of hanging.
      const c = await clientOutcome(listen);
      assert.equal(c.outcome, 'reset', 'the client is reset');
      assert.ok(c.ms >= 900 && c.ms < 5_000, `after about limits.sessionWaitMs (1 s): ${Math.round(c.ms)} ms`);
      await until('flowfail noSession', () => fails.length > 0);
      assert.equal(fails[0]!.reason, 'noSession');
      assert.equal(fails[0]!.peer, 'b');
      assert.match(
        fails[0]!.message,
        new RegExp(`flow tcp 127\\.0\\.0\\.1:\\d+ > 127\\.0\\.0\\.1:9: no session with peer b came up within limits\\.sessionWaitMs`),
      );
      assert.equal(a.status().counters.noSession, 1);

      // The side that sees the bad datagrams says the keys differ.
      await until('a handshakefailure at b', () => handshakes.length > 0);
      assert.equal(handshakes[0]!.reason, 'authentication');
      assert.equal(handshakes[0]!.from, `127.0.0.1:${portA}`);
      assert.match(handshakes[0]!.message, /failed authentication: the peers' keys differ/);

      // The side that hears nothing says the peer does not answer, naming it, its address and the likely causes.
      await until('peerunreachable at a', () => unreachable.length > 0);
      const u = unreachable[0]!;
      assert.equal(u.peer, 'b');
      assert.equal(u.address, `127.0.0.1:${portB}`);
      assert.ok(u.attempts >= 5, `after a few handshakes (${u.attempts})`);
      assert.match(
        u.message,
        new RegExp(
          `peer b at 127\\.0\\.0\\.1:${portB} does not answer: \\d+ handshakes unanswered .*keys or keyIds differ.*wrong address or port.*not running`,
        ),
      );
      assert.ok(a.status().peers[0]!.link.unanswered >= 5, 'status shows the unanswered handshakes');
      // Reported with backoff, never per handshake: the next report is 10 s after the first.
      const n = unreachable.length;
      await new Promise((r) => setTimeout(r, 3_000));
      assert.equal(unreachable.length, n, 'no second report within 3 s of the first');
      assert.equal(a.status().peers[0]!.up, false);
    } finally {
      await a.close();
      await b.close();
    }
  },
);

test(
  'a peer that is not there: the initiator reports it unreachable and resets waiting clients; a session that comes up later carries new ones',
  { timeout: 60_000 },
  async () => {
    const [portA, portB, listen] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort()];
    const k = key();
    const a = await TpoGateway.start({
      config: parseTpoConfig({
        name: 'a',
        listen: `127.0.0.1:${portA}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: k, keyId: 1 }],
        table: [{ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
        limits: { sessionWaitMs: 1500 },
      }),
      control: false,
    });
    const unreachable = collect(a, 'peerunreachable') as TpoPeerUnreachable[];
    const fails = collect(a, 'flowfail') as TpoFlowFailure[];
    let b: TpoGateway | undefined;
    try {
      const clients = await Promise.all([clientOutcome(listen), clientOutcome(listen), clientOutcome(listen)]);
      for (const c of clients) {
        assert.equal(c.outcome, 'reset');
        assert.ok(c.ms < 6_000, `reset within the bound: ${Math.round(c.ms)} ms`);
      }
      assert.deepEqual(
        fails.map((f) => f.reason),
        ['noSession', 'noSession', 'noSession'],
      );
      await until('peerunreachable', () => unreachable.length > 0);
      assert.equal(unreachable[0]!.address, `127.0.0.1:${portB}`);

      // The peer starts: the pair forms, and a client now reaches the far side (which refuses port 9: a reset, told at once).
      b = await TpoGateway.start({
        config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: k, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
        control: false,
      });
      await until('a session', () => a.status().peers[0]!.up);
      assert.equal(a.status().peers[0]!.link.unanswered, 0, 'answered: the count starts afresh');
      const c = await clientOutcome(listen);
      assert.equal(c.outcome, 'reset');
      await until('flowfail connectFailed', () => fails.length > 3);
      assert.equal(fails[3]!.reason, 'connectFailed');
    } finally {
      await a.close();
      await b?.close();
    }
  },
);

test('a destination that refuses the connection: the client is reset at once, and both gateways say why with the tuple', { timeout: 60_000 }, async () => {
  const [portA, portB, listen, closed] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort(), await freeTcpPort()];
  const k = key();
  const b = await TpoGateway.start({
    config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: k, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
    control: false,
  });
  const a = await TpoGateway.start({
    config: parseTpoConfig({
      name: 'a',
      listen: `127.0.0.1:${portA}`,
      peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: k, keyId: 1 }],
      table: [{ name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: `127.0.0.1:${closed}` }],
    }),
    control: false,
  });
  const failsA = collect(a, 'flowfail') as TpoFlowFailure[];
  const failsB = collect(b, 'flowfail') as TpoFlowFailure[];
  try {
    await until('the pair', () => a.status().peers[0]!.up);
    const c = await clientOutcome(listen);
    assert.equal(c.outcome, 'reset', 'the client is reset');
    assert.ok(c.ms < 3_000, `promptly: ${Math.round(c.ms)} ms`);
    await until('both flowfails', () => failsA.length > 0 && failsB.length > 0);
    const [fa, fb] = [failsA[0]!, failsB[0]!];
    assert.equal(fa.tuple, fb.tuple, 'both name the flow by its tuple');
    assert.match(fa.tuple!, new RegExp(`^tcp 127\\.0\\.0\\.1:\\d+ > 127\\.0\\.0\\.1:${closed}$`));
    assert.deepEqual(
      { reason: fa.reason, role: fa.role, peer: fa.peer, status: fa.status },
      { reason: 'connectFailed', role: 'source', peer: 'b', status: 'connection refused' },
    );
    assert.deepEqual(
      { reason: fb.reason, role: fb.role, peer: fb.peer, code: fb.code },
      { reason: 'connectFailed', role: 'destination', peer: 'a', code: 'ECONNREFUSED' },
    );
    assert.match(fa.message, new RegExp(`the far gateway b could not connect to 127\\.0\\.0\\.1:${closed} \\(connection refused\\); the client was reset`));
    assert.match(fb.message, new RegExp(`connect to 127\\.0\\.0\\.1:${closed} failed: ECONNREFUSED`));
    assert.equal(a.status().counters.connectFailed, 1);
    assert.equal(b.status().counters.connectFailed, 1);
    assert.equal(a.status().flows.length, 0);
  } finally {
    await a.close();
    await b.close();
  }
});
