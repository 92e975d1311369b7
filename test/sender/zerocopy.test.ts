/**
 * MSG_ZEROCOPY in the batched engine's segmented write: the error-queue
 * parser on hand-built control data, and writes on loopback.
 *
 * On loopback (and on a veth into another namespace) the kernel cannot let
 * a receiver hold the sender's pages for an unbounded time, so every
 * zerocopy packet looped to a local socket gets a deferred copy and its
 * completion says so (SO_EE_CODE_ZEROCOPY_COPIED; msg_zerocopy.rst,
 * "Loopback"). These tests assert exactly that: what they check is the
 * bookkeeping (every send completed before the write resolved, every byte
 * delivered), not that copies were avoided.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Sluice, probeTiers, type WriteResult } from '../../src/index.js';
import { openReceiver as open, type Receiver } from '../../harness/traffic/udp.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { enableZeroCopy, parseZeroCopyNotifications, ZeroCopyCompletions } from '../../src/sys/zerocopy.js';
import { RawUdpSocket } from '../../src/sys/udp-socket.js';
import { IP_RECVERR, IPV6_RECVERR, SOL_IP, SOL_IPV6, SOL_SOCKET } from '../../src/sys/constants.js';

// ---- the parser ----

interface Cmsg {
  level: number;
  type: number;
  /** sock_extended_err fields; payload bytes after it (the offender sockaddr) pad the cmsg. */
  ee?: { errno?: number; origin: number; code?: number; info: number; data: number };
  payload?: number;
  /** Override cmsg_len (malformed input). */
  len?: number;
}

/** Lays out cmsgs as the kernel does: 16-byte header, data, padding to 8. */
function control(...cmsgs: Cmsg[]): Uint8Array {
  const sizes = cmsgs.map((c) => 16 + (c.payload ?? 16));
  const total = sizes.reduce((n, s) => n + ((s + 7) & ~7), 0);
  const b = new Uint8Array(total);
  const v = new DataView(b.buffer);
  let off = 0;
  cmsgs.forEach((c, i) => {
    v.setUint32(off, c.len ?? sizes[i]!, true);
    v.setInt32(off + 8, c.level, true);
    v.setInt32(off + 12, c.type, true);
    if (c.ee && (c.payload ?? 16) >= 16) {
      v.setUint32(off + 16, c.ee.errno ?? 0, true);
      v.setUint8(off + 20, c.ee.origin);
      v.setUint8(off + 22, c.ee.code ?? 0);
      v.setUint32(off + 24, c.ee.info, true);
      v.setUint32(off + 28, c.ee.data, true);
    }
    off += (sizes[i]! + 7) & ~7;
  });
  return b;
}

const ZC = 5;
// As the kernel sends them: sock_extended_err + the offender sockaddr_in (16) / sockaddr_in6 (28).
const v4 = (info: number, data: number, code = 0): Cmsg => ({ level: SOL_IP, type: IP_RECVERR, ee: { origin: ZC, code, info, data }, payload: 32 });
const v6 = (info: number, data: number, code = 0): Cmsg => ({ level: SOL_IPV6, type: IPV6_RECVERR, ee: { origin: ZC, code, info, data }, payload: 44 });

test('parser: IPv4 and IPv6 completions decode to inclusive ranges, COPIED flag read from ee_code', () => {
  assert.deepEqual(parseZeroCopyNotifications(control(v4(0, 9))), { ranges: [{ first: 0, last: 9, count: 10, copied: false }], ignored: 0, malformed: 0 });
  assert.deepEqual(parseZeroCopyNotifications(control(v6(10, 10, 1))), { ranges: [{ first: 10, last: 10, count: 1, copied: true }], ignored: 0, malformed: 0 });
  // Several cmsgs in one buffer, each 8-aligned (the IPv6 one is 60 bytes, padded to 64).
  const two = parseZeroCopyNotifications(control(v6(0, 3), v4(4, 7, 1)));
  assert.deepEqual(
    two.ranges.map((r) => [r.first, r.last, r.count, r.copied]),
    [
      [0, 3, 4, false],
      [4, 7, 4, true],
    ],
  );
  // The u32 counter wraps: [2^32 - 2, 1] is four sends.
  assert.equal(parseZeroCopyNotifications(control(v4(0xffff_fffe, 1))).ranges[0]!.count, 4);
});

