/**
 * The TS monitor (TR 101 290 priority 1 and the PCR checks of priority 2)
 * on streams built packet by packet (test/unit/ts-mux.ts), on a fake clock:
 * exact counts and exact raise/clear pairs for each fault injected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PID_PAT, TS_PACKET_SIZE } from '../../src/wire/mpegts/packet.js';
import { PCR_MODULUS } from '../../src/wire/mpegts/pcr.js';
import { encodePatSection, encodePmtSection } from '../../src/wire/mpegts/psi.js';
import { createTsMonitor } from '../../src/media/ts-monitor.js';
import { TS_INDICATORS as ERROR_FIELDS, type MediaAlarm, type TsStats } from '../../src/media/monitor-types.js';
import { AUDIO, PMT, TsMux, VIDEO, alarmLines, feed, monitorWithLog, ms, sectionPackets, type MuxPacket } from './ts-mux.js';

/** The error counters that are not zero. */
function errors(ts: TsStats | undefined): Record<string, number> {
  assert.ok(ts);
  const out: Record<string, number> = {};
  for (const f of ERROR_FIELDS) if (ts[f] !== 0) out[f] = ts[f];
  return out;
}

function pidStats(ts: TsStats | undefined, pid: number) {
  const p = ts?.pids.find((x) => x.pid === pid);
  assert.ok(p, `PID 0x${pid.toString(16)} in stats`);
  return p;
}

function run(mux: TsMux, durationMs: number, options: Parameters<typeof monitorWithLog>[0] = {}) {
  const { monitor, alarms } = monitorWithLog(options);
  feed(monitor, mux.take(durationMs));
  return { monitor, alarms, ts: monitor.stats().ts };
}

/** Checks that every raise is followed by its clear, and returns the raise times. */
function pairs(alarms: readonly MediaAlarm[]): MediaAlarm[] {
  const up = new Map<string, MediaAlarm>();
  const raised: MediaAlarm[] = [];
  for (const a of alarms) {
    const k = `${a.kind}/${a.pid}`;
    if (a.state === 'raised') {
      assert.ok(!up.has(k), `${k} raised twice`);
      up.set(k, a);
      raised.push(a);
    } else {
      assert.ok(up.has(k), `${k} cleared without a raise`);
      up.delete(k);
    }
  }
  assert.deepEqual([...up.keys()], [], 'every alarm cleared');
  return raised;
}

test('a clean CBR stream: zero counts, no alarms, every PID with its kind', () => {
  const { monitor, alarms, ts } = run(new TsMux(), 5000);
  assert.deepEqual(errors(ts), {});
  assert.deepEqual(alarms, []);
  assert.deepEqual(monitor.stats().activeAlarms, []);
  assert.deepEqual(
    ts!.pids.map((p) => [p.pid, p.kind, p.ccErrors]),
    [
      [0, 'PAT', 0],
      [VIDEO, 'H.264', 0],
      [AUDIO, 'AAC', 0],
      [PMT, 'PMT', 0],
      [0x1fff, 'null', 0],
    ],
  );
  assert.equal(
    ts!.packets,
    ts!.pids.reduce((s, p) => s + p.packets, 0),
  );
  assert.equal(monitor.stats().payload, 'mpegts');
});

test('bitrate per PID over the last full second is within 1 % of the multiplex shares (10 Mbit/s: 60 % video, 20 % audio)', () => {
  const { ts } = run(new TsMux({ bitrateBps: 10_000_000 }), 3500);
  const near = (got: number, want: number, what: string) => assert.ok(Math.abs(got - want) <= want * 0.01, `${what}: ${got} vs ${want}`);
  near(ts!.bitrate, 10_000_000, 'total');
  near(pidStats(ts, VIDEO).bitrate, 6_000_000, 'video');
  near(pidStats(ts, AUDIO).bitrate, 2_000_000, 'audio');
  // PAT and PMT: one 188-byte packet every 100 ms each.
  near(pidStats(ts, PID_PAT).bitrate, 15_040, 'PAT');
});

