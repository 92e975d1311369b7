/**
 * Socket fuzz for a running relay (issue 16: every listening socket is a
 * fuzz target), one suite for every tier. Not a test file itself: each
 * tier's file calls `defineRelayFuzzSuite`.
 *
 * Two flows listen: an IPv4 replicate with the MPEG-TS check and a size
 * limit, and an IPv6 redirect that takes any payload. While real traffic
 * (checksummed TS datagrams, each unique) flows through both, hostile
 * datagrams hit the same listen sockets: random, empty, truncated,
 * oversized (to the UDP maximum), bit-flipped, lying-length, spliced and
 * replayed copies of captured real traffic, from an allowed source and
 * from sources that are not allowed (one address, and a flood from many
 * source ports); after the real traffic, what a subscriber received is
 * replayed at the relay.
 *
 * Each hostile datagram's fate is known in advance (not allowed, too
 * large, malformed, or relayed), so the test checks that the counters
 * account for every one by reason, that subscribers receive exactly the
 * real traffic plus what had to be relayed (byte-exact, as a multiset,
 * the real datagrams in order), and that the relay answers nobody else.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice, type TierName, type Flow } from '../../src/index.js';
import { openReceiver, type Receiver } from '../../harness/traffic/udp.js';
import { Prng, hostileDatagrams, openSources, sendBounded, udpDrops, type Hostile } from '../../harness/traffic/fuzz.js';

export interface RelayFuzzTarget {
  tier: TierName;
  skip?: string;
  /** Base seed (each sender derives its own); a failure message names it. */
  seed?: number;
}

const TS = 188;
const MAX_M = 1316;
const MAX_A = 1400;

/** Real datagram `seq`: 7 TS packets (sync, PID 0x100, counter), the rest drawn from the seq. Unique per seq. */
export function realTsDatagram(seq: number): Uint8Array {
  const out = new Uint8Array(7 * TS);
  const rng = new Prng(0x5eed0000 + seq);
  for (let i = 0; i < 7; i++) {
    const o = i * TS;
    out.set(rng.bytes(TS), o);
    out[o] = 0x47;
    out[o + 1] = 0x01;
    out[o + 2] = 0x00;
    out[o + 3] = 0x10 | ((seq * 7 + i) & 0x0f);
    new DataView(out.buffer).setUint32(o + 4, seq);
  }
  return out;
}

type Verdict = 'tooLarge' | 'malformed' | 'relayed';
function verdict(d: Uint8Array, max: number, mpegts: boolean): Verdict {
  if (d.length > max) return 'tooLarge';
  if (mpegts) {
    if (d.length === 0 || d.length % TS !== 0) return 'malformed';
    for (let i = 0; i < d.length; i += TS) if (d[i] !== 0x47) return 'malformed';
  }
  return 'relayed';
}

const key = (b: Uint8Array) => createHash('sha1').update(b).digest('base64');

function multiset(items: Iterable<Uint8Array>): Map<string, number> {
  const m = new Map<string, number>();
  for (const b of items) m.set(key(b), (m.get(key(b)) ?? 0) + 1);
  return m;
}

function diff(expected: Map<string, number>, got: Map<string, number>): { missing: number; extra: number } {
  let missing = 0;
  let extra = 0;
  for (const [k, n] of expected) missing += Math.max(0, n - (got.get(k) ?? 0));
  for (const [k, n] of got) extra += Math.max(0, n - (expected.get(k) ?? 0));
  return { missing, extra };
}

async function bound(address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', sendBufferSize: 4 << 20 });
  s.on('error', () => {});
  await new Promise<void>((resolve) => s.bind(0, address, () => resolve()));
  return s;
}

