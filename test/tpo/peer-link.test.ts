/**
 * Two gateways' links over UDP through the link emulator: the handshake
 * completes under loss, messages of several flows cross byte-exact and in
 * order, a responder that restarts gets a new session from the next
 * initiation, and forged or foreign handshakes get no answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PeerLink } from '../../src/tpo/link/peer-link.js';
import { segmentSizeForMtu } from '../../src/tpo/protocol/data-mover.js';
import { LinkEmulator } from '../../harness/wan/udp-emulator.js';
import { STARTUP_GAIN } from '../../src/tpo/protocol/rate-control.js';
import { encodeInitiate } from '../../src/wire/tpo/handshake.js';
import { openDatagramPort, type DatagramPort } from '../../src/tpo/io/datagram-port.js';
import type { CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';

/** A port on 127.0.0.1 ('auto': the batched kind where this host has it, as a gateway would). */
function bind(io: 'auto' | 'portable' = 'auto'): Promise<DatagramPort> {
  return openDatagramPort({ family: 4, bind: { address: '127.0.0.1', port: 0 }, io, socketBufferBytes: 4 << 20 });
}

const message = (flow: number, seq: number, data: Uint8Array): CarriedMessage => ({
  header: {
    function: 'data',
    protocol: 'tcp',
    sequence: seq,
    src: { address: '192.0.2.1', port: 40000 + flow },
    dst: { address: '198.51.100.1', port: 443 },
    status: 0,
    dataLength: data.length,
  },
  data,
});

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** An initiator A and a responder B on two ports, the link emulator between them (B answers to the emulator's b side: that is where A's datagrams come from). */
async function emulatedLinks(io: 'auto' | 'portable', seed: number, path: { delayMs: number; loss?: number }) {
  const sa = await bind(io);
  const sb = await bind(io);
  const emu = await LinkEmulator.create({
    seed,
    peerA: { address: '127.0.0.1', port: sa.address().port },
    peerB: { address: '127.0.0.1', port: sb.address().port },
  });
  emu.set('both', path);
  const psk = randomBytes(32);
  const b = new PeerLink({ port: sb, role: 'responder', psk });
  const a = new PeerLink({ port: sa, role: 'initiator', psk, peer: emu.a });
  return {
    a,
    b,
    emu,
    async close(): Promise<void> {
      a.close();
      b.close();
      await emu.close();
      await sa.close();
      await sb.close();
    },
  };
}

const MESSAGES = 600;

for (const io of ['auto', 'portable'] as const)
  test(`${io} ports: handshake under 10 % loss, then 3 flows of messages byte-exact and in order`, { timeout: 60_000 }, async () => {
    const links = await emulatedLinks(io, 5, { delayMs: 10, loss: 0.1 });
    const { a, b } = links;
    try {
      const got = new Map<number, { seq: number[]; hash: ReturnType<typeof createHash> }>();
      b.on('message', (_domain: number, m: CarriedMessage) => {
        const flow = m.header.src.port - 40000;
        const g = got.get(flow) ?? { seq: [], hash: createHash('sha256') };
        got.set(flow, g);
        g.seq.push(m.header.sequence);
        g.hash.update(m.data);
      });
      const sent = new Map<number, ReturnType<typeof createHash>>();
      // 600 messages (~240 KB): enough for many retransmissions under 10 %
      // loss in every flow, small enough that a busy machine (CI: 2 cores,
      // other work) finishes well inside the deadline, which only catches a
      // hang. Throughput under loss is the bench's (npm run bench, tpo suite).
      for (let i = 0; i < MESSAGES; i++) {
        const flow = i % 3;
        const data = randomBytes(50 + (i % 700));
        (sent.get(flow) ?? sent.set(flow, createHash('sha256')).get(flow)!).update(data);
        if (!a.send(flow, message(flow, Math.floor(i / 3), data))) await new Promise((r) => a.once('drain', r));
      }
      a.flush();
      await until(() => [...got.values()].reduce((n, g) => n + g.seq.length, 0) === MESSAGES, 50_000, 'all messages');
      assert.equal(a.stats.sessions, 1);
      assert.equal(b.stats.sessions >= 1, true);
      for (const [flow, h] of sent) {
        const g = got.get(flow)!;
        assert.deepEqual(
          g.seq,
          Array.from({ length: MESSAGES / 3 }, (_, k) => k),
          `flow ${flow} in order`,
        );
        assert.equal(g.hash.digest('hex'), h.digest('hex'), `flow ${flow} byte-exact`);
      }
    } finally {
      await links.close();
    }
  });

