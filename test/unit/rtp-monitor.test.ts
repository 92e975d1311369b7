/**
 * The RTP monitor (src/media/rtp-monitor.ts) on a fake clock: exact counts
 * for generated streams with known drops, reorders, duplicates, an SSRC
 * change, a sequence wrap, a restart and a packet later than MAX_MISORDER;
 * jitter against a hand-computed value; alarms raised and cleared once per
 * episode. And createMonitor's TS-inside-RTP composition with a stub TS monitor.
 *
 * RFC 3550 A.1 puts a new source on probation: its first packet is not
 * counted, so a stream of N packets expects N − 1 (from the second one on).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRtpMonitor } from '../../src/media/rtp-monitor.js';
import { createMonitor, type TsMonitorLike } from '../../src/media/monitor.js';
import type { MediaAlarm, MediaStats, MonitorOptions, StreamMonitor } from '../../src/media/monitor-types.js';
import { buildRtcpRr, buildRtcpSr, buildRtp, concat } from '../../harness/traffic/rtp.js';

interface Pkt {
  readonly seq: number;
  readonly ssrc?: number;
  readonly ts?: number;
  readonly payload?: Uint8Array;
}

/** Pushes packets 10 ms apart starting at `startMs`, ticking every 100 ms of the clock; returns the end time. */
function run(mon: StreamMonitor, pkts: readonly Pkt[], startMs = 0, stepMs = 10): number {
  let t = startMs;
  for (const p of pkts) {
    if (t % 100 === 0) mon.tick(t);
    mon.push(buildRtp({ seq: p.seq, timestamp: p.ts ?? p.seq * 3600, ssrc: p.ssrc ?? 0x1111, payload: p.payload ?? new Uint8Array(16) }), t);
    t += stepMs;
  }
  return t;
}

/** Ticks every 100 ms from `fromMs` to `toMs` inclusive. */
function idle(mon: StreamMonitor, fromMs: number, toMs: number): void {
  for (let t = Math.ceil(fromMs / 100) * 100; t <= toMs; t += 100) mon.tick(t);
}

const seqs = (from: number, n: number): Pkt[] => Array.from({ length: n }, (_, i) => ({ seq: (from + i) & 0xffff }));
const rtp = (s: MediaStats) => s.rtp!;

test('a clean stream: everything expected arrives, nothing lost, reordered or duplicated', () => {
  const mon = createRtpMonitor();
  run(mon, seqs(1000, 500));
  const s = mon.stats();
  assert.equal(s.payload, 'rtp');
  assert.equal(s.datagrams, 500);
  assert.deepEqual(
    { ...rtp(s), jitterMs: 0 },
    {
      packets: 500,
      malformed: 0,
      rtcp: 0,
      ssrc: 0x1111,
      ssrcChanges: 0,
      expected: 499,
      lost: 0,
      reordered: 0,
      duplicates: 0,
      jitterMs: 0,
      payloadType: 33,
    },
  );
});

test('known drops, reorders and duplicates are counted exactly, across the 65535 → 0 wrap', () => {
  const stream = seqs(65_000, 1500); // wraps after 536 packets
  const dropped = new Set([10, 11, 12, 300, 535, 536, 537, 900, 1400]);
  const out: Pkt[] = stream.filter((_, i) => !dropped.has(i));
  // Swap 4 neighbouring pairs (one across the wrap), then repeat 5 packets: 3 at once, 2 fifty packets later.
  const swapAt = [100, 200, 530, 1000];
  for (const i of swapAt) [out[i], out[i + 1]] = [out[i + 1]!, out[i]!];
  const dupOf = [50, 400, 700];
  for (const i of dupOf.toReversed()) out.splice(i + 1, 0, out[i]!);
  out.splice(1200, 0, out[1150]!, out[1160]!);
  const mon = createRtpMonitor();
  run(mon, out);
  const r = rtp(mon.stats());
  assert.equal(r.packets, out.length);
  assert.equal(r.expected, 1499, 'from the second packet to the last, across the wrap');
  assert.equal(r.lost, dropped.size);
  assert.equal(r.reordered, swapAt.length);
  assert.equal(r.duplicates, dupOf.length + 2);
});

