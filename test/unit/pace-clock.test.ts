/**
 * Playout by the stream's own clock (issue 20, item 5): the pure due-time
 * functions. pcrSchedule: each datagram is due when the PCR line through
 * its first byte says (PMT's PCR PID, interpolation by byte position,
 * extrapolation before the first and after the last PCR, wrap,
 * discontinuities re-anchored, clear errors). rtpSchedule: RTP timestamps
 * (wrap, reorder, jumps, SSRC change, framing). Both are checked against
 * times computed here independently, exactly (to float rounding), and on
 * hostile input (they throw InvalidArgumentError or return a finite,
 * never decreasing schedule).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidArgumentError } from '../../src/errors.js';
import { pcrSchedule } from '../../src/sender/pace-pcr.js';
import { rtpSchedule } from '../../src/sender/pace-rtp.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';
import { TS_PACKET_SIZE, encodeTsPacket } from '../../src/wire/mpegts/packet.js';
import { encodePatSection, encodePmtSection, encodePsiPacket } from '../../src/wire/mpegts/psi.js';
import { PCR_MODULUS } from '../../src/wire/mpegts/pcr.js';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} vs ${b}`);

/** A TS buffer of packets: PAT, PMT (PCR PID 0x100), then per entry a 0x100 packet with or without a PCR, or filler on 0x101. */
function tsOf(plan: readonly ({ pcr: number; disc?: boolean; pid?: number } | 'es')[], pcrPid = 0x100): Uint8Array {
  const packets: Uint8Array[] = [
    encodePsiPacket(0, 0, encodePatSection({ transportStreamId: 1, programs: [{ programNumber: 1, pmtPid: 0x1000 }] })),
    encodePsiPacket(0x1000, 0, encodePmtSection({ programNumber: 1, pcrPid, streams: [{ streamType: 0x1b, elementaryPid: 0x100 }] })),
  ];
  const cc = new Map<number, number>();
  for (const p of plan) {
    const pid = p === 'es' ? 0x101 : (p.pid ?? 0x100);
    const c = cc.get(pid) ?? 0;
    cc.set(pid, (c + 1) & 15);
    packets.push(
      p === 'es'
        ? encodeTsPacket({ pid, payloadUnitStart: false, continuityCounter: c, payload: new Uint8Array(184) })
        : encodeTsPacket({
            pid,
            payloadUnitStart: false,
            continuityCounter: c,
            pcr: BigInt(p.pcr),
            discontinuity: p.disc === true,
            payload: new Uint8Array(100),
          }),
    );
  }
  const out = new Uint8Array(packets.length * TS_PACKET_SIZE);
  packets.forEach((p, i) => out.set(p, i * TS_PACKET_SIZE));
  return out;
}

/** The time (ms) of byte `pos` on the line through two PCR samples (byte, 27 MHz value). */
function line(pos: number, a: [number, number], b: [number, number]): number {
  return ((a[1] + ((pos - a[0]) * (b[1] - a[1])) / (b[0] - a[0])) / 27_000) as number;
}

test('pcr: a CBR stream is due at k × packetSize × 8 / bitrate, exactly as its PCRs say', () => {
  const bitrate = 2_000_000;
  const s = new SyntheticTsStream({ bitrateBps: bitrate, packetsPerDatagram: 7 });
  const parts = Array.from({ length: 200 }, () => s.nextDatagram());
  const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  parts.reduce((at, p) => (data.set(p, at), at + p.byteLength), 0);
  for (const packetSize of [1316, 188, 188 * 3]) {
    const { dueMs, passMs } = pcrSchedule(data, packetSize);
    assert.equal(dueMs.length, Math.ceil(data.byteLength / packetSize));
    for (let k = 0; k < dueMs.length; k++) close(dueMs[k]!, (k * packetSize * 8000) / bitrate, `datagram ${k}`);
    close(passMs, (data.byteLength * 8000) / bitrate, 'pass');
  }
});

