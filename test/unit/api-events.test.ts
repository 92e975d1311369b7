/**
 * The library's events, observers and close (issue 17, item 6): what Sluice
 * and Flow emit, in what order; close() and remove() are idempotent and
 * close() cascades to flows and stream schedulers; a throwing listener
 * never breaks the emitter; a dead engine is an event on the Sluice and its
 * flows and the error later calls reject with. Portable tier, no root; the
 * dead-engine and suspension cases need the batched tier (skipped, with the
 * reason, where it is unavailable).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import {
  Sluice,
  Sender,
  ClosedError,
  EngineFailedError,
  NotSupportedError,
  isSluiceError,
  type AggregatePolicy,
  type Flow,
  type FlowDetail,
  type FlowStats,
} from '../../src/index.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { captureEngineWorker } from '../../harness/process/worker-killer.js';
import { openReceiver, openSender, sendSequence, seqDatagram } from '../../harness/traffic/udp.js';

const batched = probeBatchedIo();
const batchedSkip = batched.available ? undefined : `batched tier unavailable: ${batched.reason}`;
if (batchedSkip) console.log(`# api-events: dead-engine and suspension cases skipped: ${batchedSkip}`);

const tick = () => new Promise((r) => setTimeout(r, 10));

/** A UDP port on 127.0.0.1 that nobody listens on (sends to it draw ICMP port unreachable). */
async function closedPort(): Promise<number> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()));
  const port = c.address().port;
  await new Promise<void>((r) => c.close(() => r()));
  return port;
}

/** Records a flow's events (and its observer's) as `name event` lines. */
function watchFlow(flow: Flow, log: string[]): void {
  const n = flow.name;
  flow.on('update', (spec) => log.push(`${n} update ${spec.type === 'replicate' ? spec.to.length : 1}`));
  flow.observer.on('update', () => log.push(`${n} observer update`));
  flow.on('remove', () => log.push(`${n} remove`));
  flow.on('sluiceclose', () => log.push(`${n} sluiceclose`));
  flow.on('close', (stats) => log.push(`${n} close ${stats ? stats.packetsIn : 'none'}`));
  flow.observer.on('close', () => log.push(`${n} observer close`));
}