test('parser: other cmsgs and other error origins are ignored, not counted as completions', () => {
  const p = parseZeroCopyNotifications(
    control(
      { level: SOL_SOCKET, type: 37 /* SCM_TIMESTAMPING */, payload: 48 },
      { level: SOL_IP, type: IP_RECVERR, ee: { errno: 113, origin: 2 /* ICMP */, info: 0, data: 0 }, payload: 32 },
      v4(5, 6),
    ),
  );
  assert.deepEqual(p, { ranges: [{ first: 5, last: 6, count: 2, copied: false }], ignored: 2, malformed: 0 });
});

test('parser: truncated or inconsistent control data is counted as malformed, never trusted, never a crash', () => {
  const good = control(v4(0, 1));
  const cases: [string, Uint8Array, number | undefined][] = [
    ['empty', new Uint8Array(0), undefined],
    ['shorter than a cmsg header', good.subarray(0, 10), undefined],
    ['controllen cut inside the cmsg', good, 40],
    ['cmsg_len 0 (would loop forever)', control({ ...v4(0, 1), len: 0 }), undefined],
    ['cmsg_len past the buffer', control({ ...v4(0, 1), len: 4096 }), undefined],
    ['payload too short for sock_extended_err', control({ level: SOL_IP, type: IP_RECVERR, payload: 8 }), undefined],
    ['negative length', good, -5],
  ];
  for (const [name, bytes, length] of cases) {
    const p = parseZeroCopyNotifications(bytes, length);
    assert.equal(p.ranges.length, 0, name);
    assert.equal(p.malformed, name === 'empty' || name === 'negative length' ? 0 : 1, name);
  }
  // A cmsg_len whose high half is set is nonsense on any real kernel.
  const huge = control(v4(0, 1));
  new DataView(huge.buffer).setUint32(4, 1, true);
  assert.equal(parseZeroCopyNotifications(huge).malformed, 1);
  // A good cmsg followed by a torn one: the good one counts, the rest is malformed.
  const torn = control(v4(0, 1), v6(2, 3));
  assert.deepEqual(
    parseZeroCopyNotifications(torn, torn.length - 8).ranges.map((r) => r.count),
    [2],
  );
  assert.equal(parseZeroCopyNotifications(torn, torn.length - 8).malformed, 1);
  // A length beyond the buffer is clamped to it.
  assert.equal(parseZeroCopyNotifications(good, 1 << 20).ranges.length, 1);
});

test('parser: arbitrary bytes never throw, and every range it reports lies inside the buffer (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 256 }), fc.integer({ min: -8, max: 300 }), (bytes, length) => {
      const p = parseZeroCopyNotifications(bytes, length);
      // Each decoded notification needs at least a header and a sock_extended_err.
      assert.ok((p.ranges.length + p.ignored) * 16 <= bytes.length);
      for (const r of p.ranges) assert.ok(r.count >= 1 && r.count <= 2 ** 32);
    }),
  );
});

// ---- writes on loopback ----

const probe = (await probeTiers()).find((t) => t.tier === 'batched');
const s = probe?.available ? await Sluice.open({ tier: 'batched' }) : undefined;
const noBatched = s ? undefined : `batched tier unavailable: ${probe?.detail}`;
if (noBatched) console.log(`# zerocopy writes skipped: ${noBatched}`);
const gso = s ? probeBatchedIo().gso : false;
const receivers: Receiver[] = [];
const openReceiver = async (address?: string): Promise<Receiver> => {
  const r = await open(address);
  receivers.push(r);
  return r;
};
after(async () => {
  for (const r of receivers) await r.close().catch(() => undefined);
  await s?.close();
});