test('a packet later than MAX_MISORDER is reordered but stays lost (A.1 does not count it); no restart follows', () => {
  const out = seqs(0, 400);
  const [late] = out.splice(100, 1);
  out.splice(100 + 150, 0, late!); // arrives 150 packets late
  const mon = createRtpMonitor();
  run(mon, out);
  const r = rtp(mon.stats());
  assert.deepEqual([r.expected, r.lost, r.reordered, r.duplicates], [399, 1, 1, 0]);
  // Within MAX_MISORDER it is received: lost 0.
  const near = seqs(0, 400);
  const [p] = near.splice(100, 1);
  near.splice(100 + 60, 0, p!);
  const mon2 = createRtpMonitor();
  run(mon2, near);
  const r2 = rtp(mon2.stats());
  assert.deepEqual([r2.expected, r2.lost, r2.reordered], [399, 0, 1]);
});

test('a sender restarting its numbering (two sequential packets after a big jump) starts a new epoch, not a loss', () => {
  const mon = createRtpMonitor();
  run(mon, [...seqs(0, 100), ...seqs(20_000, 100)]);
  const r = rtp(mon.stats());
  // Epoch 1: seq 1..99 (probation took 0). Epoch 2 starts at 20001 (20000 was the jump A.1 waits to confirm).
  assert.deepEqual([r.expected, r.lost, r.reordered, r.duplicates, r.ssrcChanges], [99 + 99, 0, 0, 0, 0]);
  // A lone jump is ignored (not counted received, not lost) and the stream goes on.
  const mon2 = createRtpMonitor();
  run(mon2, [...seqs(0, 50), { seq: 40_000 }, ...seqs(50, 50)]);
  const r2 = rtp(mon2.stats());
  assert.deepEqual([r2.expected, r2.lost], [99, 0]);
});

test('an SSRC change: new per-source state after probation, totals accumulate, alarm raised once and cleared after 1 s', () => {
  const alarms: MediaAlarm[] = [];
  const mon = createRtpMonitor({ onAlarm: (a) => alarms.push(a) });
  const a = seqs(100, 200).filter((_, i) => i !== 50 && i !== 60);
  const b = seqs(60_000, 300)
    .filter((_, i) => i !== 100 && i !== 101 && i !== 250)
    .map((p) => ({ ...p, ssrc: 0x2222 }));
  // One stray packet of a third SSRC in the middle of A is not a change.
  a.splice(120, 0, { seq: 7, ssrc: 0x3333 });
  const end = run(mon, [...a, ...b]);
  idle(mon, end, end + 1500);
  const r = rtp(mon.stats());
  assert.equal(r.ssrc, 0x2222);
  assert.equal(r.ssrcChanges, 1);
  // A expects 199 (seq 101..299), B 299 (its 2nd packet 60001 to its last 60299).
  assert.equal(r.expected, 199 + 299);
  assert.equal(r.lost, 2 + 3);
  const changes = alarms.filter((x) => x.kind === 'rtpSsrcChange');
  assert.deepEqual(
    changes.map((x) => x.state),
    ['raised', 'cleared'],
  );
  assert.match(changes[0]!.detail, /0x00001111 → 0x00002222/);
  assert.ok(changes[1]!.atMs - changes[0]!.atMs >= 1000 && changes[1]!.atMs - changes[0]!.atMs < 1100);
  assert.deepEqual(mon.stats().activeAlarms, []);
});

test('interarrival jitter (A.8) matches a hand computation, in ms at the configured clock', () => {
  const mon = createRtpMonitor({ rtpClockRate: 90_000 });
  // RTP timestamps 3000 apart; arrivals 0, 40, 70, 100 ms = 0, 3600, 6300, 9000 in 90 kHz units.
  // D = 600, -300, -300 → J = 600/16 = 37.5; 37.5 + (300 − 37.5)/16 = 53.90625; 53.90625 + (300 − 53.90625)/16 = 69.287109375.
  const arrivals = [0, 40, 70, 100];
  arrivals.forEach((t, i) => mon.push(buildRtp({ seq: i, timestamp: 0xffff_f000 + 3000 * i, ssrc: 1 }), t)); // wraps the 32-bit timestamp
  assert.ok(Math.abs(rtp(mon.stats()).jitterMs - (69.287109375 / 90_000) * 1000) < 1e-9);
  // At 8 kHz the same timestamps are 375 ms apart.
  const slow = createRtpMonitor({ rtpClockRate: 8000 });
  [0, 375, 750].forEach((t, i) => slow.push(buildRtp({ seq: i, timestamp: 3000 * i, ssrc: 1 }), t));
  assert.ok(Math.abs(rtp(slow.stats()).jitterMs) < 1e-9);
});

