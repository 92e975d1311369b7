/**
 * Replayed initiations (issue 16, item 13). An initiation captured off the
 * wire authenticates for as long as its timestamp is fresh, and a
 * restarted responder has forgotten which ones it answered. What an
 * unauthenticated sender may get: at most one response per initiation, no
 * larger than it, and nothing else (no keepalives, no data, no
 * retransmissions), because a responder's session is unconfirmed until the
 * initiator's first authenticated transport datagram; and a replay never
 * displaces a live session. Pairing and re-pairing after real restarts of
 * either side still work.
 *
 * In-memory network (memory-port.ts), peer links behind the port demux as
 * in the gateway; the attacker injects datagrams from its own address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PeerLink } from '../../src/tpo/link/peer-link.js';
import { PortDemux } from '../../src/tpo/link/port-demux.js';
import { encodeInitiate, INITIATE_LENGTH } from '../../src/wire/tpo/handshake.js';
import type { CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';
import { MemoryNet, type MemoryPort } from './memory-port.js';
import { freeTcpPort, startPair } from './gateway-helpers.js';

const A = { address: '10.0.0.1', port: 1000 };
const B = { address: '10.0.0.2', port: 2000 };
const ATTACKER = { address: '10.0.0.66', port: 4444 };
const KEY_ID = 7;
/** Short liveness times so the tests see several keepalive periods and a dead peer quickly. */
const MOVER = { keepaliveMs: 250, deadAfterMs: 1200 };

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

interface Side {
  port: MemoryPort;
  demux: PortDemux;
  link: PeerLink;
  got: Uint8Array[];
  close(goodbye?: boolean): Promise<void>;
}

/** A link behind a demux on a new port at `at`, as the gateway builds it. */
function side(
  net: MemoryNet,
  at: { address: string; port: number },
  role: 'initiator' | 'responder',
  psk: Uint8Array,
  peer?: { address: string; port: number },
): Side {
  const port = net.port(at.address, at.port);
  const demux = new PortDemux(port);
  const holder: { link?: PeerLink } = {};
  const view = demux.view({
    ownsConnection: (id: number) => holder.link?.ownsConnection(id) ?? false,
    keyId: KEY_ID,
    role,
    ...(peer ? { peer } : {}),
  });
  const link = new PeerLink({ port: view, role, psk, keyId: KEY_ID, ...(peer ? { peer } : {}), mover: { ...MOVER, orderedDelivery: false } });
  holder.link = link;
  const got: Uint8Array[] = [];
  link.on('message', (_d: number, m: CarriedMessage) => got.push(Uint8Array.from(m.data)));
  return {
    port,
    demux,
    link,
    got,
    async close(goodbye = false) {
      link.close(goodbye);
      demux.close();
      await port.close();
    },
  };
}

const message = (seq: number, data: Uint8Array): CarriedMessage => ({
  header: {
    function: 'data',
    protocol: 'udp',
    sequence: seq,
    src: { address: '192.0.2.1', port: 5000 },
    dst: { address: '198.51.100.1', port: 53 },
    status: 0,
    dataLength: data.length,
  },
  data,
});

/** Sends `n` messages each way and waits for all of them. */
async function exchange(a: Side, b: Side, n = 20): Promise<void> {
  const ga = a.got.length;
  const gb = b.got.length;
  for (let i = 0; i < n; i++) {
    a.link.send(0, message(i, randomBytes(300)));
    b.link.send(0, message(i, randomBytes(300)));
  }
  a.link.flush();
  b.link.flush();
  await until(() => a.got.length === ga + n && b.got.length === gb + n, 10_000, 'messages both ways');
}

const initiations = (net: MemoryNet) => net.log.filter((s) => s.bytes[1] === 2 && s.bytes.length === INITIATE_LENGTH).map((s) => s.bytes);

test('after a responder restart, a replayed initiation draws one response no larger than itself, and nothing else', { timeout: 30_000 }, async () => {
  const net = new MemoryNet();
  const psk = randomBytes(32);
  let b = side(net, B, 'responder', psk);
  const a = side(net, A, 'initiator', psk, B);
  try {
    await until(() => a.link.up && b.link.up, 5_000, 'the pair');
    await exchange(a, b);
    const captured = initiations(net);
    assert.ok(captured.length >= 1);
    // B restarts (crash: no goodbye) and an attacker replays the initiation at once. A cannot
    // reach B for a while (so it cannot re-pair yet): whatever B sends now is for the replayer.
    await b.close(false);
    net.connected = false;
    b = side(net, B, 'responder', psk);
    const replay = captured.at(-1)!;
    b.port.inject(replay, ATTACKER);
    b.port.inject(replay, ATTACKER);
    // Several keepalive periods: an unconfirmed session sends nothing.
    await sleep(6 * MOVER.keepaliveMs);
    const toAttacker = net.sentTo(ATTACKER.address);
    assert.ok(toAttacker.length <= 1, `${toAttacker.length} datagrams went to the replaying address`);
    for (const s of toAttacker) assert.ok(s.bytes.length <= replay.length, 'the response is no larger than the initiation');
    assert.equal(b.link.stats.sessions, 0, 'no session on a replay');
    net.connected = true;
    // The real initiator notices the dead session, re-pairs, and the pair carries messages.
    await until(() => a.link.up && b.link.up, 10_000, 'the re-pair');
    await exchange(a, b);
    assert.ok(net.sentTo(ATTACKER.address).length <= 1, 'still nothing more for the replaying address');
  } finally {
    await a.close();
    await b.close();
  }
});

