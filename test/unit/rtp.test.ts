/**
 * The RTP and RTCP parsers (src/wire/rtp.ts, src/wire/rtcp.ts): every field,
 * every length a packet can lie about, RTCP compound packets round-tripped
 * through the builders of harness/traffic/rtp.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRtpAt, isRtpMpegtsAt, newRtpHeader, parseRtp, parseRtpAt, parseRtpInto, rtpCsrc } from '../../src/wire/rtp.js';
import { checkRtcpCompound, looksLikeRtcp, parseRtcp } from '../../src/wire/rtcp.js';
import {
  buildRtcpApp,
  buildRtcpBye,
  buildRtcpRr,
  buildRtcpSdes,
  buildRtcpSr,
  buildRtp,
  concat,
  rtcpPacket,
  type ReportBlockSpec,
} from '../../harness/traffic/rtp.js';

const payload = Uint8Array.from({ length: 40 }, (_, i) => i);

test('RTP: the fixed header, CSRCs, extension and padding are read; payload excludes padding', () => {
  const pkt = buildRtp({
    seq: 0xfffe,
    timestamp: 0xdeadbeef,
    ssrc: 0x89abcdef,
    payloadType: 96,
    marker: true,
    csrcs: [1, 0xffffffff],
    extension: { profile: 0xbede, data: new Uint8Array(8).fill(7) },
    payload,
    padding: 3,
  });
  const r = parseRtp(pkt);
  assert.ok(r.ok);
  const h = r.header;
  assert.equal(h.version, 2);
  assert.equal(h.padding, true);
  assert.equal(h.extension, true);
  assert.equal(h.csrcCount, 2);
  assert.equal(h.marker, true);
  assert.equal(h.payloadType, 96);
  assert.equal(h.sequence, 0xfffe);
  assert.equal(h.timestamp, 0xdeadbeef);
  assert.equal(h.ssrc, 0x89abcdef);
  assert.equal(rtpCsrc(pkt, h, 0), 1);
  assert.equal(rtpCsrc(pkt, h, 1), 0xffffffff);
  assert.equal(h.extensionProfile, 0xbede);
  assert.equal(h.extensionOffset, 12 + 8 + 4);
  assert.equal(h.extensionLength, 8);
  assert.equal(h.headerLength, 12 + 8 + 4 + 8);
  assert.equal(h.payloadOffset, h.headerLength);
  assert.equal(h.paddingLength, 3);
  assert.equal(h.payloadLength, 40);
  assert.deepEqual(pkt.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength), payload);
});

test('RTP: a bare 12-byte header is a packet with an empty payload; the header object is reused', () => {
  const h = newRtpHeader();
  assert.equal(parseRtpInto(buildRtp({ seq: 1, timestamp: 2, ssrc: 3, extension: { profile: 1, data: new Uint8Array(4) } }), h), null);
  assert.equal(h.extensionLength, 4);
  assert.equal(parseRtpInto(buildRtp({ seq: 5, timestamp: 6, ssrc: 7 }), h), null);
  assert.deepEqual([h.sequence, h.timestamp, h.ssrc, h.payloadLength, h.extensionOffset, h.extensionProfile, h.extensionLength], [5, 6, 7, 0, -1, -1, 0]);
  // Padding may take the whole payload.
  assert.equal(parseRtpInto(buildRtp({ seq: 5, timestamp: 6, ssrc: 7, padding: 4 }), h), null);
  assert.equal(h.payloadLength, 0);
});

test('RTP: every lying or short packet is refused with its reason', () => {
  const base = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array(8) });
  const cases: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'short'],
    ['11 bytes', base.subarray(0, 11), 'short'],
    ['version 1', Uint8Array.from(base, (b, i) => (i === 0 ? 0x40 : b)), 'version'],
    ['version 0', Uint8Array.from(base, (b, i) => (i === 0 ? 0x00 : b)), 'version'],
    ['version 3', Uint8Array.from(base, (b, i) => (i === 0 ? 0xc0 : b)), 'version'],
    // CC 15 needs 60 more bytes than the header; the packet has 8.
    ['CSRC count 15', Uint8Array.from(base, (b, i) => (i === 0 ? 0x8f : b)), 'csrc'],
    ['CSRC count 3 with 2 CSRCs', Uint8Array.from(buildRtp({ seq: 1, timestamp: 2, ssrc: 3, csrcs: [1, 2] }), (b, i) => (i === 0 ? 0x83 : b)), 'csrc'],
    [
      'X set, no room for the extension header',
      Uint8Array.from(buildRtp({ seq: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array(3) }), (b, i) => (i === 0 ? 0x90 : b)),
      'extension',
    ],
  ];
  // The extension says 3 words; 2 are there.
  const ext = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, extension: { profile: 1, data: new Uint8Array(8) } });
  ext[15] = 3;
  cases.push(['extension length one word too long', ext, 'extension']);
  const extHuge = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, extension: { profile: 1, data: new Uint8Array(8) }, payload: new Uint8Array(100) });
  extHuge[14] = 0xff;
  cases.push(['extension length 0xff08 words', extHuge, 'extension']);
  // Padding count 0, and a count larger than what follows the header.
  const pad0 = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array(8), padding: 1 });
  pad0[pad0.length - 1] = 0;
  cases.push(['padding count 0', pad0, 'padding']);
  const padBig = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array(8), padding: 1 });
  padBig[padBig.length - 1] = 10; // 9 bytes after the header
  cases.push(['padding count past the header', padBig, 'padding']);
  const padIntoExt = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, extension: { profile: 1, data: new Uint8Array(4) }, padding: 2 });
  padIntoExt[padIntoExt.length - 1] = 3; // would eat into the extension
  cases.push(['padding count into the extension', padIntoExt, 'padding']);
  for (const [what, bytes, reason] of cases) {
    const r = parseRtp(bytes);
    assert.equal(r.ok, false, what);
    assert.equal(!r.ok && r.reason, reason, what);
  }
  const exact = buildRtp({ seq: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array(8), padding: 1 });
  exact[exact.length - 1] = 9; // exactly what follows the header
  assert.ok(parseRtp(exact).ok, 'a padding count equal to what follows the header is valid');
});

test('RTP: a view of a larger buffer parses with offsets into the view and reads nothing past it', () => {
  const pkt = buildRtp({ seq: 9, timestamp: 9, ssrc: 9, payload: new Uint8Array(4), padding: 1 });
  const big = new Uint8Array(pkt.length + 20).fill(0xff);
  big.set(pkt, 10);
  const view = big.subarray(10, 10 + pkt.length);
  const r = parseRtp(view);
  assert.ok(r.ok);
  assert.equal(r.header.payloadOffset, 12);
  assert.equal(r.header.payloadLength, 4);
});

const report = (n: number): ReportBlockSpec => ({
  ssrc: 0x1000 + n,
  fractionLost: 25 + n,
  cumulativeLost: n % 2 === 0 ? 1234 + n : -(5 + n),
  highestSeq: 0x0001ffff + n,
  jitter: 77 + n,
  lsr: 0xabcdef01,
  dlsr: 65536 * 2 + n,
});

test('RTCP: SR and RR with report blocks round-trip, signed cumulative loss included', () => {
  const info = { ntpSeconds: 0xe8a1b2c3, ntpFraction: 0x80000000, rtpTimestamp: 0xfffffff0, packetCount: 1000, octetCount: 1316000 };
  const sr = buildRtcpSr(0xcafebabe, info, [report(0), report(1)]);
  const rr = buildRtcpRr(0x12345678, [report(2), report(3), report(4)]);
  const r = parseRtcp(concat(sr, rr));
  assert.ok(r.ok);
  assert.deepEqual(r.packets, [
    { type: 'sr', ssrc: 0xcafebabe, ...info, reports: [report(0), report(1)] },
    { type: 'rr', ssrc: 0x12345678, reports: [report(2), report(3), report(4)] },
  ]);
  assert.equal(checkRtcpCompound(concat(sr, rr)), null);
  assert.ok(looksLikeRtcp(sr) && looksLikeRtcp(rr));
  // An empty RR (no reports) and an SR with profile-specific extension words are valid too.
  assert.ok(parseRtcp(buildRtcpRr(1)).ok);
  const ext = rtcpPacket(200, 0, new Uint8Array(24 + 8));
  assert.ok(parseRtcp(ext).ok);
});

test('RTCP: SDES, BYE, APP and unknown types in one compound packet', () => {
  const bytes = concat(
    buildRtcpRr(7),
    buildRtcpSdes([
      {
        ssrc: 7,
        items: [
          [1, 'sluice@example'],
          [2, 'rtp'],
        ],
      },
      { ssrc: 8, items: [] },
    ]),
    buildRtcpBye([7, 8], 'encoder restart'),
    buildRtcpApp(3, 7, 'SLCE', Uint8Array.from([1, 2, 3, 4])),
    rtcpPacket(206, 1, Uint8Array.from([0, 0, 0, 7, 0, 0, 0, 9])),
    buildRtcpBye([9]),
  );
  const r = parseRtcp(bytes);
  assert.ok(r.ok, JSON.stringify(r));
  const [rr, sdes, bye, app, fb, bye2] = r.packets;
  assert.deepEqual(rr, { type: 'rr', ssrc: 7, reports: [] });
  assert.deepEqual(sdes, {
    type: 'sdes',
    chunks: [
      {
        ssrc: 7,
        items: [
          { type: 1, value: 'sluice@example' },
          { type: 2, value: 'rtp' },
        ],
      },
      { ssrc: 8, items: [] },
    ],
  });
  assert.deepEqual(bye, { type: 'bye', ssrcs: [7, 8], reason: 'encoder restart' });
  assert.ok(app?.type === 'app');
  assert.deepEqual([app.subtype, app.ssrc, app.name, [...app.data]], [3, 7, 'SLCE', [1, 2, 3, 4]]);
  assert.ok(fb?.type === 'other');
  assert.deepEqual([fb.packetType, fb.count, fb.body.length], [206, 1, 8]);
  assert.deepEqual(bye2, { type: 'bye', ssrcs: [9] });
});

test('RTCP: every lying length is refused with its reason and the index of the packet', () => {
  const rr = buildRtcpRr(7, [report(0)]);
  const set = (b: Uint8Array, at: number, v: number) => Uint8Array.from(b, (x, i) => (i === at ? v : x));
  const cases: [string, Uint8Array, string, number][] = [
    ['empty', new Uint8Array(0), 'short', 0],
    ['3 bytes after a packet', concat(rr, Uint8Array.from([0x80, 201, 0])), 'short', 1],
    ['version 1', set(rr, 0, 0x41), 'version', 0],
    ['an RTP packet', buildRtp({ seq: 1, timestamp: 1, ssrc: 1 }), 'type', 0],
    ['length one word past the end', set(rr, 3, 8), 'length', 0],
    ['length 0xffff', set(set(rr, 2, 0xff), 3, 0xff), 'length', 0],
    ['RR count 2 with one block', set(rr, 0, 0x82), 'count', 0],
    ['SR count 31', set(buildRtcpSr(1, { ntpSeconds: 0, ntpFraction: 0, rtpTimestamp: 0, packetCount: 0, octetCount: 0 }), 0, 0x9f), 'count', 0],
    ['padding on the first of two', concat(buildRtcpRr(1, [], 4), buildRtcpRr(2)), 'padding', 0],
    ['padding count 0', set(buildRtcpRr(1, [], 4), 11, 0), 'padding', 0],
    ['padding count larger than the packet', set(buildRtcpRr(1, [], 4), 11, 9), 'padding', 0],
    ['padding count eating the reports', set(buildRtcpRr(1, [report(1)], 4), 35, 8), 'count', 0],
    ['BYE count 3 with 2 sources', set(buildRtcpBye([1, 2]), 0, 0x83), 'count', 0],
    ['BYE reason longer than the packet', set(buildRtcpBye([1], 'ab'), 8, 200), 'item', 0],
    ['SDES count 2 with one chunk', set(buildRtcpSdes([{ ssrc: 1, items: [[1, 'x']] }]), 0, 0x82), 'count', 0],
    ['SDES item longer than the packet', set(buildRtcpSdes([{ ssrc: 1, items: [[1, 'abc']] }]), 9, 40), 'item', 0],
    ['SDES chunk without END', rtcpPacket(202, 1, Uint8Array.from([0, 0, 0, 1, 1, 2, 65, 66])), 'item', 0],
    ['APP of 8 bytes', rtcpPacket(204, 0, Uint8Array.from([0, 0, 0, 1])), 'app', 0],
    ['second packet cut', concat(rr, buildRtcpRr(3, [report(2)]).subarray(0, 20)), 'length', 1],
  ];
  for (const [what, bytes, reason, index] of cases) {
    const r = parseRtcp(bytes);
    assert.equal(r.ok, false, what);
    assert.deepEqual(!r.ok && [r.reason, r.index], [reason, index], what);
    assert.equal(checkRtcpCompound(bytes), reason, what);
  }
});

test('looksLikeRtcp: RFC 5761 demux by the second byte, 192–223', () => {
  for (let b1 = 0; b1 < 256; b1++) {
    const pkt = Uint8Array.from([0x80, b1, 0, 0]);
    assert.equal(looksLikeRtcp(pkt), b1 >= 192 && b1 <= 223, `second byte ${b1}`);
  }
  assert.equal(looksLikeRtcp(Uint8Array.from([0x80, 200])), false, 'too short for any RTCP packet');
  assert.equal(looksLikeRtcp(buildRtp({ seq: 1, timestamp: 1, ssrc: 1, payloadType: 33, marker: true })), false);
});

test('relay checks at an offset: RTP, and RTP carrying whole TS packets', () => {
  const ts = Uint8Array.from({ length: 376 }, (_, i) => (i % 188 === 0 ? 0x47 : 0));
  const slot = new Uint8Array(2048).fill(0xff);
  const put = (pkt: Uint8Array) => {
    slot.set(pkt, 100);
    return pkt.length;
  };
  let n = put(buildRtp({ seq: 1, timestamp: 1, ssrc: 1, payload: ts, padding: 2 }));
  assert.ok(isRtpAt(slot, 100, n) && isRtpMpegtsAt(slot, 100, n));
  n = put(buildRtp({ seq: 1, timestamp: 1, ssrc: 1, payload: ts.subarray(0, 187) }));
  assert.ok(isRtpAt(slot, 100, n) && !isRtpMpegtsAt(slot, 100, n), '187 bytes are not whole TS packets');
  n = put(buildRtp({ seq: 1, timestamp: 1, ssrc: 1 }));
  assert.ok(isRtpAt(slot, 100, n) && !isRtpMpegtsAt(slot, 100, n), 'an empty payload carries no TS');
  n = put(Uint8Array.from(buildRtp({ seq: 1, timestamp: 1, ssrc: 1, payload: ts }), (b, i) => (i === 12 + 188 ? 0x46 : b)));
  assert.ok(!isRtpMpegtsAt(slot, 100, n), 'a bad sync byte');
  assert.ok(!isRtpAt(slot, 100, 11));
  const h = newRtpHeader();
  assert.equal(parseRtpAt(slot, 100, n, h), null);
  assert.deepEqual([h.csrcOffset, h.payloadOffset, h.payloadLength], [112, 112, 376]);
});