test('one lost video packet: ccError 1 on that PID and one raise/clear pair', () => {
  const mux = new TsMux();
  const packets = mux.take(4000);
  const lost = packets.findIndex((p) => p.pid === VIDEO && p.pcr < 0 && p.timeMs >= 2000);
  packets.splice(lost, 1);
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets, { untilMs: 4000 });
  const ts = monitor.stats().ts;
  assert.deepEqual(errors(ts), { ccError: 1 });
  assert.equal(pidStats(ts, VIDEO).ccErrors, 1);
  assert.equal(pidStats(ts, AUDIO).ccErrors, 0);
  assert.deepEqual(alarmLines(alarms), ['raised ccError 0x100', 'cleared ccError 0x100']);
  assert.ok(alarms[0]!.atMs >= 2000 && alarms[0]!.atMs < 2002);
  assert.ok(alarms[1]!.atMs - alarms[0]!.atMs >= 1000, 'cleared after a full interval without the condition');
  assert.match(alarms[0]!.detail, /PID 0x0100: CC \d+ after \d+/);
});

test('a packet repeated once is legal; a third copy is a CC error; an adaptation-only packet keeps the CC', () => {
  const mux = new TsMux();
  const packets = mux.take(3500);
  const i = packets.findIndex((p) => p.pid === AUDIO && p.timeMs >= 1000);
  packets.splice(i + 1, 0, packets[i]!); // one repeat: legal
  const j = packets.findIndex((p) => p.pid === AUDIO && p.timeMs >= 2000);
  packets.splice(j + 1, 0, packets[j]!, packets[j]!); // two repeats: the third copy is an error
  // An adaptation-only packet carries the CC of the last payload packet.
  const k = packets.findIndex((p) => p.pid === VIDEO && p.timeMs >= 1500);
  const af = new Uint8Array(TS_PACKET_SIZE).fill(0xff);
  af.set(packets[k]!.bytes.subarray(0, 4));
  af[3] = (af[3]! & 0xcf) | 0x20; // adaptation_field_control 10
  af[4] = 183;
  af[5] = 0;
  packets.splice(k + 1, 0, { ...packets[k]!, bytes: af, pcr: -1 });
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets);
  const ts = monitor.stats().ts;
  assert.deepEqual(errors(ts), { ccError: 1 });
  assert.equal(pidStats(ts, AUDIO).ccErrors, 1);
  assert.deepEqual(alarmLines(alarms), ['raised ccError 0x101', 'cleared ccError 0x101']);
  assert.match(alarms[0]!.detail, /a third time/);
});

test('discontinuity_indicator allows a CC jump', () => {
  const mux = new TsMux();
  mux.pcrDiscontinuity = (t, k) => k === 100;
  const packets = mux.take(3000);
  const at = packets.findIndex((p) => p.pid === VIDEO && p.pcr >= 0 && p.timeMs >= 2000);
  assert.ok(at > 0);
  // Jump the CC of the packet with the discontinuity flag (k = 100, ~2 s) and every later video packet by 5.
  let seenDisc = false;
  for (const p of packets) {
    if (p.pid !== VIDEO) continue;
    if (!seenDisc && p.pcr >= 0 && p.bytes[5]! & 0x80) seenDisc = true;
    if (seenDisc) p.bytes[3] = (p.bytes[3]! & 0xf0) | (((p.bytes[3]! & 0x0f) + 5) & 0x0f);
  }
  assert.ok(seenDisc);
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets, { untilMs: 3000 });
  assert.deepEqual(errors(monitor.stats().ts), {});
  assert.deepEqual(alarms, []);
});

test('PAT withheld for 0.6 s: patError 1, raised while missing and cleared a full interval after it returns', () => {
  const mux = new TsMux();
  mux.skipPat = (due) => due >= 2000 && due < 2600; // last PAT at 1.9 s, next at 2.6 s
  const { alarms, ts } = run(mux, 4000);
  assert.deepEqual(errors(ts), { patError: 1 });
  assert.deepEqual(alarmLines(alarms), ['raised patError 0x0', 'cleared patError 0x0']);
  assert.equal(alarms[0]!.atMs, 2500, 'the first tick more than 0.5 s after the last PAT');
  assert.ok(alarms[1]!.atMs >= 2600 + 1000 - 100);
  assert.match(alarms[0]!.detail, /no PAT for (599|600) ms/);
});

test('PAT missing for 1.1 s counts once per 0.5 s, whatever the tick period', () => {
  for (const tickMs of [100, 50, 1000]) {
    const mux = new TsMux();
    mux.skipPat = (due) => due >= 2000 && due < 3000; // 1.9 s → 3.0 s
    const { monitor } = monitorWithLog();
    feed(monitor, mux.take(4000), { tickMs });
    assert.deepEqual(errors(monitor.stats().ts), { patError: 2 }, `tick every ${tickMs} ms`);
  }
});