test('rtpLoss: raised once for a lossy episode, cleared once after a full second without loss', () => {
  const alarms: MediaAlarm[] = [];
  const mon = createRtpMonitor({ onAlarm: (a) => alarms.push(a) });
  let t = run(mon, seqs(0, 100)); // 1 s clean
  t = run(
    mon,
    seqs(100, 300).filter((p) => p.seq % 10 !== 5),
    t,
  ); // 3 s with a loss every 100 ms
  const lossEnd = t;
  t = run(mon, seqs(400, 300), t); // 3 s clean
  const loss = alarms.filter((a) => a.kind === 'rtpLoss');
  assert.deepEqual(
    loss.map((a) => a.state),
    ['raised', 'cleared'],
  );
  assert.ok(loss[0]!.atMs >= 1000 && loss[0]!.atMs <= 1300, `raised at ${loss[0]!.atMs}`);
  assert.ok(loss[1]!.atMs >= lossEnd + 1000 && loss[1]!.atMs <= lossEnd + 1300, `cleared at ${loss[1]!.atMs}`);
  assert.equal(rtp(mon.stats()).lost, 30);
  // Reordering within a tick is not loss.
  const calm: MediaAlarm[] = [];
  const mon2 = createRtpMonitor({ onAlarm: (a) => calm.push(a) });
  const out = seqs(0, 500);
  for (let i = 20; i < 490; i += 7) [out[i], out[i + 1]] = [out[i + 1]!, out[i]!];
  run(mon2, out);
  assert.deepEqual(calm, []);
  assert.equal(rtp(mon2.stats()).reordered, 68); // i = 20, 27, …, 489
});

test('streamStopped: raised once after stopTimeoutMs of silence (checked in tick), cleared by the next datagram', () => {
  const alarms: MediaAlarm[] = [];
  const mon = createRtpMonitor({ stopTimeoutMs: 500, onAlarm: (a) => alarms.push(a) });
  const t = run(mon, seqs(0, 10));
  idle(mon, t, t + 2000);
  assert.deepEqual(
    alarms.map((a) => [a.kind, a.state, a.atMs]),
    [['streamStopped', 'raised', 600]],
  );
  assert.deepEqual(mon.stats().activeAlarms, ['streamStopped']);
  run(mon, seqs(10, 5), t + 2050);
  assert.deepEqual(
    alarms.map((a) => [a.kind, a.state, a.atMs]),
    [
      ['streamStopped', 'raised', 600],
      ['streamStopped', 'cleared', t + 2050],
    ],
  );
  // A flow that never received anything has no stream to stop (as the TS monitor): no alarm.
  const never: MediaAlarm[] = [];
  const quiet = createRtpMonitor({ onAlarm: (a) => never.push(a) });
  idle(quiet, 5000, 9000);
  assert.deepEqual(never, []);
});

