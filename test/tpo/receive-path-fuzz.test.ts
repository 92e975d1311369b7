/**
 * The TPO peer port's receive path as an attacker sees it (issue 16): the
 * port demux, the peer links behind it (handshake and data mover
 * decoders), fed directly with no safety net, so anything that throws out
 * of an event handler fails here. A paired initiator and responder on an
 * in-memory network get 40,000 hostile datagrams each: random bytes, every
 * kind byte with random bodies, and the pair's own datagrams truncated,
 * extended, bit-flipped and replayed verbatim, from an attacker's
 * addresses. Nothing throws, the attacker gets no byte back, and the
 * session still carries messages byte-exact both ways.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PeerLink } from '../../src/tpo/link/peer-link.js';
import { PortDemux } from '../../src/tpo/link/port-demux.js';
import type { CarriedMessage } from '../../src/wire/tpo/driver-buffer.js';
import { MemoryNet, type MemoryPort } from './memory-port.js';

const A = { address: '10.0.0.1', port: 1000 };
const B = { address: '10.0.0.2', port: 2000 };
const ATTACKER = '10.0.0.66';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A link behind a demux on `port`, as the gateway builds it. */
function demuxedLink(port: MemoryPort, role: 'initiator' | 'responder', psk: Uint8Array, peer?: { address: string; port: number }) {
  const demux = new PortDemux(port);
  const holder: { link?: PeerLink } = {};
  const view = demux.view({
    ownsConnection: (id: number) => holder.link?.ownsConnection(id) ?? false,
    keyId: 7,
    role,
    ...(peer ? { peer } : {}),
  });
  const link = new PeerLink({ port: view, role, psk, keyId: 7, ...(peer ? { peer } : {}), mover: { orderedDelivery: false } });
  holder.link = link;
  return { demux, link };
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

/** A deterministic stream of hostile datagrams built from `seen` (the pair's own traffic). */
function* hostile(seen: readonly Uint8Array[], count: number, seed: number): Generator<Uint8Array> {
  let s = seed >>> 0;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  for (let i = 0; i < count; i++) {
    const pick = rnd(8);
    if (pick === 0) yield randomBytes(rnd(1500));
    else if (pick === 1) {
      // A plausible prefix, any kind, a random body of a random length.
      const d = randomBytes(rnd(1300));
      if (d.length > 0) d[0] = 1;
      if (d.length > 1) d[1] = rnd(5);
      if (d.length > 3) d[2] = d[3] = 0;
      yield d;
    } else {
      const base = seen[rnd(seen.length)]!;
      if (pick === 2) yield base.subarray(0, rnd(base.length + 1));
      else if (pick === 3) {
        const d = new Uint8Array(base.length + 1 + rnd(64));
        d.set(base);
        yield d;
      } else if (pick <= 6) {
        const d = Uint8Array.from(base);
        for (let k = 0, n = 1 + rnd(3); k < n; k++) d[rnd(d.length)]! ^= 1 << rnd(8);
        yield d;
      } else yield base;
    }
  }
}

test(
  '40,000 hostile datagrams at each side of a live pair: nothing throws, nothing answers the attacker, the session still carries messages byte-exact',
  { timeout: 120_000 },
  async () => {
    const net = new MemoryNet();
    const pa = net.port(A.address, A.port);
    const pb = net.port(B.address, B.port);
    const psk = randomBytes(32);
    const b = demuxedLink(pb, 'responder', psk);
    const a = demuxedLink(pa, 'initiator', psk, B);
    const gotB: Uint8Array[] = [];
    const gotA: Uint8Array[] = [];
    b.link.on('message', (_d: number, m: CarriedMessage) => gotB.push(Uint8Array.from(m.data)));
    a.link.on('message', (_d: number, m: CarriedMessage) => gotA.push(Uint8Array.from(m.data)));
    try {
      await until(() => a.link.up && b.link.up, 10_000, 'the pair');
      // Some traffic both ways, so there are transport datagrams with data and acks to mutate.
      for (let i = 0; i < 50; i++) {
        a.link.send(0, message(i, randomBytes(100 + i * 40)));
        b.link.send(0, message(i, randomBytes(100 + i * 40)));
      }
      a.link.flush();
      b.link.flush();
      await until(() => gotA.length === 50 && gotB.length === 50, 10_000, 'the first messages');
      const seen = net.log.map((s) => s.bytes);
      assert.ok(seen.some((d) => d[1] === 2) && seen.some((d) => d[1] === 3) && seen.some((d) => d[1] === 1), 'every kind was captured');
      const sessions = { a: a.link.stats.sessions, b: b.link.stats.sessions };
      let n = 0;
      for (const [port, seed] of [
        [pa, 1],
        [pb, 2],
      ] as const) {
        for (const d of hostile(seen, 40_000, seed)) {
          port.inject(d, { address: ATTACKER, port: 1024 + (n++ % 50_000) });
          // Let timers and the pair's own traffic run now and then.
          if (n % 2000 === 0) await sleep(1);
        }
      }
      await sleep(50);
      assert.equal(net.sentTo(ATTACKER).length, 0, 'the attacker got nothing back');
      assert.deepEqual({ a: a.link.stats.sessions, b: b.link.stats.sessions }, sessions, 'no session was replaced');
      gotA.length = 0;
      gotB.length = 0;
      const toB = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 97) % 3000)));
      const toA = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 89) % 3000)));
      toB.forEach((d, i) => a.link.send(0, message(50 + i, d)));
      toA.forEach((d, i) => b.link.send(0, message(50 + i, d)));
      a.link.flush();
      b.link.flush();
      await until(() => gotA.length === 200 && gotB.length === 200, 20_000, 'messages after the fuzz');
      const key = (d: Uint8Array) => Buffer.from(d).toString('base64');
      assert.deepEqual(gotB.map(key).sort(), toB.map(key).sort(), 'A to B byte-exact');
      assert.deepEqual(gotA.map(key).sort(), toA.map(key).sort(), 'B to A byte-exact');
    } finally {
      a.link.close(false);
      b.link.close(false);
      a.demux.close();
      b.demux.close();
    }
  },
);
