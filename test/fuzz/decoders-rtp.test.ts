/**
 * Property tests for the RTP and RTCP decoders (src/wire/rtp.ts,
 * src/wire/rtcp.ts) and the RTP monitor that runs them on every datagram of
 * a monitored flow: arbitrary bytes and hostile variants of valid packets
 * never throw, never read beyond their input, never yield offsets outside
 * it; valid packets round-trip; and for seeded random loss, reordering and
 * duplication the monitor's counts equal what was done to the stream.
 * Runs are bounded so the file takes seconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isRtpAt, isRtpMpegtsAt, parseRtp } from '../../src/wire/rtp.js';
import { checkRtcpCompound, looksLikeRtcp, looksLikeRtcpAt, parseRtcp } from '../../src/wire/rtcp.js';
import { checkTsDatagram } from '../../src/wire/mpegts/datagram.js';
import { createRtpMonitor } from '../../src/media/rtp-monitor.js';
import { buildRtcpBye, buildRtcpRr, buildRtcpSdes, buildRtcpSr, buildRtp, concat, type ReportBlockSpec } from '../../harness/traffic/rtp.js';
import { Rng } from '../../harness/wan/rng.js';
import { anyInput, sameInAnySurroundings } from './decoder-props.js';

const never = () => false;
const u32 = fc.nat(0xffffffff);

const rtpPacket = fc
  .record({
    seq: fc.nat(0xffff),
    timestamp: u32,
    ssrc: u32,
    payloadType: fc.nat(127),
    marker: fc.boolean(),
    csrcs: fc.array(u32, { maxLength: 15 }),
    extension: fc.option(fc.record({ profile: fc.nat(0xffff), data: fc.nat(8).map((n) => new Uint8Array(4 * n).fill(0xee)) }), { nil: undefined }),
    payload: fc.uint8Array({ maxLength: 64 }),
    padding: fc.nat(12),
  })
  .map((s) => buildRtp(s));

test('RTP: never throws, reads nothing beyond its input, and its offsets partition the packet (property)', () => {
  fc.assert(
    fc.property(anyInput(rtpPacket, 200), (bytes) => {
      const o = sameInAnySurroundings(parseRtp, bytes, never, 'parseRtp');
      assert.ok(o.ok);
      const r = o.value as ReturnType<typeof parseRtp>;
      if (!r.ok) return;
      const h = r.header;
      assert.equal(h.payloadOffset, h.headerLength);
      assert.equal(h.headerLength + h.payloadLength + h.paddingLength, bytes.length);
      assert.ok(h.payloadLength >= 0 && h.headerLength >= 12 + 4 * h.csrcCount);
      if (h.extension) assert.ok(h.extensionOffset + h.extensionLength === h.headerLength);
    }),
    { numRuns: 2000 },
  );
});

test('RTP: a built packet parses back to its fields (property)', () => {
  fc.assert(
    fc.property(
      fc.record({ seq: fc.nat(0xffff), timestamp: u32, ssrc: u32, payloadType: fc.nat(127), payload: fc.uint8Array({ maxLength: 32 }), padding: fc.nat(255) }),
      (s) => {
        const r = parseRtp(buildRtp(s));
        assert.ok(r.ok);
        assert.deepEqual(
          [r.header.sequence, r.header.timestamp, r.header.ssrc, r.header.payloadType, r.header.payloadLength, r.header.paddingLength],
          [s.seq, s.timestamp, s.ssrc, s.payloadType, s.payload.length, s.padding],
        );
      },
    ),
    { numRuns: 300 },
  );
});

const reportBlock: fc.Arbitrary<ReportBlockSpec> = fc.record(
  {
    ssrc: u32,
    fractionLost: fc.nat(255),
    cumulativeLost: fc.integer({ min: -0x800000, max: 0x7fffff }),
    highestSeq: u32,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
  },
  { noNullPrototype: true },
);
const senderInfo = fc.record({ ntpSeconds: u32, ntpFraction: u32, rtpTimestamp: u32, packetCount: u32, octetCount: u32 }, { noNullPrototype: true });
const rtcpOne = fc.oneof(
  fc.tuple(u32, senderInfo, fc.array(reportBlock, { maxLength: 4 })).map(([ssrc, info, rb]) => buildRtcpSr(ssrc, info, rb)),
  fc.tuple(u32, fc.array(reportBlock, { maxLength: 4 })).map(([ssrc, rb]) => buildRtcpRr(ssrc, rb)),
  fc
    .array(fc.record({ ssrc: u32, items: fc.array(fc.tuple(fc.integer({ min: 1, max: 8 }), fc.string({ maxLength: 20 })), { maxLength: 3 }) }), {
      maxLength: 3,
    })
    .map(buildRtcpSdes),
  fc.tuple(fc.array(u32, { maxLength: 4 }), fc.option(fc.string({ maxLength: 30 }), { nil: undefined })).map(([s, r]) => buildRtcpBye(s, r)),
);
const rtcpCompound = fc.array(rtcpOne, { minLength: 1, maxLength: 4 }).map((ps) => concat(...ps));

test('RTCP: never throws, reads nothing beyond its input, the allocation-free check agrees with the parser (property)', () => {
  fc.assert(
    fc.property(anyInput(rtcpCompound, 300), (bytes) => {
      const o = sameInAnySurroundings(parseRtcp, bytes, never, 'parseRtcp');
      assert.ok(o.ok);
      const r = o.value as ReturnType<typeof parseRtcp>;
      assert.equal(checkRtcpCompound(bytes), r.ok ? null : r.reason);
    }),
    { numRuns: 2000 },
  );
});

test('RTCP: SR and RR report blocks round-trip (property)', () => {
  fc.assert(
    fc.property(u32, senderInfo, fc.array(reportBlock, { maxLength: 31 }), (ssrc, info, reports) => {
      const r = parseRtcp(concat(buildRtcpSr(ssrc, info, reports), buildRtcpRr(ssrc, reports)));
      assert.ok(r.ok);
      assert.deepEqual(r.packets, [
        { type: 'sr', ssrc, ...info, reports },
        { type: 'rr', ssrc, reports },
      ]);
    }),
    { numRuns: 200 },
  );
});

test('RTP monitor: any sequence of datagrams and ticks never throws and keeps its counts consistent (property)', () => {
  const datagram = anyInput(rtpPacket, 100);
  fc.assert(
    fc.property(fc.array(fc.tuple(datagram, fc.nat(300)), { maxLength: 60 }), (steps) => {
      const mon = createRtpMonitor({ stopTimeoutMs: 500 });
      let t = 0;
      for (const [d, dt] of steps) {
        mon.push(d, t);
        t += dt;
        mon.tick(t);
      }
      const s = mon.stats();
      const r = s.rtp!;
      assert.equal(s.datagrams, steps.length);
      assert.equal(r.packets + r.malformed + r.rtcp, steps.length);
      assert.ok(r.lost >= 0 && r.expected >= 0 && r.lost <= r.expected);
      assert.ok(Number.isFinite(r.jitterMs) && r.jitterMs >= 0);
    }),
    { numRuns: 500 },
  );
});

test('RTP monitor: seeded random loss, reordering and duplication give exactly the counts that were done (property)', () => {
  fc.assert(
    fc.property(fc.nat(0xffffffff), fc.nat(0xffff), fc.integer({ min: 50, max: 3000 }), (seed, start, n) => {
      const rng = Rng.fromSeed(seed);
      const rand = () => rng.next();
      const lossRate = rand() * 0.2;
      // The first three packets pass untouched (A.1 probation takes the first), and the last one arrives.
      let order: number[] = [];
      let dropped = 0;
      for (let i = 0; i < n; i++) {
        if (i >= 3 && i < n - 1 && rand() < lossRate) dropped++;
        else order.push(i);
      }
      // Shuffle inside small blocks (displacement < 16, well within MAX_MISORDER), past the first three.
      for (let b = 3; b < order.length; b += 16) {
        if (rand() < 0.3) {
          const block = order.slice(b, b + 16);
          for (let i = block.length - 1; i > 0; i--) {
            const j = Math.floor(rand() * (i + 1));
            [block[i], block[j]] = [block[j]!, block[i]!];
          }
          order.splice(b, block.length, ...block);
        }
      }
      // Duplicate some packets, re-sent up to 40 positions later.
      const withDups: number[] = [];
      const pending: [number, number][] = [];
      order.forEach((p, i) => {
        withDups.push(p);
        for (const d of pending.filter(([at]) => at === i)) withDups.push(d[1]);
        if (i >= 3 && rand() < 0.02) pending.push([i + 1 + Math.floor(rand() * 40), p]);
      });
      order = withDups;
      // What a receiver sees: reordered = arrivals below the highest so far that are not repeats.
      const seen = new Set<number>();
      let highest = -1;
      let reordered = 0;
      let duplicates = 0;
      for (const i of order) {
        if (seen.has(i)) duplicates++;
        else if (i < highest) reordered++;
        seen.add(i);
        highest = Math.max(highest, i);
      }
      const mon = createRtpMonitor();
      order.forEach((i, k) => {
        mon.push(buildRtp({ seq: (start + i) & 0xffff, timestamp: i * 3000, ssrc: seed, payload: new Uint8Array(4) }), k * 5);
        if (k % 20 === 0) mon.tick(k * 5);
      });
      const r = mon.stats().rtp!;
      assert.deepEqual(
        { expected: r.expected, lost: r.lost, reordered: r.reordered, duplicates: r.duplicates, packets: r.packets },
        { expected: n - 1, lost: dropped, reordered, duplicates, packets: order.length },
      );
    }),
    { numRuns: 200 },
  );
});

const tsPayload = fc.integer({ min: 0, max: 3 }).map((n) => Uint8Array.from({ length: 188 * n }, (_, i) => (i % 188 === 0 ? 0x47 : i & 0xff)));
const rtpTsPacket = fc
  .record({ seq: fc.nat(0xffff), ssrc: u32, csrcs: fc.array(u32, { maxLength: 2 }), payload: tsPayload, padding: fc.nat(4) })
  .map((s) => buildRtp({ ...s, timestamp: 0 }));

test('RTP at an offset: the relay checks agree with the parser on a copy and read nothing outside the datagram (property)', () => {
  fc.assert(
    fc.property(anyInput(fc.oneof(rtpPacket, rtpTsPacket), 800), fc.nat(16), fc.nat(16), (bytes, before, after) => {
      const big = new Uint8Array(before + bytes.length + after).fill(0x47);
      big.set(bytes, before);
      const r = parseRtp(Uint8Array.from(bytes));
      assert.equal(isRtpAt(big, before, bytes.length), r.ok);
      const whole =
        r.ok && r.header.payloadLength > 0 && checkTsDatagram(bytes.subarray(r.header.payloadOffset, r.header.payloadOffset + r.header.payloadLength)).ok;
      assert.equal(isRtpMpegtsAt(big, before, bytes.length), whole);
      assert.equal(looksLikeRtcpAt(big, before, bytes.length), looksLikeRtcp(Uint8Array.from(bytes)));
    }),
    { numRuns: 1000 },
  );
});