test('forged, stale and foreign-key initiations get no answer', { timeout: 20_000 }, async () => {
  const sb = await bind();
  const attacker = await bind();
  const psk = randomBytes(32);
  const b = new PeerLink({ port: sb, role: 'responder', psk });
  // What the attacker gets back: the one handshake response, and nothing else (the session it offers is never confirmed).
  const answers: Buffer[] = [];
  attacker.on('message', (m: Buffer) => answers.push(m));
  const responses = () => answers.filter((m) => m.length === 60 && m[1] === 3).length;
  try {
    const to = sb.address();
    const send = (d: Uint8Array) => attacker.send(d, to);
    send(encodeInitiate(randomBytes(32), { initiatorId: 1, keyId: 0, timestamp: Date.now(), nonce: randomBytes(16) })); // another key
    send(encodeInitiate(psk, { initiatorId: 1, keyId: 0, timestamp: Date.now() - 120_000, nonce: randomBytes(16) })); // stale
    send(encodeInitiate(psk, { initiatorId: 1, keyId: 9, timestamp: Date.now(), nonce: randomBytes(16) })); // another key id
    send(randomBytes(1200));
    const good = encodeInitiate(psk, { initiatorId: 1, keyId: 0, timestamp: Date.now(), nonce: randomBytes(16) });
    send(good);
    await until(() => responses() === 1, 5000, 'the one authentic initiation answered');
    send(good); // a replay of it
    await sleep(1500);
    assert.equal(responses(), 1, 'only the authentic, fresh initiation was answered');
    assert.equal(answers.length, 1, 'no keepalive or anything else follows the response');
    assert.equal(b.stats.sessions, 0, 'a session only once the initiator confirms it');
    assert.equal(b.unconfirmed, 1);
    assert.equal(b.stats.droppedHandshake, 4 + 1);
  } finally {
    b.close();
    await sb.close();
    await attacker.close();
  }
});

test('the responder restarts: the initiator sees the peer down, makes a new session, and messages flow again', { timeout: 30_000 }, async () => {
  const sa = await bind();
  const sb = await bind();
  const psk = randomBytes(32);
  const mover = { deadAfterMs: 600, keepaliveMs: 100 };
  let b = new PeerLink({ port: sb, role: 'responder', psk, mover });
  const a = new PeerLink({ port: sa, role: 'initiator', psk, peer: { address: '127.0.0.1', port: sb.address().port }, mover });
  try {
    let got = 0;
    const count = () => got++;
    b.on('message', count);
    const payload = randomBytes(200);
    a.send(0, message(0, 0, payload));
    a.flush();
    await until(() => got === 1, 5000, 'the first message');
    // The responder restarts: a new PeerLink on the same port, without the old session.
    b.close();
    b = new PeerLink({ port: sb, role: 'responder', psk, mover });
    b.on('message', count);
    const events: string[] = [];
    a.on('down', () => events.push('down'));
    a.on('session', () => events.push('session'));
    await until(() => events.includes('session'), 10_000, 'a new session');
    assert.deepEqual(events.slice(0, 2), ['down', 'session']);
    assert.equal(a.stats.sessions, 2);
    a.send(0, message(0, 1, payload));
    a.flush();
    await until(() => got === 2, 5000, 'a message in the new session');
  } finally {
    a.close();
    b.close();
    await sa.close();
    await sb.close();
  }
});