test('PID 0 with another table_id, and scrambled PID 0: patError each', () => {
  const mux = new TsMux();
  const packets = mux.take(4000);
  const i = packets.findIndex((p) => p.pid === PID_PAT && p.timeMs >= 1000);
  const wrong = Uint8Array.from(packets[i]!.bytes);
  wrong[5] = 0x42; // table_id of an SDT
  packets[i] = { ...packets[i]!, bytes: wrong };
  const j = packets.findIndex((p) => p.pid === PID_PAT && p.timeMs >= 2500);
  const scrambled = Uint8Array.from(packets[j]!.bytes);
  scrambled[3] = scrambled[3]! | 0x80;
  packets[j] = { ...packets[j]!, bytes: scrambled };
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets);
  assert.deepEqual(errors(monitor.stats().ts), { patError: 2 });
  assert.deepEqual(alarmLines(alarms), ['raised patError 0x0', 'cleared patError 0x0', 'raised patError 0x0', 'cleared patError 0x0']);
  assert.match(alarms[0]!.detail, /table_id 0x42/);
  assert.match(alarms[2]!.detail, /scrambling_control 2/);
});

test('PMT withheld for 0.6 s: pmtError 1 on its PID; a PMT PID the PAT names that never comes: one per 0.5 s', () => {
  const mux = new TsMux();
  mux.skipPmt = (due) => due >= 2000 && due < 2600;
  const { alarms, ts } = run(mux, 4000);
  assert.deepEqual(errors(ts), { pmtError: 1 });
  assert.deepEqual(alarmLines(alarms), ['raised pmtError 0x1000', 'cleared pmtError 0x1000']);

  const two = new TsMux({ extraPrograms: [{ programNumber: 2, pmtPid: 0x1010 }] });
  const { monitor, alarms: a2 } = monitorWithLog();
  feed(monitor, two.take(5000), { untilMs: 5000 });
  // Named at 0 ms; 0.5 s intervals ended at 0.5, 1.0, ..., 4.5 s (5.0 s is not past yet).
  assert.deepEqual(errors(monitor.stats().ts), { pmtError: 9 });
  assert.deepEqual(alarmLines(a2), ['raised pmtError 0x1010']);
  assert.deepEqual(monitor.stats().activeAlarms, ['pmtError']);
  assert.equal(pidStats(monitor.stats().ts, 0x1010).packets, 0);
  assert.equal(pidStats(monitor.stats().ts, 0x1010).kind, 'PMT');
});

test('a new PAT version drops a program: its PMT PID is no longer expected', () => {
  const mux = new TsMux({ extraPrograms: [{ programNumber: 2, pmtPid: 0x1010 }] });
  const { monitor, alarms } = monitorWithLog();
  const first = mux.take(2000);
  mux.pat = encodePatSection({ transportStreamId: 1, version: 1, programs: [{ programNumber: 1, pmtPid: PMT }] });
  feed(monitor, [...first, ...mux.take(5000)]);
  const ts = monitor.stats().ts;
  // Its 0.5 s intervals ended at 0.5, 1.0 and 1.5 s; version 1 came at 2.0 s.
  assert.deepEqual(errors(ts), { pmtError: 3 });
  assert.deepEqual(alarmLines(alarms), ['raised pmtError 0x1010', 'cleared pmtError 0x1010']);
  assert.equal(
    ts!.pids.find((p) => p.pid === 0x1010),
    undefined,
  );
  assert.equal(pidStats(ts, AUDIO).kind, 'AAC', 'program 1 is still known');
});

test('an elementary PID that stops: pidError after 5 s of absence (fake clock), cleared after it returns', () => {
  const mux = new TsMux();
  mux.silence = (pid, t) => pid === AUDIO && t >= 2000 && t < 9000;
  const { alarms, ts } = run(mux, 11000);
  assert.deepEqual(errors(ts), { pidError: 1 });
  assert.deepEqual(alarmLines(alarms), ['raised pidError 0x101', 'cleared pidError 0x101']);
  assert.equal(alarms[0]!.atMs, 7100, 'the first tick whose last datagram came 5 s after its last packet (1999.9 ms)');
  assert.ok(alarms[1]!.atMs >= 10000);

  // A shorter timeout from the options.
  const m2 = new TsMux();
  m2.silence = (pid, t) => pid === AUDIO && t >= 2000 && t < 3500;
  const { ts: ts2 } = run(m2, 4000, { pidTimeoutMs: 1000 });
  assert.deepEqual(errors(ts2), { pidError: 1 });
});

