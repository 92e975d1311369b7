/**
 * Property tests of the TS monitor (src/media/ts-monitor.ts), a parser of
 * network input: arbitrary bytes, packet-shaped garbage aimed at its PSI
 * and PCR paths, and hostile mutations of a valid multiplex (bit flips,
 * lying lengths, truncations, datagrams dropped, repeated or swapped) never
 * make it throw; its counters stay non-negative integers, its packet count
 * is exactly the whole 188-byte packets it was given, and its alarms
 * alternate raise/clear per kind and PID.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TS_PACKET_SIZE } from '../../src/wire/mpegts/packet.js';
import { createTsMonitor } from '../../src/media/ts-monitor.js';
import { MEDIA_ALARM_KINDS, type MediaAlarm, type MediaStats } from '../../src/media/monitor-types.js';
import { TsMux } from '../unit/ts-mux.js';
import { mutate, mutation, type Mutation } from './decoder-props.js';

type Op = { readonly kind: 'push' | 'packets'; readonly bytes: Uint8Array; readonly dt: number } | { readonly kind: 'tick'; readonly dt: number };

/** Feeds the ops on a clock that moves by each op's dt; returns the stats and the alarms, checking the invariants. */
function runOps(ops: readonly Op[], pidTimeoutMs?: number): MediaStats {
  const alarms: MediaAlarm[] = [];
  const m = createTsMonitor({ onAlarm: (a) => alarms.push(a), pidTimeoutMs });
  let now = 0;
  let packets = 0;
  let datagrams = 0;
  for (const op of ops) {
    now += op.dt;
    if (op.kind === 'tick') m.tick(now);
    else {
      if (op.kind === 'push') {
        m.push(op.bytes, now);
        datagrams++;
      } else m.pushPackets(op.bytes, now);
      packets += Math.floor(op.bytes.length / TS_PACKET_SIZE);
    }
  }
  m.tick(now + 10_000);
  const s = m.stats();
  assert.equal(s.datagrams, datagrams);
  const ts = s.ts!;
  assert.equal(ts.packets, packets);
  for (const [k, v] of Object.entries(ts)) {
    if (k === 'pids') continue;
    assert.ok(Number.isFinite(v) && v >= 0 && (k === 'bitrate' || Number.isInteger(v)), `${k} = ${v}`);
  }
  let sum = 0;
  for (const p of ts.pids) {
    assert.ok(p.pid >= 0 && p.pid <= 0x1fff && p.packets >= 0 && p.ccErrors >= 0 && p.bitrate >= 0 && Number.isFinite(p.bitrate), JSON.stringify(p));
    assert.equal(typeof p.kind, 'string');
    sum += p.ccErrors;
  }
  assert.equal(sum, ts.ccError, 'per-PID CC errors add up');
  for (const k of s.activeAlarms) assert.ok((MEDIA_ALARM_KINDS as readonly string[]).includes(k));
  const up = new Set<string>();
  for (const a of alarms) {
    const key = `${a.kind}/${a.pid}`;
    assert.equal(up.has(key), a.state === 'cleared', `${a.state} ${key} out of turn`);
    if (a.state === 'raised') up.add(key);
    else up.delete(key);
    assert.ok(a.detail.length > 0);
  }
  return s;
}

const dt = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 7000 }));

/** Packets with a good sync byte and a header from a few PIDs, so garbage reaches the PSI, CC and PCR code. */
const packetLike = fc
  .tuple(
    fc.constantFrom(0, 0x10, 0x100, 0x101, 0x1000, 0x1fff),
    fc.nat(255),
    fc.nat(255),
    fc.uint8Array({ minLength: 184, maxLength: 184 }),
    fc.constantFrom(0, 1, 2, 7, 183, 184, 255),
  )
  .map(([pid, flags, b3, rest, afLen]) => {
    const p = new Uint8Array(TS_PACKET_SIZE);
    p[0] = 0x47;
    p[1] = (flags & 0xe0) | (pid >> 8);
    p[2] = pid & 0xff;
    p[3] = b3;
    p.set(rest, 4);
    if (b3 & 0x20) p[4] = afLen;
    return p;
  });