describe('events, observers and close (portable tier)', () => {
  test('apply, subscriber changes and remove emit in order; remove() twice gives the same counters', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const a = await openReceiver();
    const b = await openReceiver();
    const src = await openSender();
    const log: string[] = [];
    s.on('flowadded', (f) => log.push(`sluice flowadded ${f.name}`));
    s.observer.on('newflow', (f) => log.push(`observer newflow ${f.name}`));
    s.on('flowremoved', (f, stats) => log.push(`sluice flowremoved ${f.name} ${stats?.packetsIn}`));
    try {
      const flow = await s.apply({ name: 'r', type: 'replicate', listen: 'udp://127.0.0.1:0', to: [a.url], allow: 'any' });
      watchFlow(flow, log);
      await flow.addSubscriber(b.url);
      await sendSequence(src, flow.listen, 3);
      await a.waitFor(3);
      await b.waitFor(3);
      await flow.removeSubscriber(a.url);
      const first = flow.remove();
      assert.equal(flow.remove(), first, 'the same promise');
      assert.equal(flow.closed, true);
      assert.equal(flow.removed, true, 'the old name stays');
      const stats = await first;
      assert.equal(stats?.packetsIn, 3);
      assert.equal(await flow.remove(), stats, 'the same counters on a later call (was undefined)');
      assert.deepEqual(log, [
        'sluice flowadded r',
        'observer newflow r',
        'r update 2',
        'r observer update',
        'r update 1',
        'r observer update',
        'r remove',
        'r close 3',
        'r observer close',
        'sluice flowremoved r 3',
      ]);
      await assert.rejects(flow.update({}), ClosedError);
      assert.throws(() => flow.stats(), ClosedError);
      assert.throws(() => flow.detail(), ClosedError);
      assert.deepEqual(s.flows(), []);
    } finally {
      await s.close();
      await Promise.all([a.close(), b.close(), src.close()]);
    }
  });

  test('close() cascades: schedulers (streams end closed), then each flow (sluiceclose, close), then the Sluice; twice is the same promise', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const dst = await openReceiver();
    const log: string[] = [];
    try {
      const schedulers: unknown[] = [];
      s.observer.on('newscheduler', (sched) => schedulers.push(sched));
      const one = await s.apply({ name: 'one', type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
      const two = await s.apply({ name: 'two', type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
      watchFlow(one, log);
      watchFlow(two, log);
      s.on('close', (final) => log.push(`sluice close ${final.length}`));
      s.observer.on('close', () => log.push('sluice observer close'));
      const sched = s.streams({ packetSize: 1316 });
      assert.deepEqual(schedulers, [sched]);
      sched.on('end', (st) => log.push(`stream ${st.id} ${st.status}`));
      // 1 MB at 1 Mbit/s: still running when the Sluice closes.
      const stream = sched.add({ id: 'long', to: dst.url, bitrate: 1e6, data: new Uint8Array(1_000_000) });
      // A scheduler its owner closed first stays as it was.
      const own = s.streams({ packetSize: 1316 });
      await own.close();
      while (stream.stats().packets === 0) await tick();

      const closing = s.close();
      assert.equal(s.close(), closing, 'the same promise');
      assert.equal(s.closed, true);
      assert.equal(one.closed, true, 'flows refuse calls from the first moment');
      const final = await closing;
      assert.deepEqual(
        final.map((f) => f.name),
        ['one', 'two'],
      );
      assert.deepEqual(log, [
        'stream long closed',
        'one sluiceclose',
        'one close 0',
        'one observer close',
        'two sluiceclose',
        'two close 0',
        'two observer close',
        'sluice close 2',
        'sluice observer close',
      ]);
      assert.equal((await stream.done).status, 'closed');
      assert.equal(sched.closed, true);
      assert.equal(await one.remove(), final[0], "a flow's remove() after close gives what close gave it");
      assert.equal(await two.remove(), final[1]);
      assert.equal(await s.close(), final);
      assert.equal(log.length, 9, 'nothing emitted twice');
    } finally {
      await s.close();
      await dst.close();
    }
  });

  test('after close every method refuses with ClosedError', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: 'udp://127.0.0.1:9', allow: 'any' });
    await s.close();
    const to = 'udp://127.0.0.1:9';
    await assert.rejects(s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to, allow: 'any' }), ClosedError);
    await assert.rejects(s.sendAggregate({ messages: [{ to, data: new Uint8Array(1) }], schedule: { kind: 'delays', delaysMs: [0] } }), ClosedError);
    await assert.rejects(s.write([{ to, data: new Uint8Array(1) }]), ClosedError);
    assert.throws(() => s.streams({ packetSize: 1316 }), ClosedError);
    await assert.rejects(flow.update({}), ClosedError);
    await assert.rejects(flow.addSubscriber(to), ClosedError);
    assert.throws(() => flow.stats(), ClosedError);
    assert.throws(() => flow.detail(), ClosedError);
    const e = await flow.update({}).catch((err: unknown) => err);
    assert.ok(isSluiceError(e, 'SLUICE_ERR_CLOSED'));
  });

  test('a throwing listener is reported (listenererror, else a process warning) and never breaks the call or the other listeners', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    try {
      const reported: [string, string][] = [];
      let second = false;
      s.on('flowadded', () => {
        throw new Error('boom');
      });
      s.on('flowadded', () => (second = true));
      s.on('listenererror', (event, err) => reported.push([event, (err as Error).message]));
      const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: 'udp://127.0.0.1:9', allow: 'any' });
      assert.equal(second, true, 'the next listener still ran');
      assert.deepEqual(reported, [['flowadded', 'boom']]);

      // Nobody listens for 'listenererror' on the flow: a process warning.
      flow.on('close', () => {
        throw new Error('bang');
      });
      const warning = once(process, 'warning');
      const stats = await flow.remove();
      assert.ok(stats, 'remove() resolved with the counters');
      const [w] = (await warning) as [Error & { code?: string }];
      assert.equal(w.code, 'SLUICE_LISTENER_ERROR');
      assert.match(w.message, /'close' threw: bang/);

      // An async listener's rejection is reported too.
      s.on('close', async () => {
        await tick();
        throw new Error('later');
      });
      await s.close();
      while (reported.length < 2) await tick();
      assert.deepEqual(reported[1], ['close', 'later']);
    } finally {
      await s.close();
    }
  });

  test('types: apply() takes flow policies only, events are typed, detail() names the tier', async () => {
    const s = await Sluice.open({ tier: 'portable' });
    try {
      const aggregate: AggregatePolicy = {
        type: 'aggregate',
        messages: [{ to: 'udp://127.0.0.1:9', data: new Uint8Array(1) }],
        schedule: { kind: 'delays', delaysMs: [0] },
      };
      // @ts-expect-error an aggregate is a one-shot send, not a flow: a compile-time error ...
      const refused = s.apply(aggregate);
      // ... and, for JavaScript callers, a NotSupportedError at run time.
      await assert.rejects(refused, NotSupportedError);
      // @ts-expect-error no such event
      s.on('flowAdded', () => undefined);
      const flow = await s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: 'udp://127.0.0.1:9', allow: 'any' });
      // @ts-expect-error 'close' hands a FlowStats (or undefined), not a string
      flow.on('close', (stats: string) => stats);
      const detail: FlowDetail = flow.detail();
      assert.deepEqual(detail, { tier: 'portable' });
      assert.equal(s.sendEngine, 'portable');
      const w = await s.write([{ to: 'udp://127.0.0.1:9', data: new Uint8Array(10) }]);
      assert.equal(w.engine, s.sendEngine, 'results say which engine ran');
      assert.equal(w.tier, 'portable', '... and for which tier');
    } finally {
      await s.close();
    }
  });
});

