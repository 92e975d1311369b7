/**
 * The event stream (GET /v1/events) and changes under traffic, against
 * the service in this process on the portable tier: every change is
 * seen as its event; stats come once a second with the counters; a
 * client that does not read is disconnected at its queue's bound while
 * the others get everything; a subscriber added while packets flow gets
 * them, and the subscribers already there lose none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { openReceiver, openSender, sendSequence, seqOf } from '../../harness/traffic/udp.js';
import { readEvents, startApi } from './api-helpers.js';

test('every change is an event: flowadded, subscriberadded/removed, flowchanged, flowremoved, sendstarted/senddone; stats each second', async () => {
  const api = await startApi();
  const events = await readEvents(api.url, api.token);
  const sink = await openReceiver();
  try {
    const first = await events.waitFor((e) => e.type === 'stats');
    assert.deepEqual(first.data.flows, []);
    await api.call('POST', '/v1/flows', { name: 'ev', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: 'any', to: [] });
    const added = await events.waitFor((e) => e.type === 'flowadded');
    assert.equal(added.data.flow.name, 'ev');
    assert.equal(added.data.flow.policy.type, 'replicate');
    await api.call('POST', '/v1/flows/ev/subscribers', { to: sink.url });
    assert.deepEqual((await events.waitFor((e) => e.type === 'subscriberadded')).data, { flow: 'ev', to: sink.url });
    await api.call('PATCH', '/v1/flows/ev', { maxQueuedPackets: 7 });
    assert.equal((await events.waitFor((e) => e.type === 'flowchanged')).data.flow.policy.maxQueuedPackets, 7);
    await api.call('DELETE', `/v1/flows/ev/subscribers?to=${encodeURIComponent(sink.url)}`);
    assert.deepEqual((await events.waitFor((e) => e.type === 'subscriberremoved')).data, { flow: 'ev', to: sink.url });

    // Counters in the stats events: a second apart, moving with traffic.
    await api.call('POST', '/v1/flows/ev/subscribers', { to: sink.url });
    const port = Number(api.service.flow('ev')!.listen.split(':').pop());
    const sender = await openSender();
    await sendSequence(sender, { port, address: '127.0.0.1' }, 20);
    await sender.close();
    await sink.waitFor(20);
    const moved = await events.waitFor((e) => e.type === 'stats' && e.data.flows[0]?.packetsIn === 20);
    assert.equal(moved.data.flows[0].destinations[0].packetsOut, 20);
    assert.equal(typeof moved.data.t, 'number');
    const next = await events.waitFor((e) => e.type === 'stats' && e.data.t > moved.data.t);
    assert.ok(next.data.t - moved.data.t >= 900, 'about a second apart');

    const job = await api.call('POST', '/v1/sends', {
      kind: 'aggregate',
      aggregate: { schedule: { kind: 'delays', delaysMs: [0] }, messages: [{ to: sink.url, text: 'x' }] },
    });
    assert.equal((await events.waitFor((e) => e.type === 'sendstarted')).data.id, job.body.id);
    const done = await events.waitFor((e) => e.type === 'senddone');
    assert.equal(done.data.id, job.body.id);
    assert.equal(done.data.state, 'done');

    await api.call('DELETE', '/v1/flows/ev');
    const removed = await events.waitFor((e) => e.type === 'flowremoved');
    assert.equal(removed.data.name, 'ev');
    assert.equal(removed.data.stats.packetsIn, 20);

    // Ids increase; every event has one.
    const ids = events.events.map((e) => Number(e.id));
    assert.ok(
      ids.every((id, i) => i === 0 || id > ids[i - 1]!),
      String(ids),
    );
  } finally {
    events.close();
    await sink.close();
    await api.close();
  }
});

test('a client that does not read is disconnected at its queue bound; the others get every event and changes go on', async () => {
  const api = await startApi({ sse: { maxQueueBytes: 64 * 1024 } });
  const fast = await readEvents(api.url, api.token);
  // A client that sends its request and never reads a byte.
  const slow = net.connect(Number(new URL(api.url).port), '127.0.0.1');
  await new Promise<void>((r) => slow.once('connect', () => r()));
  slow.pause();
  slow.write(`GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.token}\r\n\r\n`);
  try {
    const to = Array.from({ length: 300 }, (_, i) => `udp://127.0.0.1:${30000 + i}`);
    await api.call('POST', '/v1/flows', { name: 'big', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: 'any', to });
    await fast.waitFor((e) => e.type === 'flowadded');
    const t0 = Date.now();
    // Each flowchanged event carries the flow with its 300 subscribers and their counters (~50 kB).
    for (let i = 0; i < 120; i++) {
      const r = await api.call('PATCH', '/v1/flows/big', { maxQueuedPackets: 1000 + i });
      assert.equal(r.status, 200);
    }
    const changed = () => fast.events.filter((e) => e.type === 'flowchanged').length;
    await fast.waitFor((e) => e.type === 'flowchanged' && e.data.flow.policy.maxQueuedPackets === 1119, 30_000);
    assert.equal(changed(), 120, 'the reading client got every event');
    assert.ok(api.server.hub.dropped >= 1, 'the client that does not read was disconnected');
    assert.equal(api.server.hub.clients, 1, 'only the reading client is left');
    assert.ok(Date.now() - t0 < 60_000);
  } finally {
    slow.destroy();
    fast.close();
    await api.close();
  }
});

test('a subscriber added while traffic flows receives it; the subscribers already there lose nothing', async () => {
  const api = await startApi();
  const a = await openReceiver();
  const b = await openReceiver();
  const late = await openReceiver();
  const sender = await openSender();
  try {
    const f = await api.call('POST', '/v1/flows', { name: 'live', type: 'replicate', listen: 'udp://127.0.0.1:0', allow: '127.0.0.1', to: [a.url, b.url] });
    const port = Number(f.body.listen.split(':').pop());
    const total = 3000;
    let added: Promise<{ status: number }> | undefined;
    await sendSequence(sender, { port, address: '127.0.0.1' }, total, {
      burst: 20,
      gapMs: 2,
      onProgress: (seq) => {
        if (seq === 1000) added = api.call('POST', '/v1/flows/live/subscribers', { to: late.url });
      },
    });
    assert.equal((await added!).status, 201);
    await a.waitFor(total, 20_000);
    await b.waitFor(total, 20_000);
    await late.settle(200);
    for (const r of [a, b]) {
      assert.equal(r.received.length, total);
      assert.deepEqual(
        r.received.map(seqOf),
        Array.from({ length: total }, (_, i) => i),
      );
    }
    const got = late.received.map(seqOf);
    assert.ok(got.length > 0, 'the new subscriber received packets');
    assert.equal(got.at(-1), total - 1);
    assert.deepEqual(
      got,
      Array.from({ length: got.length }, (_, i) => got[0]! + i),
      'from its first packet on, none missing',
    );
    const stats = (await api.call('GET', '/v1/flows/live/stats')).body;
    assert.equal(stats.packetsIn, total);
    assert.equal(stats.packetsOut, 2 * total + got.length);
  } finally {
    await Promise.all([a.close(), b.close(), late.close(), sender.close()]);
    await api.close();
  }
});