const chunk = fc.oneof(
  fc.uint8Array({ maxLength: 1400 }),
  fc.array(packetLike, { minLength: 1, maxLength: 7 }).map((ps) => {
    const out = new Uint8Array(ps.length * TS_PACKET_SIZE);
    ps.forEach((p, i) => out.set(p, i * TS_PACKET_SIZE));
    return out;
  }),
);

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), bytes: chunk, dt }),
  fc.record({ kind: fc.constant('packets' as const), bytes: chunk, dt }),
  fc.record({ kind: fc.constant('tick' as const), dt }),
);

test('TS monitor: arbitrary bytes and packet-shaped garbage never throw; counters stay sane (property)', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined }), (ops, pidTimeoutMs) => {
      runOps(ops, pidTimeoutMs);
    }),
    { numRuns: 300 },
  );
});

/** 1.5 s of a valid multiplex with a PMT spanning two packets, as 7-packet datagrams with their times. */
const VALID: { bytes: Uint8Array; timeMs: number }[] = (() => {
  const streams = Array.from({ length: 36 }, (_, i) => ({ streamType: 0x06, elementaryPid: 0x200 + i }));
  const mux = new TsMux({ bitrateBps: 2_000_000, extraStreams: streams });
  const packets = mux.take(1500);
  const out: { bytes: Uint8Array; timeMs: number }[] = [];
  for (let i = 0; i < packets.length; i += 7) {
    const group = packets.slice(i, i + 7);
    const d = new Uint8Array(group.length * TS_PACKET_SIZE);
    group.forEach((p, j) => d.set(p.bytes, j * TS_PACKET_SIZE));
    out.push({ bytes: d, timeMs: group[0]!.timeMs });
  }
  return out;
})();

type StreamEdit = { readonly op: 'mutate'; readonly at: number; readonly m: Mutation } | { readonly op: 'drop' | 'repeat' | 'swap'; readonly at: number };

const edit: fc.Arbitrary<StreamEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('mutate' as const), at: fc.nat(), m: mutation }) },
  fc.record({ op: fc.constantFrom('drop' as const, 'repeat' as const, 'swap' as const), at: fc.nat() }),
);

test('TS monitor: hostile mutations of a valid stream never throw; counters stay sane (property)', () => {
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 12 }), fc.boolean(), (edits, asPackets) => {
      const ds = VALID.map((d) => ({ ...d }));
      for (const e of edits) {
        const i = e.at % ds.length;
        if (e.op === 'mutate') ds[i] = { ...ds[i]!, bytes: mutate(ds[i]!.bytes, e.m) };
        else if (e.op === 'drop' && ds.length > 1) ds.splice(i, 1);
        else if (e.op === 'repeat') ds.splice(i, 0, ds[i]!);
        else if (e.op === 'swap' && i + 1 < ds.length) [ds[i], ds[i + 1]] = [ds[i + 1]!, ds[i]!];
      }
      const ops: Op[] = [];
      let last = 0;
      for (const d of ds) {
        ops.push({ kind: asPackets ? 'packets' : 'push', bytes: d.bytes, dt: Math.max(0, d.timeMs - last) });
        last = Math.max(last, d.timeMs);
        if (ops.length % 20 === 0) ops.push({ kind: 'tick', dt: 0 });
      }
      runOps(ops);
    }),
    { numRuns: 150 },
  );
});

test('TS monitor: the unmutated stream is clean (the property above starts from a valid stream)', () => {
  const s = runOps(VALID.map((d, i) => ({ kind: 'push' as const, bytes: d.bytes, dt: i === 0 ? d.timeMs : d.timeMs - VALID[i - 1]!.timeMs })));
  const ts = s.ts!;
  assert.deepEqual([ts.ccError, ts.patError, ts.pmtError, ts.syncByteError, ts.crcError, ts.sectionError], [0, 0, 0, 0, 0, 0]);
  assert.equal(ts.pids.length, 5 + 36);
});