describe('Sender: one-shot sends without a data plane', () => {
  test('results name tier and engine; close closes its schedulers, is idempotent, and later calls refuse with ClosedError', async () => {
    const dst = await openReceiver();
    const sender = await Sender.open({ tier: 'portable' });
    try {
      assert.deepEqual({ tier: sender.tier, engine: sender.engine }, { tier: 'portable', engine: 'portable' });
      const r = await sender.sendAggregate({ messages: [{ to: dst.url, data: Buffer.from('a') }], schedule: { kind: 'delays', delaysMs: [0] } });
      assert.deepEqual({ engine: r.engine, tier: r.tier, sent: r.sent }, { engine: 'portable', tier: 'portable', sent: 1 });
      await dst.waitFor(1);
      const sched = sender.streams({ packetSize: 1316 });
      const h = sched.add({ id: 'slow', to: dst.url, bitrate: 8_000, data: Buffer.alloc(100_000) });
      const closing = sender.close();
      assert.equal(sender.close(), closing, 'close() twice is the same promise');
      await closing;
      assert.equal((await h.done).status, 'closed', "the scheduler's stream ended with the sender");
      assert.ok(sched.closed);
      await assert.rejects(sender.write([{ to: dst.url, data: new Uint8Array(1) }]), ClosedError);
      assert.throws(() => sender.streams({ packetSize: 1316 }), ClosedError);
    } finally {
      await sender.close();
      await dst.close();
    }
  });

  test('an unknown tier is refused with NotSupportedError', async () => {
    // @ts-expect-error not a tier name
    await assert.rejects(Sender.open({ tier: 'fastest' }), NotSupportedError);
  });
});

describe('a dead engine and suspensions (batched tier)', { skip: batchedSkip }, () => {
  test("a killed worker is 'engineFailed' on the Sluice and each flow, the error later calls reject with; close stays idempotent", async () => {
    const capture = captureEngineWorker();
    const s = await Sluice.open({ tier: 'batched' });
    const dst = await openReceiver();
    try {
      const flow = await s.apply({ name: 'f', type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' });
      const detail = flow.detail();
      assert.equal(detail.tier, 'batched');
      if (detail.tier === 'batched') assert.equal(typeof detail.recvCalls, 'number', 'narrowed to the batched detail');
      const worker = await capture.engine;
      capture.restore();
      const order: string[] = [];
      s.on('engineFailed', () => order.push('sluice'));
      flow.on('engineFailed', () => order.push('flow'));
      const onFlow = once(flow, 'engineFailed');
      const onSluice = once(s, 'engineFailed');
      await worker.terminate();
      const [error] = (await onSluice) as [EngineFailedError];
      const [flowError] = (await onFlow) as [EngineFailedError];
      assert.deepEqual(order, ['sluice', 'flow']);
      assert.equal(flowError, error);
      assert.ok(error instanceof EngineFailedError);
      assert.ok(isSluiceError(error, 'SLUICE_ERR_ENGINE_FAILED'));
      assert.match(error.engine, /batched tier's engine/);
      assert.equal(s.failure, error);
      await assert.rejects(flow.update({ to: dst.url }), (e: unknown) => e === error);
      await assert.rejects(s.apply({ type: 'redirect', listen: 'udp://127.0.0.1:0', to: dst.url, allow: 'any' }), (e: unknown) => e === error);
      const closed = once(flow, 'close');
      const closing = s.close();
      assert.equal(s.close(), closing);
      const final = await closing;
      const [stats] = (await closed) as [FlowStats | undefined];
      assert.equal(final.length, 1);
      assert.equal(stats, final[0]);
      assert.equal(await flow.remove(), final[0]);
    } finally {
      capture.restore();
      await s.close();
      await dst.close();
    }
  });

  test("a subscriber the network refuses is reported by 'suspension' (until > 0), and its retry by 'suspension' (0)", async () => {
    const s = await Sluice.open({ tier: 'batched' });
    const src = await openSender();
    try {
      const dead = `udp://127.0.0.1:${await closedPort()}`;
      const flow = await s.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [dead], allow: 'any', suspendAfterErrors: 3, suspendRetryMs: 200 });
      const events: [string, number][] = [];
      flow.on('suspension', (to, until) => events.push([to, until]));
      const before = Date.now();
      let seq = 0;
      // Until suspended and tried again (bounded: 20 000 datagrams).
      while (!(events.some(([, u]) => u > 0) && events.some(([, u]) => u === 0)) && seq < 20_000) {
        for (let i = 0; i < 10; i++) await src.send(seqDatagram(seq++), flow.listen.port, '127.0.0.1');
        await tick();
      }
      const [to, until] = events[0] ?? ['', 0];
      assert.equal(to, dead, JSON.stringify(events));
      assert.ok(until >= before + 200, `suspended until ${until}, retry at least 200 ms after ${before}`);
      assert.ok(
        events.some(([t, u]) => t === dead && u === 0),
        `no resumption: ${JSON.stringify(events)}`,
      );
    } finally {
      await s.close();
      await src.close();
    }
  });
});
