/**
 * A peer that holds the pair's key but sends messages no real gateway
 * would (issue #16, item 2): flows to port 0, to broadcast, multicast and
 * unspecified addresses. The delivering gateway must refuse each with a
 * reset (an open-ok with a failure status for TCP) and count it, never
 * crash, and keep carrying honest flows. The "peer" is a bare PeerLink
 * speaking to a real Gateway, so any message can be sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTpoConfig } from '../../src/tpo/config/config.js';
import { Gateway } from '../../src/tpo/gateway/gateway.js';
import { PeerLink } from '../../src/tpo/link/peer-link.js';
import { openDatagramPort } from '../../src/tpo/io/datagram-port.js';
import { LinkEmulator } from '../../harness/wan/udp-emulator.js';
import { message, STATUS, type FlowTuple } from '../../src/tpo/gateway/flow.js';
import { undeliverable } from '../../src/tpo/gateway/destination.js';
import type { CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';
import { freeUdpPort } from './gateway-helpers.js';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A real gateway (destination side, allowing every destination) and a bare peer link with its key. */
/**
 * `delayMs`: through a link emulator with that delay each way. Directly on
 * loopback, with both ends on one busy event loop, the peer's rate control
 * settles at a few Mbit/s (its RTT samples are mostly this loop's delay); a
 * test that must move tens of MiB quickly goes through a WAN-like delay.
 */
async function gatewayAndPeer(delayMs?: number) {
  const key = randomBytes(32);
  const port = await freeUdpPort();
  // The operator allows everything: the refusals below must come from the destination check, not the allow list.
  const gw = await Gateway.start(
    parseTpoConfig({
      name: 'b',
      listen: `127.0.0.1:${port}`,
      peers: [{ name: 'a', key: key.toString('hex'), keyId: 1 }],
      deliver: { allow: ['0.0.0.0/0', '::/0'] },
    }),
    { io: 'portable' },
  );
  const sock = await openDatagramPort({ family: 4, bind: { address: '127.0.0.1', port: 0 }, io: 'portable' });
  const emu = delayMs
    ? await LinkEmulator.create({ peerA: { address: '127.0.0.1', port: sock.address().port }, peerB: { address: '127.0.0.1', port } })
    : undefined;
  emu?.set('both', { delayMs: delayMs! });
  const link = new PeerLink({ port: sock, role: 'initiator', psk: key, keyId: 1, peer: emu ? emu.a : { address: '127.0.0.1', port } });
  const got: CarriedMessage[] = [];
  link.on('message', (_domain: number, m: CarriedMessage) => got.push(m));
  await until(() => link.up, 10_000, 'the handshake');
  return {
    gw,
    link,
    got,
    async close() {
      link.close();
      await sock.close();
      await gw.close();
      await emu?.close();
    },
  };
}

test('destination check: port 0, broadcast, multicast and unspecified addresses are undeliverable; ordinary ones are not', () => {
  for (const [a, p] of [
    ['127.0.0.1', 0],
    ['255.255.255.255', 9],
    ['224.0.0.1', 9],
    ['239.1.2.3', 5000],
    ['0.0.0.0', 80],
    ['::', 80],
    ['ff02::1', 9],
    ['::ffff:224.0.0.1', 9],
    ['::ffff:0.0.0.0', 9],
    ['240.1.1.1', 9],
    ['10.0.0.1', 65536],
    ['not-an-ip', 80],
  ] as const) {
    assert.ok(undeliverable(a, p), `${a}:${p} must be undeliverable`);
  }
  for (const [a, p] of [
    ['127.0.0.1', 9],
    ['10.2.3.4', 65535],
    ['::1', 1],
    ['2001:db8::1', 443],
    ['::ffff:10.0.0.1', 53],
    ['192.168.1.255', 9],
  ] as const) {
    assert.equal(undeliverable(a, p), undefined, `${a}:${p} is an ordinary endpoint`);
  }
});