test('PCR gaps of 50 ms: pcrRepetitionError once per gap', () => {
  const mux = new TsMux();
  const gaps = [2000, 3000];
  mux.nextPcrDue = (d) => {
    if (gaps.length === 0 || d < gaps[0]!) return d + 20;
    gaps.shift();
    return d + 50;
  };
  const { alarms, ts } = run(mux, 5000);
  assert.deepEqual(errors(ts), { pcrRepetitionError: 2 });
  assert.deepEqual(alarmLines(alarms), ['raised pcrRepetitionError 0x100', 'cleared pcrRepetitionError 0x100']);
  assert.match(alarms[0]!.detail, /(49|50)\.\d ms between PCRs/);
});

test('PCR repetition: a 60 ms delivery stall of a stream with PCRs every 20 ms is no error; PCRs that stop for 150 ms while data flows are', () => {
  const stalled = new TsMux().take(4000).map((p) => (p.timeMs >= 2000 && p.timeMs < 2060 ? { ...p, timeMs: 2060 } : p));
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, stalled);
  assert.deepEqual(errors(monitor.stats().ts), {});
  assert.deepEqual(alarms, []);

  const mux = new TsMux();
  let done = false;
  mux.nextPcrDue = (d) => {
    if (d < 2000 || done) return d + 20;
    done = true;
    return d + 150;
  };
  const r = run(mux, 4000);
  // The tick at 2.1 s sees no PCR for more than 40 ms while data flows; the PCR at 2.15 s is 150 ms after the last.
  assert.deepEqual(errors(r.ts), { pcrRepetitionError: 1, pcrDiscontinuityError: 1 });
  assert.deepEqual(
    pairs(r.alarms).map((a) => [a.kind, a.atMs]),
    [
      ['pcrRepetitionError', 2100],
      ['pcrDiscontinuityError', r.alarms.find((a) => a.kind === 'pcrDiscontinuityError')!.atMs],
    ],
  );
});

test('a PCR jump of 200 ms: pcrDiscontinuityError without discontinuity_indicator, nothing with it; backwards too', () => {
  const jumpAt = (mux: TsMux, by: number) => (mux.pcrOffset = (t) => (t >= 2000 ? ms(by) : 0));
  const a = new TsMux();
  jumpAt(a, 200);
  const r1 = run(a, 4000);
  assert.deepEqual(errors(r1.ts), { pcrDiscontinuityError: 1 });
  assert.deepEqual(alarmLines(r1.alarms), ['raised pcrDiscontinuityError 0x100', 'cleared pcrDiscontinuityError 0x100']);

  const b = new TsMux();
  jumpAt(b, 200);
  let first = true;
  b.pcrDiscontinuity = (t) => {
    if (t < 2000 || !first) return false;
    first = false;
    return true;
  };
  const r2 = run(b, 4000);
  assert.deepEqual(errors(r2.ts), {});
  assert.deepEqual(r2.alarms, []);

  const c = new TsMux();
  jumpAt(c, -200);
  assert.deepEqual(errors(run(c, 4000).ts), { pcrDiscontinuityError: 1 });
});

test('PCR accuracy on a CBR stream: 2 µs jitter on 10 PCRs gives 10 errors, 100 ns none', () => {
  const jittered = (ns: number) => {
    const mux = new TsMux();
    // PCRs 150..159 (3.0 s..3.2 s), alternately early and late.
    mux.pcrOffset = (_t, k) => (k >= 150 && k < 160 ? ((k % 2 === 0 ? 1 : -1) * ns * 27) / 1000 : 0);
    return run(mux, 6000);
  };
  const big = jittered(2000);
  assert.deepEqual(errors(big.ts), { pcrAccuracyError: 10 });
  assert.deepEqual(alarmLines(big.alarms), ['raised pcrAccuracyError 0x100', 'cleared pcrAccuracyError 0x100']);
  assert.match(big.alarms[0]!.detail, /PCR off by -?20\d\d ns/);
  const small = jittered(100);
  assert.deepEqual(errors(small.ts), {});
  assert.deepEqual(small.alarms, []);
});

