/**
 * The stream monitors in the conformance suite: the same RTP and MPEG-TS
 * streams, with the same injected faults, give the same monitor counts and
 * alarms on every tier (the monitor reads the copy each tier sends its tap),
 * and the tap never shows in the flow's own counters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Flow, MediaAlarm, MonitoredFlowStats, Sluice } from '../../src/index.js';
import type { Receiver, Sender } from '../../harness/traffic/udp.js';
import { buildRtp } from '../../harness/traffic/rtp.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';

export interface MediaSuiteContext {
  sluice(): Sluice;
  receiver(): Promise<Receiver>;
  sender(): Promise<Sender>;
}

async function until(flow: Flow, cond: (s: MonitoredFlowStats) => boolean, what: string, timeoutMs = 15_000): Promise<MonitoredFlowStats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = flow.stats();
    if (cond(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s.media)}`);
    await sleep(20);
  }
}

/** PIDs (not null) that carry payload in a TS datagram: each is one continuity error if the datagram is lost. */
function payloadPids(d: Uint8Array): Set<number> {
  const pids = new Set<number>();
  for (let i = 0; i + 188 <= d.length; i += 188) {
    const pid = ((d[i + 1]! & 0x1f) << 8) | d[i + 2]!;
    if (pid !== 0x1fff && (d[i + 3]! >> 4) & 1) pids.add(pid);
  }
  return pids;
}

export function defineMediaConformance(ctx: MediaSuiteContext): void {
  test('RTP flows: loss, reordering and duplicates upstream are counted exactly by the monitor; non-RTP is dropped; the tap stays hidden', async () => {
    const [a, b, src] = [await ctx.receiver(), await ctx.receiver(), await ctx.sender()];
    const flow = await ctx.sluice().apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [a.url, b.url], payload: 'rtp' });
    const alarms: MediaAlarm[] = [];
    flow.on('alarm', (x) => alarms.push(x));
    const lost = new Set([50, 100, 101, 200]);
    const order: number[] = [];
    for (let seq = 0; seq < 300; seq++) if (!lost.has(seq)) order.push(seq);
    order.splice(order.indexOf(150) + 1, 0, 150); // one duplicate
    const i250 = order.indexOf(250);
    [order[i250], order[i250 + 1]] = [order[i250 + 1]!, order[i250]!]; // 251 before 250
    let sent = 0;
    for (const seq of order) {
      await src.send(buildRtp({ seq, timestamp: seq * 3000, ssrc: 0x5eed, payload: new Uint8Array(188).fill(0x47) }), flow.listen.port, '127.0.0.1');
      if (++sent % 20 === 0) await sleep(2);
    }
    await src.send(Buffer.from('plain text, not RTP'), flow.listen.port, '127.0.0.1');
    await src.send(Buffer.alloc(11, 0x80), flow.listen.port, '127.0.0.1');
    await a.waitFor(order.length, 15_000);
    await b.waitFor(order.length, 15_000);
    const st = await until(flow, (s) => s.media?.datagrams === order.length, 'the monitor to read every copy');
    assert.equal(st.drops.malformed, 2);
    assert.equal(st.packetsOut, 2 * order.length, 'the tap copy is not in the flow output');
    assert.deepEqual(st.destinations.map((d) => d.to).sort(), [a.url, b.url].sort());
    const rtp = st.media?.rtp;
    assert.ok(rtp, JSON.stringify(st.media));
    assert.equal(rtp.lost, 4);
    assert.equal(rtp.duplicates, 1);
    assert.equal(rtp.reordered, 1);
    assert.equal(rtp.ssrc, 0x5eed);
    assert.equal(st.media?.unread, 0);
    await until(flow, () => alarms.some((x) => x.kind === 'rtpLoss' && x.state === 'raised'), 'the rtpLoss alarm');
    await flow.remove();
  });

  test('MPEG-TS flows: a datagram lost upstream is one continuity error per PID it carried, alarmed once; PAT and PMT are found', async () => {
    const [r, src] = [await ctx.receiver(), await ctx.sender()];
    const flow = await ctx.sluice().apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: r.url, payload: 'mpegts' });
    const alarms: MediaAlarm[] = [];
    flow.on('alarm', (x) => alarms.push(x));
    const ts = new SyntheticTsStream({ bitrateBps: 2_000_000 });
    const datagrams = Array.from({ length: 300 }, () => Buffer.from(ts.nextDatagram()));
    const dropAt = 150;
    const expectedCc = payloadPids(datagrams[dropAt]!).size;
    assert.ok(expectedCc > 0);
    let sent = 0;
    for (let i = 0; i < datagrams.length; i++) {
      if (i === dropAt) continue;
      await src.send(datagrams[i]!, flow.listen.port, '127.0.0.1');
      if (++sent % 10 === 0) await sleep(2);
    }
    await r.waitFor(sent, 15_000);
    const st = await until(flow, (s) => s.media?.datagrams === sent, 'the monitor to read every copy');
    const t = st.media?.ts;
    assert.ok(t, JSON.stringify(st.media));
    assert.equal(t.ccError, expectedCc);
    assert.equal(
      t.pids.reduce((n, p) => n + p.ccErrors, 0),
      expectedCc,
    );
    assert.equal(t.syncByteError, 0);
    assert.ok(t.pids.some((p) => p.kind === 'PAT'));
    assert.ok(t.pids.some((p) => p.kind === 'PMT'));
    assert.equal(st.packetsOut, sent);
    await until(flow, () => alarms.filter((x) => x.kind === 'ccError' && x.state === 'raised').length === 1, 'one ccError alarm');
    await flow.remove();
  });
}