test(
  'a peer asking for port 0, broadcast, multicast or unspecified destinations gets resets; the gateway keeps carrying honest flows',
  { timeout: 30_000 },
  async () => {
    const echo = dgram.createSocket('udp4');
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address));
    const { gw, link, got, close } = await gatewayAndPeer();
    const errors: unknown[] = [];
    const onUncaught = (err: unknown) => errors.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const bad: FlowTuple[] = [
        { protocol: 'udp', src: { address: '10.9.0.1', port: 4000 }, dst: { address: '127.0.0.1', port: 0 } },
        { protocol: 'udp', src: { address: '10.9.0.1', port: 4001 }, dst: { address: '255.255.255.255', port: 9 } },
        { protocol: 'udp', src: { address: '10.9.0.1', port: 4002 }, dst: { address: '224.0.0.1', port: 9 } },
        { protocol: 'udp', src: { address: '10.9.0.1', port: 4003 }, dst: { address: '0.0.0.0', port: 9 } },
        { protocol: 'tcp', src: { address: '10.9.0.1', port: 4004 }, dst: { address: '127.0.0.1', port: 0 } },
        { protocol: 'tcp', src: { address: '10.9.0.1', port: 4005 }, dst: { address: '224.0.0.1', port: 80 } },
        { protocol: 'tcp', src: { address: '10.9.0.1', port: 4006 }, dst: { address: '0.0.0.0', port: 80 } },
      ];
      for (const t of bad) {
        link.send(0, message(t, t.protocol === 'tcp' ? 'open' : 'data', 0, Buffer.from('x')));
        // A UDP flow's later datagrams too (they would reach a socket that was bound in the meantime).
        if (t.protocol === 'udp') link.send(0, message(t, 'data', 1, Buffer.from('y')));
      }
      link.flush();
      await until(() => got.length >= bad.length, 10_000, 'an answer to every refused flow');
      for (const t of bad) {
        const answer = got.find((m) => m.header.src.port === t.src.port);
        assert.ok(answer, `an answer for ${t.dst.address}:${t.dst.port}`);
        if (t.protocol === 'udp') assert.equal(answer.header.function, 'reset');
        else assert.equal(answer.header.function, 'open-ok');
        assert.notEqual(answer.header.status, STATUS.ok, `${t.protocol} ${t.dst.address}:${t.dst.port} refused`);
      }
      assert.equal(gw.status().counters.refusedUndeliverable, bad.length);
      assert.equal(gw.status().flows.length, 0, 'no flow was made for them');
      // An honest flow still crosses after all of that.
      const ok: FlowTuple = { protocol: 'udp', src: { address: '10.9.0.1', port: 5000 }, dst: { address: '127.0.0.1', port: echo.address().port } };
      link.send(0, message(ok, 'data', 0, Buffer.from('hello')));
      link.flush();
      await until(() => got.some((m) => m.header.src.port === 5000 && m.header.function === 'data'), 10_000, 'the echo');
      assert.equal(Buffer.from(got.find((m) => m.header.src.port === 5000)!.data).toString(), 're:hello');
      await sleep(200);
      assert.deepEqual(errors, [], 'nothing escaped');
    } finally {
      process.off('uncaughtException', onUncaught);
      await close();
      echo.close();
    }
  },
);