test('a live session survives replays of every initiation captured before a restart, and of the one that made it', { timeout: 30_000 }, async () => {
  const net = new MemoryNet();
  const psk = randomBytes(32);
  let b = side(net, B, 'responder', psk);
  const a = side(net, A, 'initiator', psk, B);
  try {
    await until(() => a.link.up && b.link.up, 5_000, 'the pair');
    const before = initiations(net);
    // B restarts with a goodbye: A re-pairs at once.
    await b.close(true);
    b = side(net, B, 'responder', psk);
    await until(() => a.link.up && b.link.up && a.link.stats.sessions === 2, 10_000, 'the re-pair');
    await exchange(a, b);
    const sessions = b.link.stats.sessions;
    const all = initiations(net);
    // Replays from the attacker's address and from A's own (a spoofed source), older ones first.
    for (const d of [...before, ...all, ...before]) {
      b.port.inject(d, ATTACKER);
      b.port.inject(d, A);
    }
    await sleep(3 * MOVER.keepaliveMs);
    assert.equal(net.sentTo(ATTACKER.address).length, 0, 'no replay of an initiation older than the live session is answered');
    assert.equal(b.link.stats.sessions, sessions, 'the session was not replaced');
    assert.ok(a.link.up && b.link.up);
    await exchange(a, b);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a flood of forged and replayed initiations: at most one response each, one unconfirmed session at most, nothing else', { timeout: 30_000 }, async () => {
  const net = new MemoryNet();
  const psk = randomBytes(32);
  let b = side(net, B, 'responder', psk);
  const a = side(net, A, 'initiator', psk, B);
  try {
    await until(() => a.link.up && b.link.up, 5_000, 'the pair');
    // Some initiations: the link goes down and A retries a few times.
    net.connected = false;
    await until(() => initiations(net).length >= 4, 10_000, 'retries');
    const captured = initiations(net);
    a.link.close(false);
    net.connected = true;
    await b.close(false);
    b = side(net, B, 'responder', psk);
    let forged = 0;
    for (let round = 0; round < 5; round++) {
      for (const d of captured) b.port.inject(d, ATTACKER);
      for (let i = 0; i < 400; i++, forged++) {
        const f = encodeInitiate(randomBytes(32), { initiatorId: i + 1, keyId: KEY_ID, timestamp: Date.now(), nonce: randomBytes(16) });
        b.port.inject(f, ATTACKER);
      }
      assert.ok(b.link.unconfirmed <= 1, 'at most one unconfirmed session');
    }
    await sleep(4 * MOVER.keepaliveMs);
    const toAttacker = net.sentTo(ATTACKER.address);
    assert.ok(
      toAttacker.length <= captured.length,
      `${toAttacker.length} responses to ${captured.length} distinct captured initiations (and ${forged} forged ones)`,
    );
    assert.ok(
      toAttacker.every((s) => s.bytes[1] === 3 && s.bytes.length <= INITIATE_LENGTH),
      'responses only, each smaller than an initiation',
    );
    assert.equal(b.link.stats.sessions, 0, 'no session');
  } finally {
    await a.close();
    await b.close();
  }
});

test('the initiator restarts: the responder keeps its session until the new one is confirmed, then switches; messages flow', { timeout: 30_000 }, async () => {
  const net = new MemoryNet();
  const psk = randomBytes(32);
  const b = side(net, B, 'responder', psk);
  let a = side(net, A, 'initiator', psk, B);
  try {
    await until(() => a.link.up && b.link.up, 5_000, 'the pair');
    await exchange(a, b);
    await a.close(false);
    a = side(net, A, 'initiator', psk, B);
    await until(() => a.link.up && b.link.stats.sessions === 2, 10_000, 'the new session');
    await exchange(a, b);
    assert.equal(b.link.unconfirmed, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

test(
  'gateways: after the responding gateway restarts, an initiation replayed from another address gets one response at most and no keepalives; the pair re-forms',
  { timeout: 60_000 },
  async () => {
    const listen = await freeTcpPort();
    const pair = await startPair({ table: [{ protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }] });
    const attacker = dgram.createSocket('udp4');
    attacker.on('error', () => {});
    await new Promise<void>((r) => attacker.bind(0, '127.0.0.1', r));
    const got: Buffer[] = [];
    attacker.on('message', (m) => got.push(m));
    try {
      const peerA = pair.configB.peers[0]!;
      await pair.restartB(true);
      // What an eavesdropper captured from A a moment ago: an authentic initiation, still fresh.
      const replay = encodeInitiate(peerA.key, { initiatorId: 12345, keyId: peerA.keyId, timestamp: Date.now() - 500, nonce: randomBytes(16) });
      attacker.send(replay, pair.b.address().port, '127.0.0.1');
      attacker.send(replay, pair.b.address().port, '127.0.0.1');
      // B's keepalives would come every second; A notices B's restart only after 5 s of silence.
      await sleep(3_000);
      assert.ok(got.length <= 1, `${got.length} datagrams came back to the replaying address`);
      for (const g of got) assert.ok(g.length <= replay.length);
      await until(() => pair.a.status().peers[0]!.up && pair.b.status().peers[0]!.up, 20_000, 'the pair to re-form');
      assert.ok(got.length <= 1, 'still nothing more');
    } finally {
      await new Promise<void>((r) => attacker.close(() => r()));
      await pair.close();
    }
  },
);