/**
 * A Sluice of its own: its send worker has not seen loopback copy every
 * zerocopy send yet, so it still tries zerocopy (see the back-off test).
 */
async function fresh<T>(fn: (x: Sluice) => Promise<T>): Promise<T> {
  const x = await Sluice.open({ tier: 'batched' });
  try {
    return await fn(x);
  } finally {
    await x.close();
  }
}

/** Distinct bytes per entry, so a reordered or foreign packet cannot compare equal. */
const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >>> 11)) & 0xff;
  return b;
};

async function assertDelivered(rx: Receiver, data: Buffer, packetSize: number): Promise<void> {
  await rx.waitFor(Math.ceil(data.length / packetSize), 10_000);
  await rx.settle(50);
  const got = Buffer.concat(rx.received.map((d) => d.data));
  assert.equal(got.length, data.length, `${rx.url}: byte count`);
  assert.ok(got.equals(data), `${rx.url}: bytes differ`);
}

function assertAllCompleted(r: WriteResult): void {
  const z = r.zeroCopy!;
  assert.equal(z.error, undefined, `zerocopy error: ${z.error}`);
  assert.equal(z.fallback, undefined, `zerocopy fell back: ${z.fallback}`);
  assert.ok(z.sends > 0, 'large GSO messages went with MSG_ZEROCOPY');
  assert.equal(z.completed, z.sends, 'every zerocopy send completed before the write resolved');
  // Loopback delivers to a local socket: the kernel always copies (deferred copy).
  assert.equal(z.copied, z.completed, 'loopback: every completion flagged SO_EE_CODE_ZEROCOPY_COPIED');
}

test(
  'zeroCopy auto: a 4 MB write to 2 loopback receivers, burst 16, delivers every byte and completes every zerocopy send',
  { skip: noBatched ?? (gso ? undefined : 'no UDP GSO: burst runs are single datagrams, below the zerocopy threshold') },
  async () => {
    const a = await openReceiver();
    const b = await openReceiver();
    const dataA = pattern(2 << 20, 1);
    const dataB = pattern((2 << 20) - 777, 2);
    const r = await fresh((x) =>
      x.write(
        [
          { to: a.url, data: dataA },
          { to: b.url, data: dataB },
        ],
        { burst: 16, zeroCopy: 'auto' },
      ),
    );
    assert.equal(r.engine, 'batched');
    assert.equal(r.errors, 0);
    assert.equal(r.bytes, dataA.length + dataB.length);
    assertAllCompleted(r);
    // 16 × 1472 = 23,552 bytes per GSO message: every full run qualifies.
    assert.ok(r.zeroCopy!.sends >= Math.floor(dataA.length / (16 * 1472)) * 2 - 2, `${r.zeroCopy!.sends} zerocopy sends`);
    console.log(`# loopback zerocopy: ${JSON.stringify(r.zeroCopy)} in ${r.sendCalls} sendmmsg calls, ${r.elapsedMs.toFixed(1)} ms`);
    await assertDelivered(a, dataA, 1472);
    await assertDelivered(b, dataB, 1472);
  },
);

test('zeroCopy auto without GSO: datagrams of 16 KB each go with MSG_ZEROCOPY one by one', { skip: noBatched }, async () => {
  const a = await openReceiver();
  const data = pattern(400_000, 3);
  const r = await fresh((x) => x.write([{ to: a.url, data }], { packetSize: 16_000, gso: 'never' }));
  assert.equal(r.gsoMessages, 0);
  assertAllCompleted(r);
  assert.equal(r.zeroCopy!.sends, 25, 'one zerocopy send per 16,000-byte datagram');
  await assertDelivered(a, data, 16_000);
});