test(
  'a peer that leaves a gap in a flow and piles data behind it gets the flow reset (limit); the held bytes are bounded per flow and per peer',
  { timeout: 120_000 },
  async () => {
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
    const sinkPort = sink.address().port;
    const { gw, link, got, close } = await gatewayAndPeer();
    try {
      const MiB = 1 << 20;
      // Zeros: they cross compressed in a few bytes, but the far side holds them raw.
      const chunk = new Uint8Array(32_000);
      const flow = (port: number): FlowTuple => ({ protocol: 'udp', src: { address: '10.9.0.1', port }, dst: { address: '127.0.0.1', port: sinkPort } });
      const pile = async (t: FlowTuple, bytes: number) => {
        link.send(0, message(t, 'data', 0, Buffer.from('start')));
        // Sequence 1 never comes.
        for (let n = 2, sent = 0; sent < bytes; n++, sent += chunk.length) {
          link.send(0, message(t, 'data', n, chunk));
          if (n % 64 === 0) await sleep(1);
        }
        link.flush();
      };
      // One flow: 20 MiB behind a gap, more than a flow may hold (16 MiB).
      const one = flow(6000);
      await pile(one, 20 * MiB);
      await until(() => got.some((m) => m.header.src.port === 6000 && m.header.function === 'reset'), 60_000, 'the reset of the flow that held too much');
      assert.equal(got.find((m) => m.header.src.port === 6000 && m.header.function === 'reset')!.header.status, STATUS.limit);
      assert.equal(gw.status().counters.heldOverflow, 1);
      assert.ok(gw.status().counters.heldDropped > 0);
      // Five flows of 15 MiB each: under the flow's bound, over the peer's (64 MiB) together.
      for (let i = 0; i < 5; i++) await pile(flow(7000 + i), 15 * MiB);
      await until(() => got.some((m) => m.header.src.port >= 7000 && m.header.function === 'reset'), 60_000, "a reset for the peer's bound");
      await sleep(200);
      assert.equal(gw.status().counters.heldOverflow, 2, "one flow reset for the peer's bound: the largest holder");
      const resets = got.filter((m) => m.header.src.port >= 7000 && m.header.function === 'reset');
      assert.deepEqual(
        resets.map((m) => m.header.src.port),
        [7000],
        'the first flow, the largest holder when the fifth came',
      );
      assert.ok(resets.every((m) => m.header.status === STATUS.limit));
      // An honest flow still crosses.
      const ok = flow(8000);
      const next = new Promise<string>((r) => sink.on('message', (m) => m.toString() === 'honest' && r('ok')));
      link.send(0, message(ok, 'data', 0, Buffer.from('honest')));
      link.flush();
      assert.equal(await next, 'ok');
    } finally {
      await close();
      sink.close();
    }
  },
);

test(
  'a peer that sends beyond the 4 MiB flow window gets the flow reset (limit) and counted; a destination that does not read never makes the gateway hold more',
  { timeout: 60_000 },
  async () => {
    // A server that accepts and never reads.
    const accepted: net.Socket[] = [];
    const srv = net.createServer({ pauseOnConnect: true }, (s) => {
      accepted.push(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const { gw, link, got, close } = await gatewayAndPeer(5);
    try {
      const t: FlowTuple = { protocol: 'tcp', src: { address: '10.9.0.1', port: 9100 }, dst: { address: '127.0.0.1', port } };
      link.send(0, message(t, 'open', 0));
      // 24 MiB at once, never waiting for a window message: an honest gateway stops at 4 MiB beyond what
      // the application took. The kernel takes some of it for the application (socket buffers, a few
      // MiB on loopback), and the gateway grants that back; the rest is over the window.
      const chunk = randomBytes(16 * 1024);
      for (let n = 1; n <= 1536; n++) {
        link.send(0, message(t, 'data', n, chunk));
        if (n % 32 === 0) await sleep(1);
      }
      link.flush();
      await until(() => got.some((m) => m.header.src.port === 9100 && m.header.function === 'reset'), 30_000, 'the reset');
      const reset = got.find((m) => m.header.src.port === 9100 && m.header.function === 'reset')!;
      assert.equal(reset.header.status, STATUS.limit);
      assert.equal(gw.status().counters.windowExceeded, 1);
      assert.equal(gw.status().flows.length, 0, 'the flow is gone, and what it buffered with it');
      // The application's connection ends too (the gateway resets it; a receiver that had not read sees
      // the reset on Linux as an early end of the stream): it is not left waiting with a part.
      assert.equal(accepted.length, 1);
      let read = 0;
      accepted[0]!.on('data', (d: Buffer) => (read += d.length));
      accepted[0]!.resume();
      await until(() => accepted[0]!.destroyed, 10_000, "the server's connection to end");
      assert.ok(read < 1536 * chunk.length, `the server read ${read} bytes`);
    } finally {
      await close();
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  },
);
