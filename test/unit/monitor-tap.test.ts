/**
 * The monitor tap on the portable tier, with a recording monitor: one copy
 * of each accepted datagram reaches the monitor, the tap's copies never show
 * in the flow's counters or destination list, turning monitoring on and off
 * on a running flow opens and closes the tap, and alarms reach the owner.
 * (test/conformance/media-suite.ts runs the real monitors on every tier.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDataPlane } from '../../src/dataplane/tiers.js';
import { PolicyTable } from '../../src/control/policy-table.js';
import { FlowTaps } from '../../src/control/flow-taps.js';
import type { MonitorFactory } from '../../src/control/monitor-tap.js';
import type { MediaAlarm, MediaStats } from '../../src/media/monitor-types.js';
import { openReceiver, openSender } from '../../harness/traffic/udp.js';

/** A monitor that records what it is given and raises one alarm on its first datagram. */
function recordingFactory(seen: Buffer[][]): MonitorFactory {
  return (plan, onAlarm) => {
    const mine: Buffer[] = [];
    seen.push(mine);
    return {
      push(d, now) {
        mine.push(Buffer.from(d));
        if (mine.length === 1) onAlarm({ kind: 'rtpLoss', state: 'raised', atMs: now, detail: 'first datagram' });
      },
      tick() {},
      stats(): MediaStats {
        return { payload: plan.payload, datagrams: mine.length, activeAlarms: [] };
      },
    };
  };
}

function rtpLike(seq: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x80;
  b.writeUInt16BE(seq, 2);
  return b;
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('the monitor tap sees one copy of each accepted datagram and stays out of the flow counters', async () => {
  const plane = await createDataPlane('portable', {});
  const seen: Buffer[][] = [];
  const alarms: [string, MediaAlarm][] = [];
  const table = new PolicyTable(plane, new FlowTaps(recordingFactory(seen), (id, a) => alarms.push([id, a])));
  const [r1, r2, src] = [await openReceiver(), await openReceiver(), await openSender()];
  try {
    const entry = await table.add({ type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [r1.url, r2.url], payload: 'rtp' });
    const tap = table.taps.get(entry.id);
    assert.ok(tap, 'a media payload opens a tap');
    for (let i = 0; i < 50; i++) await src.send(rtpLike(i), entry.listen.port, '127.0.0.1');
    await src.send(Buffer.from('not rtp at all'), entry.listen.port, '127.0.0.1');
    await src.send(Buffer.alloc(8, 0x80), entry.listen.port, '127.0.0.1');
    await r1.waitFor(50);
    await r2.waitFor(50);
    await until(() => table.stats(entry.id)?.media?.datagrams === 50, 'the monitor to see 50 datagrams');

    const st = table.stats(entry.id)!;
    assert.equal(st.packetsIn, 52);
    assert.equal(st.drops.malformed, 2, 'non-RTP datagrams are dropped before any copy');
    assert.equal(st.packetsOut, 100, 'the tap copies are not counted as the flow output');
    assert.deepEqual(st.destinations.map((d) => d.to).sort(), [r1.url, r2.url].sort());
    assert.equal(st.media?.unread, 0);
    assert.deepEqual(
      seen[0]!.map((d) => d.readUInt16BE(2)),
      Array.from({ length: 50 }, (_, i) => i),
      'the monitor gets the accepted datagrams, unchanged, in order',
    );
    assert.equal(alarms.length, 1);
    assert.equal(alarms[0]![0], entry.id);

    const listener: number[] = [];
    const stop = tap.onDatagram((_d, index) => listener.push(index));
    await src.send(rtpLike(50), entry.listen.port, '127.0.0.1');
    await until(() => listener.length === 1, 'a tap listener to see the next datagram');
    assert.deepEqual(listener, [51], 'index counts every datagram the tap received');
    stop();

    await table.update(entry.id, { payload: 'any' });
    assert.equal(table.taps.get(entry.id), undefined, 'payload any: no monitor, the tap is closed');
    assert.equal(table.stats(entry.id)?.media, undefined);
    await table.update(entry.id, { payload: 'mpegts', monitor: false });
    assert.equal(table.taps.get(entry.id), undefined, 'monitor: false opens no tap');
    await table.update(entry.id, { payload: 'rtp', monitor: true });
    assert.ok(table.taps.get(entry.id), 'monitoring turned on again on a running flow');
    assert.deepEqual(
      table.stats(entry.id)!.destinations.map((d) => d.to),
      [r1.url, r2.url],
    );

    const final = await table.remove(entry.id);
    assert.ok(final);
    assert.equal(final.destinations.length, 2);
    assert.equal(table.taps.get(entry.id), undefined, 'remove closes the tap');
  } finally {
    await Promise.all([r1.close(), r2.close(), src.close()]);
    await table.clear();
    await plane.close();
  }
});

test('a flow that fails to start leaves no tap behind', async () => {
  const plane = await createDataPlane('portable', {});
  const table = new PolicyTable(plane, new FlowTaps(recordingFactory([]), () => undefined));
  const r = await openReceiver();
  try {
    const a = await table.add({ type: 'redirect', listen: 'udp://127.0.0.1:0', allow: 'any', to: r.url, payload: 'mpegts' });
    await assert.rejects(table.add({ type: 'redirect', listen: `udp://127.0.0.1:${a.listen.port}`, allow: 'any', to: r.url, payload: 'mpegts' }));
    assert.equal(table.entries().length, 1);
    assert.equal(table.taps.get('f2'), undefined);
  } finally {
    await r.close();
    await table.clear();
    await plane.close();
  }
});