test('pcr: VBR — each datagram is on the line of the two PCRs around its first byte, extrapolated at the ends', () => {
  // PCR packets at packets 2, 6, 8, 16 (after PAT, PMT): a fast stretch then a slow one.
  const pcrs = [1_000_000, 1_000_000 + 27_000 * 2, 1_000_000 + 27_000 * 3, 1_000_000 + 27_000 * 40];
  const plan = [
    'es',
    'es',
    { pcr: pcrs[0]! },
    'es',
    'es',
    'es',
    { pcr: pcrs[1]! },
    'es',
    { pcr: pcrs[2]! },
    ...Array(7).fill('es'),
    { pcr: pcrs[3]! },
    'es',
    'es',
  ] as const;
  const data = tsOf(plan as never);
  const at = [4, 8, 10, 18].map((p) => p * TS_PACKET_SIZE + 10); // each PCR stamps byte 10 of its packet
  const samples = at.map((pos, i) => [pos, pcrs[i]!] as [number, number]);
  const timeOf = (pos: number) => {
    const i = pos < at[1]! ? 0 : pos < at[2]! ? 1 : 2;
    return line(pos, samples[i]!, samples[i + 1]!);
  };
  const { dueMs, passMs } = pcrSchedule(data, TS_PACKET_SIZE);
  for (let k = 0; k < dueMs.length; k++) close(dueMs[k]!, timeOf(k * TS_PACKET_SIZE) - timeOf(0), `packet ${k}`);
  close(passMs, timeOf(data.byteLength) - timeOf(0), 'pass');
  // The slow stretch is slow: 37 ms over 8 packets.
  assert.ok(dueMs[17]! - dueMs[10]! > 25);
});

test("pcr: the PMT's PCR PID rules, not an earlier PID that carries PCRs", () => {
  const decoy = { pid: 0x200, pcr: 99 * 27_000_000 };
  const data = tsOf([decoy, { pcr: 0 }, decoy, 'es', { pcr: 27_000 * 10 }, decoy]);
  const { dueMs } = pcrSchedule(data, TS_PACKET_SIZE);
  // 3 packets between the two PCRs of PID 0x100 take 10 ms.
  close(dueMs[1]! - dueMs[0]!, 10 / 3, 'packet time');
});

test('pcr: a PCR wrap is no jump', () => {
  const top = Number(PCR_MODULUS);
  const data = tsOf([{ pcr: top - 27_000 }, 'es', { pcr: 27_000 }, 'es', { pcr: 27_000 * 3 }]);
  const { dueMs } = pcrSchedule(data, TS_PACKET_SIZE);
  close(dueMs[6]! - dueMs[2]!, 4, 'ms across the wrap');
});

test('pcr: discontinuity_indicator or a jump re-anchors: time goes on at the nearest regular rate', () => {
  for (const second of [{ pcr: 5 * 27_000_000, disc: true }, { pcr: 5 * 27_000_000 }, { pcr: 27_000 }]) {
    // 2 ms per 2 packets, then a new time base, then 2 ms per 2 packets again.
    const data = tsOf([{ pcr: 27_000 * 100 }, 'es', { pcr: 27_000 * 102 }, 'es', second, 'es', { pcr: second.pcr + 27_000 * 2 }]);
    const { dueMs, passMs } = pcrSchedule(data, TS_PACKET_SIZE);
    for (let k = 1; k < dueMs.length; k++) close(dueMs[k]! - dueMs[k - 1]!, 1, `packet ${k} after ${JSON.stringify(second)}`);
    close(passMs, dueMs.length, 'pass');
  }
});

test('pcr: what cannot give a clock is a clear InvalidArgumentError', () => {
  const err = (data: Uint8Array, packetSize: number, re: RegExp) =>
    assert.throws(
      () => pcrSchedule(data, packetSize),
      (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message),
    );
  err(tsOf(['es', 'es']), 188, /carries no PCR/);
  err(tsOf([{ pcr: 0 }, 'es']), 188, /1 PCR/);
  err(tsOf([{ pcr: 0 }, { pcr: 0 }]), 188, /no two a regular step/);
  err(tsOf([{ pcr: 0 }, { pcr: 27_000 }]), 1000, /multiple of 188/);
  err(new Uint8Array(189), 188, /whole number/);
  err(new Uint8Array(376), 188, /sync byte at byte 0/);
});