test('malformed datagrams are counted; RTCP on the RTP port is counted apart; neither touches the sequence figures', () => {
  const mon = createRtpMonitor();
  let t = run(mon, seqs(0, 20));
  const bad = [
    new Uint8Array(0),
    new Uint8Array(11),
    Uint8Array.from([0x40, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
    Uint8Array.from([0x8f, 33, ...new Uint8Array(20)]),
  ];
  for (const b of bad) mon.push(b, t++);
  const sr = buildRtcpSr(0x1111, { ntpSeconds: 1, ntpFraction: 2, rtpTimestamp: 3, packetCount: 20, octetCount: 320 });
  mon.push(concat(sr, buildRtcpRr(0x1111)), t++);
  // Looks like RTCP by its second byte, but is not valid RTCP: parsed as RTP (PT 72 with the marker), a valid packet.
  mon.push(buildRtp({ seq: 20, timestamp: 0, ssrc: 0x1111, payloadType: 72, marker: true, payload: new Uint8Array(100) }), t++);
  run(mon, seqs(21, 20), t);
  const s = mon.stats();
  assert.equal(s.datagrams, 20 + bad.length + 1 + 1 + 20);
  assert.deepEqual([rtp(s).packets, rtp(s).malformed, rtp(s).rtcp, rtp(s).expected, rtp(s).lost], [41, bad.length, 1, 40, 0]);
});

/** A TS monitor stand-in recording what it was given. */
function stubTs(options: MonitorOptions, log: { packets: Uint8Array[]; datagrams: Uint8Array[] }): TsMonitorLike {
  return {
    push: (d) => void log.datagrams.push(d),
    pushPackets: (buf) => void log.packets.push(Uint8Array.from(buf)),
    tick: (nowMs) => {
      if (nowMs === 500) options.onAlarm?.({ kind: 'streamStopped', state: 'raised', atMs: nowMs, detail: 'stub' });
      if (nowMs === 600) options.onAlarm?.({ kind: 'ccError', state: 'raised', atMs: nowMs, pid: 256, detail: 'stub' });
    },
    stats: () => ({
      payload: 'mpegts',
      datagrams: log.datagrams.length,
      activeAlarms: log.packets.length > 0 ? ['ccError', 'streamStopped'] : [],
      ts: {
        packets: log.packets.reduce((n, b) => n + b.length / 188, 0),
        tsSyncLoss: 0,
        syncByteError: 0,
        patError: 0,
        ccError: 1,
        pmtError: 0,
        pidError: 0,
        pcrRepetitionError: 0,
        pcrDiscontinuityError: 0,
        pcrAccuracyError: 0,
        transportError: 0,
        crcError: 0,
        sectionError: 0,
        bitrate: 0,
        pids: [],
      },
    }),
  };
}

test("createMonitor 'rtp-mpegts': whole TS payloads go to the TS monitor once, the rest is malformed; alarms merge", () => {
  const log = { packets: [] as Uint8Array[], datagrams: [] as Uint8Array[] };
  const alarms: MediaAlarm[] = [];
  const mon = createMonitor('rtp-mpegts', { onAlarm: (a) => alarms.push(a), stopTimeoutMs: 300 }, { createTsMonitor: (o) => stubTs(o, log) });
  const ts = (n: number, fill: number) => new Uint8Array(188 * n).fill(fill);
  run(mon, [
    { seq: 1, payload: ts(7, 1) },
    { seq: 2, payload: ts(7, 2) },
    { seq: 2, payload: ts(7, 2) }, // duplicate: not given twice
    { seq: 3, payload: ts(1, 3) },
    { seq: 4, payload: new Uint8Array(187) }, // not whole TS packets: malformed
    { seq: 5, payload: new Uint8Array(0) }, // empty: malformed
  ]);
  idle(mon, 100, 700);
  assert.deepEqual(
    log.packets.map((p) => [p.length, p[0]]),
    [
      [1316, 1],
      [1316, 2],
      [188, 3],
    ],
  );
  assert.equal(log.datagrams.length, 0);
  const s = mon.stats();
  assert.equal(s.payload, 'rtp-mpegts');
  assert.equal(s.datagrams, 6);
  assert.deepEqual([s.rtp!.packets, s.rtp!.malformed, s.rtp!.duplicates, s.rtp!.expected, s.rtp!.lost], [6, 2, 1, 4, 0]);
  assert.equal(s.ts!.packets, 15);
  // The TS monitor's streamStopped is dropped (the RTP monitor owns it); its ccError passes; the RTP one raised once.
  assert.deepEqual(
    alarms.map((a) => [a.kind, a.state]),
    [
      ['streamStopped', 'raised'],
      ['ccError', 'raised'],
    ],
  );
  assert.deepEqual(s.activeAlarms, ['ccError', 'streamStopped']);
});

test("createMonitor: 'rtp' needs no TS factory, 'mpegts' is the TS monitor itself, a missing factory is a clear error", () => {
  assert.equal(createMonitor('rtp', {}).stats().payload, 'rtp');
  const log = { packets: [] as Uint8Array[], datagrams: [] as Uint8Array[] };
  let made: TsMonitorLike | undefined;
  const mon = createMonitor('mpegts', {}, { createTsMonitor: (o) => (made = stubTs(o, log)) });
  assert.equal(mon, made);
  assert.throws(() => createMonitor('mpegts', {}), { code: 'SLUICE_ERR_INVALID_ARGUMENT' });
  assert.throws(() => createMonitor('rtp-mpegts', {}), { code: 'SLUICE_ERR_INVALID_ARGUMENT' });
});