test('PCRs across the 26.5 h wrap of the PCR: no error, accuracy still checked', () => {
  const mux = new TsMux();
  const modulus = Number(PCR_MODULUS);
  mux.pcrOffset = (t, k) => modulus - ms(2000) + (k === 200 ? 54 : 0); // wraps at 2 s; PCR 200 (4 s) 2 µs late
  const { ts } = run(mux, 6000);
  assert.deepEqual(errors(ts), { pcrAccuracyError: 1 });
});

test('PCR accuracy is not judged on a stream whose rate varies (VBR)', () => {
  // The PCRs follow a clock that runs 30 % fast for 0.5 s of every 2 s: the bytes no longer follow the clock.
  const mux = new TsMux();
  mux.pcrOffset = (t) => {
    const cycle = Math.floor(t / 2000);
    const inCycle = t - cycle * 2000;
    return ms(cycle * 150 + Math.min(Math.max(inCycle - 1000, 0), 500) * 0.3);
  };
  const { ts } = run(mux, 10000);
  assert.equal(ts!.pcrAccuracyError, 0);
});

test('sync: one bad sync byte is a Sync_byte_error (and a lost packet); two in a row lose sync, five good regain it', () => {
  const mux = new TsMux();
  const packets = mux.take(4000);
  const corrupt = (i: number) => {
    const b = Uint8Array.from(packets[i]!.bytes);
    b[0] = 0x46;
    packets[i] = { ...packets[i]!, bytes: b };
  };
  // Packets without PCR, so that no PCR goes missing with them.
  const one = packets.findIndex((p) => p.pid === VIDEO && p.pcr < 0 && p.timeMs >= 1000);
  corrupt(one);
  const two = packets.findIndex((p, i) => p.timeMs >= 2500 && packets.slice(i, i + 7).every((q) => q.pcr < 0));
  corrupt(two);
  corrupt(two + 1);
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets, { untilMs: 4000 });
  const ts = monitor.stats().ts;
  // The first bad packet was a video packet lost to the monitor: the next one shows the CC gap.
  // After the loss of sync CC expectations start afresh, so the second episode adds no CC error.
  assert.deepEqual(errors(ts), { syncByteError: 3, tsSyncLoss: 1, ccError: 1 });
  assert.deepEqual(alarmLines(pairs(alarms)), ['raised syncByteError', 'raised ccError 0x100', 'raised syncByteError', 'raised tsSyncLoss']);
  assert.deepEqual(monitor.stats().activeAlarms, []);
});

test('sync: a buffer of garbage loses sync; a short tail counts as one sync byte error', () => {
  const m = createTsMonitor();
  m.push(new Uint8Array(188 * 3).fill(0x11), 0);
  assert.deepEqual(errors(m.stats().ts), { syncByteError: 3, tsSyncLoss: 1 });
  assert.deepEqual(m.stats().activeAlarms, ['tsSyncLoss', 'syncByteError']);
  const m2 = createTsMonitor();
  const packets = new TsMux().take(10).map((p) => p.bytes);
  const buf = new Uint8Array(188 * 3 + 100);
  packets.slice(0, 4).forEach((p, i) => buf.set(p.subarray(0, Math.min(188, buf.length - i * 188)), i * 188));
  m2.pushPackets(buf, 0);
  assert.deepEqual(errors(m2.stats().ts), { syncByteError: 1 });
  assert.equal(m2.stats().datagrams, 0, 'pushPackets is not a datagram');
  assert.equal(m2.stats().ts!.packets, 3);
});