test('pcr: any bytes give a finite, never decreasing schedule or an InvalidArgumentError (property)', () => {
  const base = tsOf([{ pcr: 0 }, 'es', { pcr: 27_000 }, 'es', { pcr: 54_000 }, 'es']);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(255)), { maxLength: 40 }), fc.boolean(), (flips, random) => {
      const data = random ? new Uint8Array(base.length).map(() => Math.floor(Math.random() * 256)) : base.slice();
      for (const [at, v] of flips) data[at] = v;
      for (let o = 0; o < data.length && random; o += 188) data[o] = 0x47;
      try {
        const { dueMs, passMs } = pcrSchedule(data, 188);
        for (let k = 1; k < dueMs.length; k++) assert.ok(Number.isFinite(dueMs[k]!) && dueMs[k]! >= dueMs[k - 1]!);
        assert.ok(Number.isFinite(passMs) && passMs >= dueMs[dueMs.length - 1]!);
      } catch (e) {
        if (!(e instanceof InvalidArgumentError)) throw e;
      }
    }),
    { numRuns: 500 },
  );
});

/** RFC 4571 framing of RTP packets with these (timestamp, ssrc) and `size` bytes each. */
function rtpOf(packets: readonly [number, number?][], size = 100): Uint8Array {
  const out = new Uint8Array(packets.length * (size + 2));
  const v = new DataView(out.buffer);
  packets.forEach(([ts, ssrc = 7], i) => {
    const o = i * (size + 2);
    v.setUint16(o, size);
    out[o + 2] = 0x80;
    out[o + 3] = 96;
    v.setUint16(o + 4, i);
    v.setUint32(o + 6, ts >>> 0);
    v.setUint32(o + 10, ssrc);
  });
  return out;
}

test('rtp: due at (ts − ts₀) / clock rate; wrap, B-frame reorder, jumps and SSRC changes', () => {
  const r = rtpSchedule(rtpOf([[1000], [1000], [4600], [8200]]), 1500);
  assert.deepEqual([...r.dueMs], [0, 0, 40, 80]);
  close(r.passMs, 120, 'pass: the median step after the last');
  assert.deepEqual([...r.framed!.offsets], [2, 104, 206, 308]);
  assert.equal(rtpSchedule(rtpOf([[0], [480]]), 1500, 48_000).dueMs[1], 10);
  // Wrap of the 32-bit timestamp.
  assert.deepEqual([...rtpSchedule(rtpOf([[0xffffffff - 899], [2700]]), 1500).dueMs], [0, 40]);
  // Presentation order going back a frame: never due before the packet ahead.
  assert.deepEqual([...rtpSchedule(rtpOf([[0], [7200], [3600], [10800]]), 1500).dueMs], [0, 80, 80, 120]);
  // A jump of an hour, and an SSRC change: the new base starts with the previous packet.
  assert.deepEqual([...rtpSchedule(rtpOf([[0], [3600], [3600 + 90_000 * 3600], [3600 + 90_000 * 3600 + 3600]]), 1500).dueMs], [0, 40, 40, 80]);
  assert.deepEqual([...rtpSchedule(rtpOf([[0], [3600], [999, 8], [4599, 8]]), 1500).dueMs], [0, 40, 40, 80]);
});

test('rtp: bad framing, not RTP, too large or a bad clock rate is a clear InvalidArgumentError', () => {
  const err = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message));
  err(() => rtpSchedule(new Uint8Array(0), 1500), /no RTP packet/);
  err(() => rtpSchedule(rtpOf([[0]]).subarray(0, 50), 1500), /claims 100 bytes/);
  err(() => rtpSchedule(new Uint8Array([0]), 1500), /cut off/);
  const v1 = rtpOf([[0]]);
  v1[2] = 0x40;
  err(() => rtpSchedule(v1, 1500), /not RTP version 2/);
  err(() => rtpSchedule(rtpOf([[0]]), 50), /more than the packet size/);
  err(() => rtpSchedule(rtpOf([[0]]), 1500, 0), /clock rate/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (data) => {
      try {
        const { dueMs } = rtpSchedule(data, 1500);
        for (let k = 1; k < dueMs.length; k++) assert.ok(Number.isFinite(dueMs[k]!) && dueMs[k]! >= dueMs[k - 1]!);
      } catch (e) {
        if (!(e instanceof InvalidArgumentError)) throw e;
      }
    }),
    { numRuns: 500 },
  );
});