test(
  'zeroCopy auto over IPv6 loopback: completions arrive as IPV6_RECVERR and are counted the same',
  { skip: noBatched ?? (gso ? undefined : 'no UDP GSO') },
  async (t) => {
    let a: Receiver;
    try {
      a = await openReceiver('::1');
    } catch (err) {
      t.skip(`no IPv6 loopback: ${(err as Error).message}`);
      return;
    }
    const data = pattern(1 << 20, 4);
    const r = await fresh((x) => x.write([{ to: a.url, data }], { burst: 16, packetSize: 1400 }));
    assertAllCompleted(r);
    await assertDelivered(a, data, 1400);
  },
);

test(
  'zeroCopy auto backs off where the kernel copied every send (loopback), and still delivers',
  { skip: noBatched ?? (gso ? undefined : 'no UDP GSO') },
  async () => {
    const a = await openReceiver();
    const data = pattern(1 << 20, 9);
    await fresh(async (x) => {
      const first = await x.write([{ to: a.url, data }], { burst: 16 });
      assertAllCompleted(first);
      await assertDelivered(a, data, 1472);
      a.received.length = 0;
      const second = await x.write([{ to: a.url, data }], { burst: 16 });
      assert.equal(second.zeroCopy!.sends, 0, 'the next write copies');
      assert.match(second.zeroCopy!.fallback ?? '', /copied/);
      await assertDelivered(a, data, 1472);
    });
  },
);

test('zeroCopy never: the same large write reports no zerocopy sends', { skip: noBatched }, async () => {
  const a = await openReceiver();
  const b = await openReceiver();
  const dataA = pattern(1 << 20, 5);
  const dataB = pattern(1 << 20, 6);
  const r = await s!.write(
    [
      { to: a.url, data: dataA },
      { to: b.url, data: dataB },
    ],
    { burst: 16, zeroCopy: 'never' },
  );
  assert.equal(r.zeroCopy, undefined, 'no zerocopy bookkeeping when it was not asked for');
  await assertDelivered(a, dataA, 1472);
  await assertDelivered(b, dataB, 1472);
});

test('zeroCopy auto, small messages: below the threshold nothing goes with MSG_ZEROCOPY', { skip: noBatched }, async () => {
  const a = await openReceiver();
  const b = await openReceiver();
  const dataA = pattern(60_000, 7);
  const dataB = pattern(9_000, 8);
  // burst 4: GSO runs of 4 × 1472 = 5,888 bytes; B's whole entry is 9,000 bytes.
  const r = await s!.write(
    [
      { to: a.url, data: dataA },
      { to: b.url, data: dataB },
    ],
    { burst: 4 },
  );
  assert.deepEqual(r.zeroCopy, { sends: 0, completed: 0, copied: 0 });
  // One message of 9,000 bytes (burst 16, one run) is still below 10 KiB.
  const small = await s!.write([{ to: b.url, data: dataB }], { burst: 16 });
  assert.equal(small.zeroCopy!.sends, 0);
  await assertDelivered(a, dataA, 1472);
});

test('completion tracker: a send the kernel never completes times out instead of hanging', { skip: noBatched }, async (t) => {
  const sock = RawUdpSocket.open(4);
  try {
    const why = enableZeroCopy(sock.fd);
    if (why) {
      t.skip(`kernel refuses zerocopy: ${why}`);
      return;
    }
    const zc = new ZeroCopyCompletions(sock.fd);
    // Pretend three zerocopy sends went out: nothing will ever complete them.
    zc.sends = 3;
    const t0 = performance.now();
    assert.equal(zc.waitAll(60), false);
    assert.ok(performance.now() - t0 >= 55, 'it waited for the timeout');
    assert.equal(zc.outstanding, 3);
    assert.equal(zc.drain(), 0, 'an empty error queue reads as nothing, not an error');
  } finally {
    sock.close();
  }
});
