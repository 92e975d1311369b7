/**
 * GET /metrics' text (src/server/metrics.ts): counters equal to a real
 * flow's stats() under real UDP traffic, a valid exposition whatever the
 * names hold, the cap on per-subscriber series (stable and monotonic),
 * TPO metrics from a status object, one reading of the sources per scrape.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Sluice, DESTINATION_DROP_REASONS, FLOW_DROP_REASONS, type DestinationStats, type FlowStats } from '../../src/index.js';
import type { PeerStatus, TpoGatewayStatus } from '../../src/tpo/index.js';
import { createMetrics, OTHER_SUBSCRIBER, type MetricsSource } from '../../src/server/metrics.js';
import { SubscriberCap } from '../../src/server/metrics-subscriber-cap.js';
import { PeerLoss } from '../../src/server/metrics-tpo-loss.js';
import { openReceiver, openSender, sendSequence } from '../../harness/traffic/udp.js';
import { parseExposition, sampleValue, type ParsedFamily } from './metrics-exposition.js';
import { SyntheticTsStream } from '../../src/media/ts-synth.js';

const noDrops = (): FlowStats['drops'] => ({
  sourceNotAllowed: 0,
  malformed: 0,
  tooLarge: 0,
  sendError: 0,
  queueFull: 0,
  relayLoop: 0,
  unreachable: 0,
  suspended: 0,
});
const dest = (to: string, packetsOut: number, drops: Partial<DestinationStats['drops']> = {}): DestinationStats => ({
  to,
  packetsOut,
  bytesOut: packetsOut * 100,
  drops: { sendError: 0, queueFull: 0, unreachable: 0, suspended: 0, ...drops },
});
const flow = (name: string, destinations: DestinationStats[], extra: Partial<FlowStats> = {}): FlowStats => ({
  name,
  type: 'replicate',
  tier: 'portable',
  listen: 'udp://127.0.0.1:5000',
  packetsIn: 10,
  bytesIn: 1000,
  packetsOut: destinations.reduce((n, d) => n + d.packetsOut, 0),
  bytesOut: destinations.reduce((n, d) => n + d.bytesOut, 0),
  drops: noDrops(),
  destinations,
  ...extra,
});
const source = (flows: () => readonly FlowStats[], gateways: () => readonly TpoGatewayStatus[] = () => []): MetricsSource => ({ flows, gateways });
const samplesOf = (fams: Map<string, ParsedFamily>, name: string) => fams.get(name)?.samples ?? [];

describe('metrics: a real flow on the portable tier', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  test('every counter in the text equals stats() after real traffic, drops included', async (t) => {
    const s = await Sluice.open({ tier: 'portable' });
    cleanups.push(() => s.close().then(() => {}));
    const r1 = await openReceiver();
    const r2 = await openReceiver();
    cleanups.push(
      () => r1.close(),
      () => r2.close(),
    );
    // A subscriber whose port is closed: its copies leave and ICMP errors come back (unreachable, where the FFI reads them).
    const gone = await openReceiver();
    await gone.close();
    const f = await s.apply({
      name: 'metrics-test',
      type: 'replicate',
      listen: 'udp://127.0.0.1:0',
      to: [r1.url, r2.url, gone.url],
      allow: '127.0.0.1',
      maxDatagramSize: 1000,
    });
    const src = await openSender('127.0.0.1');
    const stranger = await openSender('127.0.0.2');
    cleanups.push(
      () => src.close(),
      () => stranger.close(),
    );
    await sendSequence(src, f.listen, 300, { size: 200 });
    for (let i = 0; i < 5; i++) await src.send(Buffer.alloc(1200), f.listen.port, f.listen.address);
    for (let i = 0; i < 7; i++) await stranger.send(Buffer.alloc(100), f.listen.port, f.listen.address);
    await r1.waitFor(300);
    await r2.waitFor(300);
    // Wait until the counters stop moving (ICMP errors arrive after the copies).
    let last = JSON.stringify(f.stats());
    for (let i = 0; i < 50; i++) {
      await sleep(50);
      const now = JSON.stringify(f.stats());
      if (now === last && f.stats().packetsIn === 312) break;
      last = now;
    }

    const metrics = createMetrics(
      source(() => s.stats()),
      { node: 'test-node' },
    );
    const fams = parseExposition(await metrics.render());
    const st = f.stats();
    assert.equal(st.packetsIn, 312);
    assert.equal(st.drops.tooLarge, 5);
    assert.equal(st.drops.sourceNotAllowed, 7);
    const l = { flow: 'metrics-test' };
    assert.equal(sampleValue(fams, 'sluice_flow_packets_total', { ...l, direction: 'in', tier: 'portable' }), st.packetsIn);
    assert.equal(sampleValue(fams, 'sluice_flow_packets_total', { ...l, direction: 'out', tier: 'portable' }), st.packetsOut);
    assert.equal(sampleValue(fams, 'sluice_flow_bytes_total', { ...l, direction: 'in' }), st.bytesIn);
    assert.equal(sampleValue(fams, 'sluice_flow_bytes_total', { ...l, direction: 'out' }), st.bytesOut);
    for (const reason of FLOW_DROP_REASONS) assert.equal(sampleValue(fams, 'sluice_flow_drops_total', { ...l, reason }), st.drops[reason], reason);
    assert.equal(sampleValue(fams, 'sluice_subscribers', l), 3);
    assert.equal(sampleValue(fams, 'sluice_flows', { tier: 'portable' }), 1);
    assert.equal(sampleValue(fams, 'sluice_flow_info', { ...l, type: 'replicate', tier: 'portable', listen: st.listen }), 1);
    for (const d of st.destinations) {
      const sl = { ...l, subscriber: d.to };
      assert.equal(sampleValue(fams, 'sluice_subscriber_packets_total', sl), d.packetsOut, d.to);
      assert.equal(sampleValue(fams, 'sluice_subscriber_bytes_total', sl), d.bytesOut, d.to);
      // A drop reason's series exists once it counted something, and then equals it.
      for (const reason of DESTINATION_DROP_REASONS) {
        assert.equal(
          sampleValue(fams, 'sluice_subscriber_drops_total', { ...sl, reason }),
          d.drops[reason] > 0 ? d.drops[reason] : undefined,
          `${d.to} ${reason}`,
        );
      }
    }
    assert.equal(st.destinations.find((d) => d.to === r1.url)?.packetsOut, 300);
    t.diagnostic(`closed-port subscriber: ${JSON.stringify(st.destinations.find((d) => d.to === gone.url)?.drops)}`);
    assert.equal(sampleValue(fams, 'sluice_metrics_series_dropped'), 0);
    // Every series carries the node label, process metrics included.
    for (const fam of fams.values()) for (const x of fam.samples) assert.equal(x.labels.node, 'test-node', `${x.name} has no node label`);
    assert.ok(sampleValue(fams, 'sluice_process_cpu_seconds_total', {})! > 0);
    assert.ok(samplesOf(fams, 'sluice_nodejs_heap_size_used_bytes').length === 1);
  });
});

describe('metrics: stream monitors', () => {
  test('a TS flow with a lost datagram: the TR 101 290 series, per-PID series and the alarm gauge equal stats().media', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const r = await openReceiver();
    const src = await openSender('127.0.0.1');
    try {
      const f = await s.apply({ name: 'tv', type: 'redirect', listen: 'udp://127.0.0.1:0', to: r.url, allow: '127.0.0.1', payload: 'mpegts' });
      const ts = new SyntheticTsStream({ bitrateBps: 2_000_000 });
      let sent = 0;
      for (let i = 0; i < 120; i++) {
        const d = ts.nextDatagram();
        if (i === 60) continue;
        await src.send(d, f.listen.port, '127.0.0.1');
        if (++sent % 10 === 0) await sleep(2);
      }
      for (let i = 0; i < 200 && f.stats().media?.datagrams !== sent; i++) await sleep(20);
      const st = f.stats();
      assert.ok(st.media?.ts && st.media.ts.ccError > 0, JSON.stringify(st.media));
      const fams = parseExposition(await createMetrics(source(() => s.stats())).render());
      const l = { flow: 'tv' };
      assert.equal(sampleValue(fams, 'sluice_media_datagrams_total', l), sent);
      assert.equal(sampleValue(fams, 'sluice_ts_packets_total', l), st.media.ts.packets);
      assert.equal(sampleValue(fams, 'sluice_ts_errors_total', { ...l, indicator: 'ccError' }), st.media.ts.ccError);
      assert.equal(sampleValue(fams, 'sluice_ts_errors_total', { ...l, indicator: 'syncByteError' }), 0);
      for (const p of st.media.ts.pids) {
        assert.equal(sampleValue(fams, 'sluice_ts_pid_cc_errors_total', { ...l, pid: String(p.pid) }), p.ccErrors);
        assert.equal(sampleValue(fams, 'sluice_ts_pid_bitrate_bits_per_second', { ...l, pid: String(p.pid), kind: p.kind }), p.bitrate);
      }
      for (const kind of ['ccError', 'patError', 'rtpLoss'])
        assert.equal(sampleValue(fams, 'sluice_media_alarm', { ...l, kind }), st.media.activeAlarms.includes(kind as never) ? 1 : 0, kind);
      assert.equal(samplesOf(fams, 'sluice_rtp_packets_total').length, 0, 'no RTP series for a TS flow');
      assert.equal(sampleValue(fams, 'sluice_flow_packets_total', { ...l, direction: 'out', tier: 'portable' }), sent, 'the monitor copy is not output');
    } finally {
      await r.close();
      await src.close();
      await s.close();
    }
  });
});

describe('metrics: the exposition format', () => {
  test('hostile names are escaped and read back unchanged; HELP and TYPE head every family; promtool agrees when installed', async (t) => {
    const hostile = 'a"b\nc\\d}{=,';
    const sub = 'udp://[::1]:5000"\n\\';
    const m = createMetrics(
      source(
        () => [flow(hostile, [dest(sub, 5, { queueFull: 2 }), dest('udp://127.0.0.1:1', 7)])],
        () => [gatewayStatus('gw"\n\\', [peer('p"\n\\', { up: true, srttMs: 12.5 })])],
      ),
      { node: 'n"\n\\', version: '1.2.3' },
    );
    const text = await m.render();
    assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    const fams = parseExposition(text);
    for (const fam of fams.values()) {
      assert.ok(fam.help, `${fam.name} has HELP`);
      assert.ok(fam.type, `${fam.name} has TYPE`);
      if (fam.name.startsWith('sluice_') && !fam.name.startsWith('sluice_nodejs_') && !fam.name.startsWith('sluice_process_')) {
        // Prometheus conventions for Sluice's own families: counters end in _total, nothing else does.
        assert.equal(fam.type === 'counter', fam.name.endsWith('_total'), `${fam.name} (${fam.type})`);
      }
    }
    assert.equal(sampleValue(fams, 'sluice_subscriber_packets_total', { flow: hostile, subscriber: sub }), 5);
    assert.equal(sampleValue(fams, 'sluice_subscriber_drops_total', { flow: hostile, subscriber: sub, reason: 'queueFull' }), 2);
    assert.equal(sampleValue(fams, 'sluice_tpo_peer_rtt_seconds', { gateway: 'gw"\n\\', peer: 'p"\n\\', node: 'n"\n\\' }), 0.0125);
    assert.equal(sampleValue(fams, 'sluice_build_info', { version: '1.2.3' }), 1);

    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if (promtool.error) {
      t.diagnostic('promtool not installed (Debian: prometheus): its lint was not run');
      return;
    }
    // promtool's linter flags three gauge names of prom-client's process metrics (kept: dashboards expect them); nothing else.
    const complaints = `${promtool.stdout}${promtool.stderr}`
      .split('\n')
      .filter(
        (x) => x.trim() && !/^sluice_nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/.test(x.trim()),
      );
    assert.deepEqual(complaints, []);
  });

  test("the text and prom-client's JSON (getMetricsAsJSON) give the same series", async () => {
    const m = createMetrics(
      source(
        () => [flow('f"1', [dest('udp://10.0.0.1:1', 3, { unreachable: 2 }), dest('udp://10.0.0.1:2', 4)]), flow('f2', [dest('udp://10.0.0.2:1', 5)])],
        () => [gatewayStatus('g', [peer('p', { up: true, srttMs: 3 })])],
      ),
      { maxSubscriberSeries: 2, processMetrics: false },
    );
    const fromText = [...parseExposition(await m.render()).values()].flatMap((f) => f.samples.map((x) => JSON.stringify([x.name, x.labels, x.value])));
    const json = await m.registry.getMetricsAsJSON();
    const fromJson = json.flatMap((f) =>
      f.values.map((v) => JSON.stringify([f.name, Object.fromEntries(Object.entries(v.labels).map(([k, x]) => [k, String(x)])), v.value])),
    );
    const norm = (xs: string[]) =>
      xs
        .map((x) => JSON.parse(x) as [string, Record<string, string>, number])
        .map(([n, l, v]) => JSON.stringify([n, Object.entries(l).sort(), v]))
        .sort();
    assert.deepEqual(norm(fromText), norm(fromJson));
  });

  test('one reading of the sources per scrape, however many metrics use it', async () => {
    let flowsCalls = 0;
    let gatewayCalls = 0;
    const m = createMetrics(
      {
        flows: () => (flowsCalls++, [flow('a', [dest('udp://127.0.0.1:1', 1)])]),
        gateways: () => (gatewayCalls++, [gatewayStatus('g', [peer('p')])]),
        failures: () => [{ engine: 'batched' }, { engine: 'batched' }, { engine: 'tpo:a' }],
      },
      { processMetrics: false },
    );
    const fams = parseExposition(await m.render());
    assert.equal(flowsCalls, 1);
    assert.equal(gatewayCalls, 1);
    await m.render();
    assert.equal(flowsCalls, 2);
    assert.equal(sampleValue(fams, 'sluice_engine_failures'), 3);
    assert.equal(sampleValue(fams, 'sluice_engine_failed', { engine: 'batched' }), 2);
    assert.equal(sampleValue(fams, 'sluice_engine_failed', { engine: 'tpo:a' }), 1);
    assert.equal(samplesOf(fams, 'sluice_process_cpu_seconds_total').length, 0);
  });
});

describe('metrics: the cap on per-subscriber series', () => {
  test('past the cap, subscribers are summed per flow into _other and counted in sluice_metrics_series_dropped', async () => {
    let flows = [
      flow('f1', [dest('udp://10.0.0.1:1', 1), dest('udp://10.0.0.1:2', 2), dest('udp://10.0.0.1:3', 3, { sendError: 4 })]),
      flow('f2', [dest('udp://10.0.0.2:1', 10), dest('udp://10.0.0.2:2', 20)]),
    ];
    const m = createMetrics(
      source(() => flows),
      { maxSubscriberSeries: 2, processMetrics: false },
    );
    let fams = parseExposition(await m.render());
    const subs = (f: string) =>
      samplesOf(fams, 'sluice_subscriber_packets_total')
        .filter((x) => x.labels.flow === f)
        .map((x) => [x.labels.subscriber, x.value]);
    assert.deepEqual(subs('f1'), [
      ['udp://10.0.0.1:1', 1],
      ['udp://10.0.0.1:2', 2],
      [OTHER_SUBSCRIBER, 3],
    ]);
    assert.deepEqual(subs('f2'), [[OTHER_SUBSCRIBER, 30]]);
    assert.equal(sampleValue(fams, 'sluice_subscriber_bytes_total', { flow: 'f2', subscriber: OTHER_SUBSCRIBER }), 3000);
    assert.equal(sampleValue(fams, 'sluice_subscriber_drops_total', { flow: 'f1', subscriber: OTHER_SUBSCRIBER, reason: 'sendError' }), 4);
    assert.equal(sampleValue(fams, 'sluice_metrics_series_dropped'), 3);
    // Flow-level series are never capped.
    assert.equal(sampleValue(fams, 'sluice_subscribers', { flow: 'f2' }), 2);

    // f1's first subscriber leaves: the room goes to the first folded one (f1's third), and _other keeps what it had counted.
    flows = [flows[0]!, flows[1]!];
    flows[0] = flow('f1', [dest('udp://10.0.0.1:2', 2), dest('udp://10.0.0.1:3', 5, { sendError: 4 })]);
    fams = parseExposition(await m.render());
    assert.deepEqual(subs('f1'), [
      ['udp://10.0.0.1:2', 2],
      ['udp://10.0.0.1:3', 5],
      [OTHER_SUBSCRIBER, 5],
    ]);
    assert.equal(sampleValue(fams, 'sluice_metrics_series_dropped'), 2);
  });

  test('property: a kept subscriber keeps its series, nobody is folded below the cap, _other never decreases', () => {
    // Operations on 2 flows of up to 6 subscribers (addresses 0..5), a cap of 3.
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), flow: fc.integer({ min: 0, max: 1 }), sub: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ kind: fc.constant('remove' as const), flow: fc.integer({ min: 0, max: 1 }), sub: fc.integer({ min: 0, max: 5 }) }),
      fc.record({
        kind: fc.constant('count' as const),
        flow: fc.integer({ min: 0, max: 1 }),
        sub: fc.integer({ min: 0, max: 5 }),
        n: fc.integer({ min: 1, max: 9 }),
      }),
      fc.record({ kind: fc.constant('dropFlow' as const), flow: fc.integer({ min: 0, max: 1 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const cap = new SubscriberCap(3);
        const state = [new Map<number, number>(), new Map<number, number>()];
        const live = [true, true];
        let prevKept = new Set<string>();
        let prevOther = new Map<string, number>();
        for (const o of ops) {
          const fs = state[o.flow]!;
          if (o.kind === 'add' && !fs.has(o.sub)) fs.set(o.sub, 0);
          else if (o.kind === 'remove') fs.delete(o.sub);
          else if (o.kind === 'count' && fs.has(o.sub)) fs.set(o.sub, fs.get(o.sub)! + o.n);
          else if (o.kind === 'dropFlow') {
            live[o.flow] = false;
            fs.clear();
          }
          if (o.kind !== 'dropFlow') live[o.flow] = true;
          const flows = state.flatMap((subs, i) =>
            live[i]
              ? [
                  flow(
                    `f${i}`,
                    [...subs].map(([s, n]) => dest(`udp://10.0.0.${i}:${s}`, n)),
                  ),
                ]
              : [],
          );
          const r = cap.apply(flows);
          const total = flows.reduce((n, f) => n + f.destinations.length, 0);
          const kept = new Set(r.flows.flatMap((f) => f.kept.map((d) => `${f.stats.name} ${d.to}`)));
          assert.ok(kept.size <= 3);
          assert.equal(r.folded, total - kept.size);
          if (total <= 3) assert.equal(r.folded, 0);
          const present = new Set(flows.flatMap((f) => f.destinations.map((d) => `${f.name} ${d.to}`)));
          for (const k of prevKept) if (present.has(k)) assert.ok(kept.has(k), `${k} lost its series`);
          const other = new Map(r.flows.flatMap((f) => (f.other ? [[f.stats.name, f.other.packetsOut] as const] : [])));
          for (const [name, v] of prevOther) {
            if (!live[Number(name.slice(1))]) continue;
            assert.ok((other.get(name) ?? 0) >= v, `${name}: _other went from ${v} to ${other.get(name)}`);
          }
          // What the series show for a flow is at least what its subscribers hold now.
          for (const f of r.flows) {
            const shown = f.kept.reduce((n, d) => n + d.packetsOut, 0) + (f.other?.packetsOut ?? 0);
            assert.ok(shown >= f.stats.destinations.reduce((n, d) => n + d.packetsOut, 0));
          }
          prevKept = kept;
          prevOther = new Map([...other].filter(([name]) => live[Number(name.slice(1))]));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('metrics: TPO gateways', () => {
  test('peer RTT, rate, loss, retransmissions, bytes and flows, gateway counters by reason, from a status object', async () => {
    const up = peer('site-b', {
      up: true,
      srttMs: 42.5,
      bandwidthMbit: 48.25,
      pacingMbit: 50,
      retransmissions: 17,
      bytesSent: 1000,
      bytesReceived: 2000,
      flows: 3,
      sessions: 2,
      drops: { malformed: 1, otherConnection: 0, unauthenticated: 5, replayed: 0 },
    });
    const down = peer('site-c');
    // A later status may carry the mover's loss estimate: used as given.
    const withLoss: PeerStatus = { ...peer('site-d', { up: true }), ...{ lossRatio: 0.03 } };
    const gw = gatewayStatus('site-a', [up, down, withLoss], { refusedNoRoute: 4, evictedUdp: 2, udpDropped: 9, flowsOpened: 11 });
    const m = createMetrics(
      source(
        () => [],
        () => [gw],
      ),
      { processMetrics: false },
    );
    const fams = parseExposition(await m.render());
    const p = (name: string, peerName: string, extra: Record<string, string> = {}) => sampleValue(fams, name, { gateway: 'site-a', peer: peerName, ...extra });
    assert.equal(p('sluice_tpo_peer_up', 'site-b'), 1);
    assert.equal(p('sluice_tpo_peer_up', 'site-c'), 0);
    assert.equal(p('sluice_tpo_peer_rtt_seconds', 'site-b'), 0.0425);
    assert.equal(p('sluice_tpo_peer_rtt_seconds', 'site-c'), undefined, 'no RTT before a session');
    assert.equal(p('sluice_tpo_peer_rate_bits_per_second', 'site-b'), 48_250_000);
    assert.equal(p('sluice_tpo_peer_pacing_rate_bits_per_second', 'site-b'), 50_000_000);
    assert.equal(p('sluice_tpo_peer_retransmissions_total', 'site-b'), 17);
    assert.equal(p('sluice_tpo_peer_bytes_total', 'site-b', { direction: 'out' }), 1000);
    assert.equal(p('sluice_tpo_peer_bytes_total', 'site-b', { direction: 'in' }), 2000);
    assert.equal(p('sluice_tpo_peer_flows', 'site-b'), 3);
    assert.equal(p('sluice_tpo_peer_sessions_total', 'site-b'), 2);
    assert.equal(p('sluice_tpo_peer_dropped_datagrams_total', 'site-b', { reason: 'unauthenticated' }), 5);
    assert.equal(p('sluice_tpo_peer_loss_ratio', 'site-d'), 0.03);
    assert.equal(p('sluice_tpo_peer_loss_ratio', 'site-b'), undefined, 'no loss series when the status has no loss');
    const g = (name: string, extra: Record<string, string> = {}) => sampleValue(fams, name, { gateway: 'site-a', ...extra });
    assert.equal(g('sluice_tpo_flows_refused_total', { reason: 'noRoute' }), 4);
    assert.equal(g('sluice_tpo_flows_refused_total', { reason: 'limit' }), 0);
    assert.equal(g('sluice_tpo_flows_ended_total', { reason: 'evicted' }), 2);
    assert.equal(g('sluice_tpo_dropped_total', { reason: 'udpDropped' }), 9);
    assert.equal(g('sluice_tpo_flows_opened_total'), 11);
    assert.equal(g('sluice_tpo_flows'), 0);
    assert.equal(g('sluice_tpo_flows_limit'), 4096);
    assert.equal(g('sluice_tpo_port_datagrams_total', { direction: 'in' }), 30);
    assert.equal(g('sluice_tpo_port_drops_total', { reason: 'noLink' }), 6);
  });

  test('loss ratio from the mover counters: over a window of at least 10 s, restarted with a new session', () => {
    let t = 0;
    const loss = new PeerLoss(() => t);
    const at = (lost: number, datagramsSent: number) => loss.ratio('g', { ...peer('p'), ...{ lost, datagramsSent } });
    assert.equal(at(0, 0), undefined);
    t = 5_000;
    assert.equal(at(10, 100), undefined, 'first window not over yet');
    t = 10_000;
    assert.equal(at(10, 1000), 0.01);
    t = 15_000;
    assert.equal(at(60, 1500), 0.01, 'window not over: the last ratio');
    t = 20_000;
    assert.equal(at(110, 2000), 0.1);
    t = 31_000;
    assert.equal(at(110, 2000), 0.1, 'nothing sent: the last ratio stays');
    assert.equal(at(1, 100), 0.01, 'counters restarted: a new session');
  });
});

function peer(name: string, o: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name,
    role: 'initiator',
    address: '192.0.2.1:7000',
    up: false,
    sessions: 0,
    flows: 0,
    bytesSent: 0,
    bytesReceived: 0,
    retransmissions: 0,
    datagramsSent: 0,
    lost: 0,
    redundantDatagrams: 0,
    redundantBytes: 0,
    parityRecovered: 0,
    dropped: 0,
    drops: { malformed: 0, otherConnection: 0, unauthenticated: 0, replayed: 0 },
    link: {
      initiationsSent: 0,
      responsesSent: 0,
      unconfirmed: 0,
      goodbyes: 0,
      droppedHandshake: 0,
      droppedNoSession: 0,
      badBuffers: 0,
      handlerErrors: 0,
      sealFailures: 0,
      // Fields newer gateways add (fields are added, never renamed): a spread, so this builds with and without them.
      ...{ unanswered: 0 },
    },
    queuedBytes: 0,
    inFlightBytes: 0,
    ...o,
  };
}

function gatewayStatus(name: string, peers: PeerStatus[], counters: Partial<TpoGatewayStatus['counters']> = {}): TpoGatewayStatus {
  return {
    name,
    listen: '0.0.0.0:7000',
    io: 'portable',
    interception: 'explicit',
    listeners: [],
    peers,
    flows: [],
    table: { flows: 0, maxFlows: 4096, maxFlowsPerSource: 1024 },
    port: {
      datagramsReceived: 30,
      datagramsSent: 40,
      batching: { sendCalls: 40, gsoMessages: 0, gsoSegments: 0, receiveBatches: 30, groBuffers: 0 },
      receiveDropped: { unknownSource: 0, truncated: 0, listenerError: 0 },
      sendDropped: { queueFull: 0, sendError: 0, closed: 0 },
    },
    demux: { malformed: 0, noLink: 6, noSource: 0 },
    sequencer: { heldBytes: 0, overflows: 0, groupOverflows: 0, orphaned: 0, late: 0 },
    counters: {
      flowsOpened: 0,
      flowsDelivered: 0,
      refusedNoRoute: 0,
      refusedLimit: 0,
      refusedSourceQuota: 0,
      evictedUdp: 0,
      idleTcpClosed: 0,
      refusedNotAllowed: 0,
      refusedUndeliverable: 0,
      unknownFlow: 0,
      udpDropped: 0,
      udpTooLarge: 0,
      droppedReplies: 0,
      sequenceErrors: 0,
      openTimedOut: 0,
      unsendable: 0,
      flowErrors: 0,
      heldOverflow: 0,
      heldDropped: 0,
      windowExceeded: 0,
      ...{ connectFailed: 0, openRefused: 0, noSession: 0 },
      ...counters,
    },
    dropped: { peerPort: {}, refusedClients: 0 },
  };
}