/** Waits until `f()` holds (polling), or `timeoutMs`. */
async function until(f: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

export function defineRelayFuzzSuite(target: RelayFuzzTarget): void {
  const seed = target.seed ?? Number(process.env.SLUICE_FUZZ_SEED ?? 16_016);
  describe(`socket fuzz: ${target.tier} relay (seed ${seed})`, { skip: target.skip }, () => {
    let s: Sluice;
    const closers: (() => Promise<void> | void)[] = [];
    before(async () => {
      s = await Sluice.open({ tier: target.tier });
    });
    after(async () => {
      for (const c of closers.splice(0).reverse()) await c();
      await s.close();
    });

    test('random, truncated, oversized, bit-flipped and replayed datagrams alongside real traffic: every one counted by reason, the real traffic byte-exact', async (t) => {
      const subA = await openReceiver('127.0.0.1');
      const subB = await openReceiver('127.0.0.1');
      const subC = await openReceiver('::1');
      closers.push(
        () => subA.close(),
        () => subB.close(),
        () => subC.close(),
      );
      const m: Flow = await s.apply({
        name: 'fuzz-ts',
        type: 'replicate',
        listen: 'udp://127.0.0.1:0',
        to: [subA.url, subB.url],
        allow: '127.0.0.1/32',
        payload: 'mpegts',
        maxDatagramSize: MAX_M,
      });
      const a: Flow = await s.apply({ name: 'fuzz-any', type: 'redirect', listen: 'udp://[::1]:0', to: subC.url, allow: '::1/128', maxDatagramSize: MAX_A });
      const toM = { address: '127.0.0.1', port: m.listen.port };
      const toA = { address: '::1', port: a.listen.port };

      const realM = await bound('127.0.0.1');
      const realA = await bound('::1');
      const fuzzM = await bound('127.0.0.1');
      const fuzzA = await bound('::1');
      const strangerM = await bound('127.0.0.2');
      const flood = await openSources(64, '127.0.0.3');
      closers.push(...[realM, realA, fuzzM, fuzzA, strangerM].map((x) => () => new Promise<void>((r) => x.close(() => r()))), () => flood.close());
      // Anything the relay sends back to a sender is a reflection.
      let reflected = 0;
      for (const x of [realM, realA, fuzzM, fuzzA, strangerM, ...flood.sockets]) x.on('message', () => reflected++);

      // 1. Warm-up: real traffic the fuzz corpus is captured from.
      const WARM = 50;
      const warm = Array.from({ length: WARM }, (_, i) => realTsDatagram(i));
      await sendBounded(realM, toM, warm, { maxCount: WARM, maxMs: 10_000 });
      await sendBounded(realA, toA, warm, { maxCount: WARM, maxMs: 10_000 });
      await subA.waitFor(WARM, 10_000);
      await subC.waitFor(WARM, 10_000);
      const corpusM = subA.received.map((r) => Uint8Array.from(r.data));
      const corpusA = subC.received.map((r) => Uint8Array.from(r.data));
      const dropsBefore = udpDrops(toM.port) + udpDrops(toA.port);

      // 2. Real traffic and fuzz at once.
      const N = 3000;
      const real = Array.from({ length: N }, (_, i) => realTsDatagram(WARM + i));
      const limits = { maxMs: 30_000, burst: 16, gapMs: 1, keep: true };
      const prefixes = [Uint8Array.of(0x47), Uint8Array.of(0x47, 0x01, 0x00, 0x10)];
      const [, , okM, okA, badM, floodM] = await Promise.all([
        sendBounded(realM, toM, real, { ...limits, maxCount: N }),
        sendBounded(realA, toA, real, { ...limits, maxCount: N }),
        sendBounded(fuzzM, toM, hostileDatagrams(seed, 4000, { corpus: corpusM, prefixes, maxSize: 16_384 }), { ...limits, maxCount: 4000 }),
        sendBounded(fuzzA, toA, hostileDatagrams(seed + 1, 4000, { corpus: corpusA, prefixes, maxSize: 16_384 }), { ...limits, maxCount: 4000 }),
        sendBounded(strangerM, toM, hostileDatagrams(seed + 2, 1500, { corpus: corpusM, maxSize: 16_384 }), { ...limits, maxCount: 1500 }),
        sendBounded(flood.sockets, toM, hostileDatagrams(seed + 3, 256, { corpus: corpusM, kinds: ['replayed', 'bitflip', 'random'] }), {
          ...limits,
          maxCount: 256,
        }),
      ]);
      assert.equal(okM.refused + okA.refused, 0, 'the local stack refused a fuzz datagram (the test cannot account for it)');

      // 3. Replay what a subscriber received at the relay.
      await subA.waitFor(WARM + N, 20_000).catch(() => {});
      const capture = subA.received.slice(WARM, WARM + 300).map((r) => Uint8Array.from(r.data));
      const replayM = await sendBounded(realM, toM, capture, { ...limits, maxCount: capture.length });
      const captureA = subC.received.slice(WARM, WARM + 300).map((r) => Uint8Array.from(r.data));
      const replayA = await sendBounded(realA, toA, captureA, { ...limits, maxCount: captureA.length });

      // What each flow must have done with every datagram.
      const expect = (flowSent: { kept: Uint8Array[] }[], max: number, mpegts: boolean) => {
        const out = { tooLarge: 0, malformed: 0, relayed: [] as Uint8Array[] };
        for (const r of flowSent)
          for (const d of r.kept) {
            const v = verdict(d, max, mpegts);
            if (v === 'relayed') out.relayed.push(d);
            else out[v]++;
          }
        return out;
      };
      const eM = expect([{ kept: warm }, { kept: real }, okM, replayM], MAX_M, true);
      const eA = expect([{ kept: warm }, { kept: real }, okA, replayA], MAX_A, false);
      const strangers = badM.sent + floodM.sent;
      const inM = WARM + N + okM.sent + replayM.sent + strangers;
      const inA = WARM + N + okA.sent + replayA.sent;

      // Counters settle (the batched and kernel tiers count asynchronously).
      await until(() => m.stats().packetsIn >= inM - udpDrops(toM.port) && a.stats().packetsIn >= inA - udpDrops(toA.port), 30_000);
      await Promise.all([subA.settle(300, 10_000), subB.settle(300, 10_000), subC.settle(300, 10_000)]);
      await until(() => m.stats().packetsOut >= subA.received.length + subB.received.length, 5000);
      const kernelDrops = udpDrops(toM.port) + udpDrops(toA.port) - dropsBefore;
      const stM = m.stats();
      const stA = a.stats();
      const where = `seed ${seed}, ${target.tier} tier; kernel dropped ${kernelDrops} at the listen sockets`;
      t.diagnostic(
        `kernel drops at the listen sockets ${kernelDrops}; ts flow: in ${stM.packetsIn}, out ${stM.packetsOut}, drops ${JSON.stringify(stM.drops)}; any flow: in ${stA.packetsIn}, out ${stA.packetsOut}, drops ${JSON.stringify(stA.drops)}; fuzz kinds ${JSON.stringify(okM.byKind)}`,
      );

      // Every datagram that reached the relay is counted in, and either relayed or dropped for its reason.
      const accounted = (st: typeof stM, expected: number, what: string) => {
        if (kernelDrops === 0) assert.equal(st.packetsIn, expected, `${what}: packetsIn (${where})`);
        else assert.ok(st.packetsIn >= expected - kernelDrops && st.packetsIn <= expected, `${what}: packetsIn ${st.packetsIn} of ${expected} (${where})`);
      };
      accounted(stM, inM, 'ts flow');
      accounted(stA, inA, 'any flow');
      // Every drop reason the tier reports is expected to be 0 but these.
      const only = (drops: Record<string, number>, nonZero: Record<string, number>) => ({
        ...Object.fromEntries(Object.keys(drops).map((k) => [k, 0])),
        ...nonZero,
      });
      if (kernelDrops === 0) {
        assert.deepEqual(
          stM.drops,
          only(stM.drops, { sourceNotAllowed: strangers, malformed: eM.malformed, tooLarge: eM.tooLarge }),
          `ts flow drops (${where})`,
        );
        assert.deepEqual(stA.drops, only(stA.drops, { tooLarge: eA.tooLarge }), `any flow drops (${where})`);
        assert.equal(stM.packetsOut, 2 * eM.relayed.length, `ts flow packetsOut (${where})`);
        assert.equal(stA.packetsOut, eA.relayed.length, `any flow packetsOut (${where})`);
      }
      assert.equal(
        stM.packetsIn,
        stM.drops.sourceNotAllowed + stM.drops.malformed + stM.drops.tooLarge + stM.packetsOut / 2,
        `ts flow: in = dropped + relayed (${where})`,
      );
      assert.equal(stA.packetsIn, stA.drops.tooLarge + stA.packetsOut, `any flow: in = dropped + relayed (${where})`);
      for (const d of [...stM.destinations, ...stA.destinations]) assert.deepEqual(d.drops, only(d.drops, {}), `${d.to} (${where})`);

      // Subscribers got exactly what had to be relayed, byte-exact; the real datagrams in order.
      const check = (sub: Receiver, expected: Uint8Array[], name: string) => {
        const got = multiset(sub.received.map((r) => r.data));
        const { missing, extra } = diff(multiset(expected), got);
        const lost = udpDrops(sub.port);
        assert.equal(extra, 0, `${name}: ${extra} datagram(s) that were never sent to the relay or are not to be relayed (${where})`);
        assert.ok(missing <= kernelDrops + lost, `${name}: ${missing} datagram(s) missing; the kernel dropped ${lost} at the subscriber (${where})`);
        const realKeys = new Map(real.map((d, i) => [key(d), i]));
        const order: number[] = [];
        const seen = new Set<number>();
        for (const r of sub.received) {
          const i = realKeys.get(key(r.data));
          if (i !== undefined && !seen.has(i)) {
            seen.add(i);
            order.push(i);
          }
        }
        if (kernelDrops === 0 && lost === 0) assert.equal(order.length, N, `${name}: ${N - order.length} real datagram(s) lost (${where})`);
        assert.ok(
          order.every((x, i) => i === 0 || x > order[i - 1]!),
          `${name}: real datagrams out of order (${where})`,
        );
      };
      check(subA, eM.relayed, 'subscriber A');
      check(subB, eM.relayed, 'subscriber B');
      check(subC, eA.relayed, 'subscriber C (IPv6)');
      assert.equal(reflected, 0, 'the relay sent datagrams back to a sender');
      await m.remove();
      await a.remove();
    });

    test('a flood of tiny, empty and maximum-size datagrams from many source ports leaves the relay serving', async () => {
      const sub = await openReceiver('127.0.0.1');
      closers.push(() => sub.close());
      const f = await s.apply({ name: 'flood', type: 'redirect', listen: 'udp://127.0.0.1:0', to: sub.url, allow: '127.0.0.1/32', maxDatagramSize: 1500 });
      const to = { address: '127.0.0.1', port: f.listen.port };
      const srcs = await openSources(256, '127.0.0.1');
      closers.push(() => srcs.close());
      const rng = new Prng(seed + 7);
      const gen = function* (): Generator<Hostile> {
        for (let i = 0; i < 2048; i++) {
          const k = rng.int(3);
          yield {
            kind: k === 0 ? 'empty' : k === 1 ? 'random' : 'oversized',
            data: k === 0 ? new Uint8Array(0) : k === 1 ? rng.bytes(1 + rng.int(8)) : rng.bytes(65_507),
          };
        }
      };
      const before = udpDrops(to.port);
      const r = await sendBounded(srcs.sockets, to, gen(), { maxCount: 2048, maxMs: 20_000, burst: 64, gapMs: 2, keep: true });
      const big = r.kept.filter((d) => d.length > 1500).length;
      await until(() => f.stats().packetsIn >= r.sent - (udpDrops(to.port) - before), 30_000);
      const kernelDrops = udpDrops(to.port) - before;
      // Every datagram read is sent or counted as dropped; the send side (a worker on the batched tier)
      // reports a little after the receive side, so wait for the books to balance.
      const accounted = () => {
        const x = f.stats();
        return x.packetsOut + Object.values(x.drops).reduce((a, b) => a + b, 0);
      };
      await until(() => accounted() >= f.stats().packetsIn, 10_000); // false after 10 s: the assertion below says what is missing
      const st = f.stats();
      assert.ok(st.packetsIn <= r.sent && st.packetsIn >= r.sent - kernelDrops, `packetsIn ${st.packetsIn} of ${r.sent}, kernel dropped ${kernelDrops}`);
      if (kernelDrops === 0) assert.equal(st.drops.tooLarge, big);
      assert.equal(accounted(), st.packetsIn, `in ${st.packetsIn}, out ${st.packetsOut}, drops ${JSON.stringify(st.drops)}`);
      // Still relaying, in order, for the real source.
      const real = await bound('127.0.0.1');
      closers.push(() => new Promise<void>((res) => real.close(() => res())));
      await sub.settle(200, 10_000);
      const n0 = sub.received.length;
      const payloads = Array.from({ length: 100 }, (_, i) => realTsDatagram(10_000 + i));
      await sendBounded(real, to, payloads, { maxCount: 100, maxMs: 10_000 });
      await sub.waitFor(n0 + 100, 10_000);
      const tail = sub.received.slice(n0).map((x) => key(x.data));
      assert.deepEqual(
        tail.filter((k) => payloads.some((p) => key(p) === k)),
        payloads.map(key),
      );
      await f.remove();
    });
  });
}