test('the initiator seeds its session with the handshake round trip, so the first flight is paced over it', { timeout: 60_000 }, async () => {
  // Bounds from what this test sees, not from a quiet machine: the handshake's round trip lies
  // between the emulated path's (80 ms: the emulator never delivers early) and the time from
  // before the links existed to the session's start.
  const t0 = performance.now();
  const links = await emulatedLinks('auto', 9, { delayMs: 40 });
  const { a, b } = links;
  let sessionAt = 0;
  a.once('session', () => (sessionAt = performance.now()));
  try {
    await until(() => a.up && b.up, 30_000, 'the session');
    const mover = a.mover!;
    // No data has crossed yet: the only sample is the handshake's (80 ms and the two sides' work).
    assert.ok(mover.rtt.hasSamples, 'seeded before any data crossed');
    assert.ok(mover.rtt.minRttMs >= 79 && mover.rtt.minRttMs <= sessionAt - t0, `handshake RTT ${mover.rtt.minRttMs} ms, session after ${sessionAt - t0} ms`);
    // Startup paces the initial window (10 datagrams) over that round trip, whatever it was.
    const window = 10 * 1350;
    assert.ok(
      (mover.rate.pacingRateBps * mover.rtt.minRttMs) / 1000 >= STARTUP_GAIN * window,
      `start rate ${mover.rate.pacingRateBps} B/s over ${mover.rtt.minRttMs} ms`,
    );
    assert.equal(b.mover!.rtt.hasSamples, false, 'the responder has no round trip of its own yet');
  } finally {
    await links.close();
  }
});

for (const io of ['auto', 'portable'] as const)
  test(`${io} ports: a link that closes says goodbye, and its peer notices at once (not after the dead-peer time)`, { timeout: 20_000 }, async () => {
    const sa = await bind(io);
    const sb = await bind(io);
    const psk = randomBytes(32);
    // A dead-peer time longer than the test: only the goodbye can bring the initiator's link down.
    const mover = { deadAfterMs: 600_000 };
    const b = new PeerLink({ port: sb, role: 'responder', psk, mover });
    const a = new PeerLink({ port: sa, role: 'initiator', psk, peer: { address: '127.0.0.1', port: sb.address().port }, mover });
    try {
      await until(() => a.up && b.up, 10_000, 'the session');
      let down = false;
      const events: string[] = [];
      a.once('down', () => (down = true));
      a.on('reset', () => events.push('reset'));
      a.on('down', () => events.push('down'));
      // As a stopping gateway does: the link's goodbye, then its port closes right away.
      b.close();
      await sb.close();
      await until(() => down, 15_000, 'the initiator noticing the goodbye');
      assert.equal(a.stats.goodbyes, 1, 'it heard the goodbye');
      // Nothing was in flight, yet the peer's flows are gone: the gateway must be told to reset them, before 'down'.
      assert.deepEqual(events, ['reset', 'down']);
      assert.equal(a.up, false);
    } finally {
      a.close();
      b.close();
      await sa.close();
      await sb.close();
    }
  });

test(
  'datagrams are sized to the path: a whole driver buffer per datagram to a loopback peer by default, the configured MTU otherwise; either side may differ',
  { timeout: 60_000 },
  async () => {
    assert.equal(segmentSizeForMtu(1500, 4), 1350, 'the default segment is what a 1500-byte MTU gives');
    assert.equal(segmentSizeForMtu(1500, 6), 1330);
    assert.equal(segmentSizeForMtu(9000, 4), 8850);
    assert.ok(segmentSizeForMtu(65_535, 4) + 150 <= 65_507, 'never above the largest UDP payload');
    for (const [mtuA, mtuB] of [
      [undefined, undefined],
      [1500, undefined],
      [1280, 1500],
    ] as const) {
      const sa = await bind();
      const sb = await bind();
      const largest = (port: DatagramPort) => {
        const sizes = { max: 0 };
        const send = port.send.bind(port);
        port.send = (d, to) => {
          sizes.max = Math.max(sizes.max, d.length);
          send(d, to);
        };
        return sizes;
      };
      const fromA = largest(sa);
      const fromB = largest(sb);
      const psk = randomBytes(32);
      const b = new PeerLink({ port: sb, role: 'responder', psk, ...(mtuB ? { mtu: mtuB } : {}) });
      const a = new PeerLink({ port: sa, role: 'initiator', psk, peer: { address: '127.0.0.1', port: sb.address().port }, ...(mtuA ? { mtu: mtuA } : {}) });
      try {
        const hashes = { a: createHash('sha256'), b: createHash('sha256'), gotA: createHash('sha256'), gotB: createHash('sha256') };
        let atB = 0;
        let atA = 0;
        b.on('message', (_d: number, m: CarriedMessage) => {
          hashes.gotB.update(m.data);
          atB++;
        });
        a.on('message', (_d: number, m: CarriedMessage) => {
          hashes.gotA.update(m.data);
          atA++;
        });
        // 2 MB each way, in 20 KB messages.
        for (let i = 0; i < 100; i++) {
          const x = randomBytes(20_000);
          const y = randomBytes(20_000);
          hashes.a.update(x);
          hashes.b.update(y);
          if (!a.send(0, message(0, i, x))) await new Promise((r) => a.once('drain', r));
          if (!b.send(0, message(1, i, y))) await new Promise((r) => b.once('drain', r));
        }
        a.flush();
        b.flush();
        await until(() => atB === 100 && atA === 100, 50_000, 'both directions');
        assert.equal(hashes.gotB.digest('hex'), hashes.a.digest('hex'));
        assert.equal(hashes.gotA.digest('hex'), hashes.b.digest('hex'));
        // A configured MTU: datagrams fill it. Loopback's default (65535): a datagram carries a whole
        // driver buffer (here one 20 KB message each), larger than a jumbo (9000-byte) path's.
        const fits = (max: number, mtu: number | undefined) =>
          mtu ? max <= mtu - 28 && max > mtu - 28 - 200 : max <= 65_507 && max > 20_000 && max > 9000 - 28;
        assert.ok(fits(fromA.max, mtuA), `A's largest datagram ${fromA.max} for MTU ${mtuA ?? 'default'}`);
        assert.ok(fits(fromB.max, mtuB), `B's largest datagram ${fromB.max} for MTU ${mtuB ?? 'default'}`);
      } finally {
        a.close();
        b.close();
        await sa.close();
        await sb.close();
      }
    }
  },
);