test('sections spanning packets: a PMT of 40 streams over two packets; a PAT continued through pointer_field', () => {
  const streams = Array.from({ length: 40 }, (_, i) => ({ streamType: i % 2 === 0 ? 0x24 : 0x81, elementaryPid: 0x200 + i }));
  const mux = new TsMux({ extraStreams: streams });
  const { monitor, ts } = run(mux, 2000);
  assert.deepEqual(errors(ts), {});
  assert.equal(pidStats(ts, 0x200).kind, 'H.265');
  assert.equal(pidStats(ts, 0x227).kind, 'AC-3');
  assert.equal(pidStats(ts, 0x227).packets, 0);
  assert.equal(ts!.pids.length, 5 + 40);
  // They are referenced but never sent: pidError for each after 5 s.
  feed(monitor, mux.take(7000), { startTick: 2100, untilMs: 7000 });
  assert.equal(monitor.stats().ts!.pidError, 40);

  // A PAT whose section starts in one packet and ends, through the next packet's pointer_field, before a new one.
  const pat = encodePatSection({ transportStreamId: 7, programs: [{ programNumber: 1, pmtPid: 0x1000 }] });
  const pmt = encodePmtSection({ programNumber: 1, pcrPid: 0x1fff, streams: [{ streamType: 0x0f, elementaryPid: 0x300 }] });
  const p1 = new Uint8Array(188).fill(0xff);
  p1.set([0x47, 0x40, 0x00, 0x10, 180], 0); // PUSI, CC 0, pointer 180: 180 bytes of an earlier section we never saw
  p1.set(pat.subarray(0, 3), 185); // the new section's first 3 bytes
  const p2 = new Uint8Array(188).fill(0xff);
  p2.set([0x47, 0x40, 0x00, 0x11, pat.length - 3], 0); // PUSI, CC 1, pointer: the rest of the PAT, then a new PAT
  p2.set(pat.subarray(3), 5);
  p2.set(pat, 5 + pat.length - 3);
  const m = createTsMonitor();
  m.push(new Uint8Array([...p1, ...p2, ...sectionPackets(0x1000, pmt, 0)[0]!]), 0);
  const ts2 = m.stats().ts;
  assert.deepEqual(errors(ts2), {});
  assert.equal(pidStats(ts2, 0x300).kind, 'AAC');
});

test('lying PSI: section_length past the next section, over 1021, a pointer past the packet, a bad CRC: counted, nothing else', () => {
  const pat = encodePatSection({ transportStreamId: 1, programs: [{ programNumber: 1, pmtPid: 0x1000 }] });
  const pkt = (cc: number, payload: number[] | Uint8Array) => {
    const p = new Uint8Array(188).fill(0xff);
    p.set([0x47, 0x40, 0x00, 0x10 | cc], 0);
    p.set(payload, 4);
    return p;
  };
  const long = Uint8Array.from(pat);
  long[1] = (long[1]! & 0xf0) | 0x03; // section_length 0x3xx: ~800 bytes, but the next PUSI comes first
  const huge = Uint8Array.from(pat);
  huge[1] = huge[1]! | 0x0f; // section_length ≥ 0xf00: more than any PAT
  const badCrc = Uint8Array.from(pat);
  badCrc[badCrc.length - 1]! ^= 1;
  const m = createTsMonitor();
  m.push(new Uint8Array([...pkt(0, [0, ...long]), ...pkt(1, [0, ...pat]), ...pkt(2, [0, ...huge]), ...pkt(3, [200]), ...pkt(4, [0, ...badCrc])]), 0);
  assert.deepEqual(errors(m.stats().ts), { sectionError: 3, crcError: 1 });
  assert.equal(pidStats(m.stats().ts, PMT).kind, 'PMT', 'the good PAT between them was read');
});

test('transport_error_indicator: counted, no alarm, the packet otherwise ignored', () => {
  const mux = new TsMux();
  const packets = mux.take(2000);
  const i = packets.findIndex((p) => p.pid === 0x1fff && p.timeMs >= 1000);
  const b = Uint8Array.from(packets[i]!.bytes);
  b[1] = b[1]! | 0x80;
  packets[i] = { ...packets[i]!, bytes: b };
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets);
  assert.deepEqual(errors(monitor.stats().ts), { transportError: 1 });
  assert.deepEqual(alarms, []);
});

test('streamStopped after stopTimeoutMs without data, cleared by the next datagram; silence raises nothing else', () => {
  const mux = new TsMux();
  // Whole datagrams (7 packets) from 2 s to 5 s are never sent.
  const all = mux.take(6000);
  const packets: MuxPacket[] = all.filter((_, i) => {
    const t = all[i - (i % 7)]!.timeMs;
    return t < 2000 || t >= 5000;
  });
  const { monitor, alarms } = monitorWithLog();
  feed(monitor, packets);
  const stops = alarms;
  assert.deepEqual(alarmLines(stops), ['raised streamStopped', 'cleared streamStopped']);
  assert.ok(stops[0]!.atMs >= 4000 && alarms[0]!.atMs <= 4100);
  assert.ok(stops[1]!.atMs >= 5000 && stops[1]!.atMs < 5001);
  // After a stop everything starts afresh: no CC, PCR or table error across it.
  assert.deepEqual(errors(monitor.stats().ts), {});
  assert.deepEqual(monitor.stats().activeAlarms, []);
  assert.throws(() => createTsMonitor({ stopTimeoutMs: 0 }), RangeError);
  assert.throws(() => createTsMonitor({ pidTimeoutMs: Number.NaN }), RangeError);
});