test(
  'a peer that crashed (no goodbye) and came back resets the flows even with nothing in flight; one that was only unreachable does not',
  { timeout: 60_000 },
  async () => {
    const mover = { deadAfterMs: 600, keepaliveMs: 100 };
    const psk = randomBytes(32);
    // The responder crashes, then the initiator.
    for (const crashing of ['responder', 'initiator'] as const) {
      const sa = await bind();
      const sb = await bind();
      const open = (role: 'initiator' | 'responder') =>
        role === 'responder'
          ? new PeerLink({ port: sb, role, psk, mover })
          : new PeerLink({ port: sa, role, psk, peer: { address: '127.0.0.1', port: sb.address().port }, mover });
      let a = open('initiator');
      let b = open('responder');
      try {
        let got = 0;
        b.on('message', () => got++);
        a.send(0, message(0, 0, randomBytes(100)));
        a.flush();
        await until(() => got === 1 && a.mover?.idle === true && b.mover?.idle === true, 5000, 'the first message, acknowledged');
        const survivor = crashing === 'responder' ? a : b;
        const resets: unknown[] = [];
        survivor.on('reset', (r: unknown) => resets.push(r));
        const sessions = survivor.stats.sessions;
        if (crashing === 'responder') {
          b.close(false);
          b = open('responder');
        } else {
          a.close(false);
          a = open('initiator');
        }
        await until(() => survivor.stats.sessions > sessions, 15_000, 'a session with the restarted peer');
        assert.equal(resets.length, 1, `the ${crashing}'s restart resets the survivor's flows`);
      } finally {
        a.close();
        b.close();
        await sa.close();
        await sb.close();
      }
    }
    // Unreachable for longer than the dead time, then back: the same two links, so no reset.
    const links = await emulatedLinks('auto', 9, { delayMs: 5 });
    try {
      let got = 0;
      links.b.on('message', () => got++);
      links.a.send(0, message(0, 0, randomBytes(100)));
      links.a.flush();
      await until(() => got === 1, 5000, 'the first message');
      const resets: unknown[] = [];
      links.a.on('reset', (r: unknown) => resets.push(r));
      links.b.on('reset', (r: unknown) => resets.push(r));
      let down = false;
      links.a.on('down', () => (down = true));
      links.emu.set('both', { delayMs: 5, loss: 1 });
      await until(() => down, 10_000, 'the initiator to see the peer down');
      links.emu.set('both', { delayMs: 5, loss: 0 });
      links.a.send(0, message(0, 1, randomBytes(100)));
      links.a.flush();
      await until(() => got === 2, 15_000, 'a message after the outage');
      assert.deepEqual(resets, [], 'flows of peers that did not restart carry on');
    } finally {
      await links.close();
    }
  },
);
