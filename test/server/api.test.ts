/**
 * The HTTP API (docs/HTTP-API.md) against the service in this process, on
 * the portable tier: every endpoint, every error code with its body, the
 * token, the rate limit, the body limit.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { openReceiver, openSender } from '../../harness/traffic/udp.js';
import { caller, startApi, type Api } from './api-helpers.js';

const replicate = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  type: 'replicate',
  listen: 'udp://127.0.0.1:0',
  allow: '127.0.0.1',
  to: [],
  ...extra,
});

function assertError(r: { status: number; body: any }, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body?.error?.code, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, 'string');
}

describe('HTTP API', () => {
  let api: Api;
  before(async () => {
    api = await startApi();
  });
  after(async () => {
    await api.close();
  });

  test('401 without a token and with a wrong one, with WWW-Authenticate; the right one passes', async () => {
    for (const headers of [
      {} as Record<string, string>,
      { authorization: 'Bearer wrong-token-wrong-token' },
      { authorization: `Basic ${api.token}` },
      { authorization: 'Bearer' },
    ]) {
      const res = await fetch(`${api.url}/v1/flows`, { headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal(((await res.json()) as any).error.code, 'unauthorized');
    }
    const wrong = caller(api.url, `${api.token}x`);
    assertError(await wrong('GET', '/v1/health'), 401, 'unauthorized');
    assertError(await wrong('POST', '/v1/flows', replicate('nope')), 401, 'unauthorized');
    assert.equal(api.service.flow('nope'), undefined, 'nothing was done for a wrong token');
    assert.equal((await api.call('GET', '/v1/flows')).status, 200);
  });

  test('health and the OpenAPI document', async () => {
    const h = await api.call('GET', '/v1/health');
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    assert.equal(h.body.tier, 'portable');
    assert.match(h.body.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual(h.body.failures, []);
    const doc = await api.call('GET', '/v1/openapi.json');
    assert.equal(doc.status, 200);
    assert.equal(doc.body.openapi, '3.1.0');
    for (const p of ['/v1/flows', '/v1/flows/{name}', '/v1/flows/{name}/subscribers', '/v1/sends', '/v1/events', '/v1/health', '/v1/tpo'])
      assert.ok(doc.body.paths[p], p);
    // Generated from the request schemas: the policy's fields and limits are there.
    const policy = JSON.stringify(doc.body.components.schemas.FlowPolicy);
    for (const field of ['listen', 'allow', 'maxDatagramSize', 'suspendAfterErrors', 'replicate', 'redirect']) assert.ok(policy.includes(field), field);
    assert.ok(JSON.stringify(doc.body.components.schemas.SendRequest).includes('bitrate'));
    // The TPO bodies come from the TPO config's own item schemas.
    const peer = JSON.stringify(doc.body.components.schemas.TpoPeer);
    for (const field of ['keyId', 'keyFile', 'maxRate', 'mtu']) assert.ok(peer.includes(field), field);
    assert.ok(JSON.stringify(doc.body.components.schemas.TpoTableEntry).includes('latencySensitive'));
    assert.equal(doc.body.paths['/v1/tpo/{gateway}/peers'].post.requestBody.content['application/json'].schema.$ref, '#/components/schemas/TpoPeer');
  });

  test('flows: create (201, Location), list, get, stats, replace, patch, delete', async () => {
    const c = await api.call('POST', '/v1/flows', replicate('crud', { to: ['udp://127.0.0.1:9'] }));
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.headers.get('location'), '/v1/flows/crud');
    assert.equal(c.body.name, 'crud');
    assert.equal(c.body.tier, 'portable');
    assert.match(c.body.listen, /^udp:\/\/127\.0\.0\.1:[1-9]\d*$/, 'the bound port');
    assert.deepEqual(c.body.policy.to, ['udp://127.0.0.1:9']);
    assert.equal(c.body.policy.allow, '127.0.0.1', 'one source, as written');
    assert.equal(c.body.stats.packetsIn, 0);

    const list = await api.call('GET', '/v1/flows');
    assert.ok(list.body.flows.some((f: any) => f.name === 'crud'));
    const one = await api.call('GET', '/v1/flows/crud');
    assert.deepEqual(one.body.policy, c.body.policy);
    const stats = await api.call('GET', '/v1/flows/crud/stats');
    assert.equal(stats.status, 200);
    assert.equal(stats.body.name, 'crud');
    assert.equal(stats.body.destinations.length, 1);

    // GET then PUT round-trips; a changed field takes effect in place.
    const put = await api.call('PUT', '/v1/flows/crud', { ...one.body.policy, maxQueuedPackets: 100 });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.policy.maxQueuedPackets, 100);
    assert.equal(put.body.listen, c.body.listen, 'same listen: changed in place');
    const same = await api.call('PUT', '/v1/flows/crud', put.body.policy);
    assert.deepEqual(same.body.policy, put.body.policy);

    // PATCH merges (null: back to the default) and validates the whole.
    const patch = await api.call('PATCH', '/v1/flows/crud', { suspendAfterErrors: 3, maxQueuedPackets: null });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    assert.equal(patch.body.policy.suspendAfterErrors, 3);
    assert.equal(patch.body.policy.maxQueuedPackets, 4096);
    const merge = await api.call('PATCH', '/v1/flows/crud', JSON.stringify({ payload: 'mpegts' }), { 'content-type': 'application/merge-patch+json' });
    assert.equal(merge.status, 200, JSON.stringify(merge.body));
    assert.equal(merge.body.policy.payload, 'mpegts');

    // A type change restarts the flow under the same name.
    const redirect = await api.call('PUT', '/v1/flows/crud', { type: 'redirect', listen: 'udp://127.0.0.1:0', allow: 'any', to: 'udp://127.0.0.1:9' });
    assert.equal(redirect.status, 200, JSON.stringify(redirect.body));
    assert.equal(redirect.body.type, 'redirect');
    assert.equal(redirect.body.name, 'crud');

    const del = await api.call('DELETE', '/v1/flows/crud');
    assert.equal(del.status, 200);
    assert.equal(del.body.name, 'crud');
    assert.equal(typeof del.body.stats.packetsIn, 'number');
    assertError(await api.call('GET', '/v1/flows/crud'), 404, 'flow_not_found');
  });

  test('400 invalid_json, invalid_policy with field paths, invalid_request; 415', async () => {
    assertError(await api.call('POST', '/v1/flows', '{"name": "x",'), 400, 'invalid_json');
    assertError(await api.call('POST', '/v1/flows', ''), 400, 'invalid_json');
    const deep = '['.repeat(100) + ']'.repeat(100);
    assertError(await api.call('POST', '/v1/flows', deep), 400, 'invalid_json');

    const bad = await api.call('POST', '/v1/flows', replicate('bad', { to: ['udp://127.0.0.1:1', 'nope'], maxDatagramSize: 1e9, extra: 1 }));
    assertError(bad, 400, 'invalid_policy');
    const paths = bad.body.error.issues.map((i: any) => i.path);
    assert.ok(paths.includes('to[1]'), JSON.stringify(bad.body));
    assert.ok(paths.includes('maxDatagramSize'), JSON.stringify(bad.body));
    assert.ok(bad.body.error.issues.some((i: any) => /unknown field 'extra'/.test(i.message)));

    const noName = await api.call('POST', '/v1/flows', { ...replicate('x'), name: undefined });
    assertError(noName, 400, 'invalid_policy');
    assert.equal(noName.body.error.issues[0].path, 'name');
    assertError(await api.call('POST', '/v1/flows', [1, 2]), 400, 'invalid_policy');
    assertError(await api.call('POST', '/v1/flows', replicate('agg', { type: 'aggregate' })), 400, 'invalid_policy');

    // The checks across flows, as the CLI's: a subscriber listed twice.
    const dup = await api.call('POST', '/v1/flows', replicate('dup', { to: ['udp://127.0.0.1:7', 'udp://127.0.0.1:7'] }));
    assertError(dup, 400, 'invalid_policy');

    await api.call('POST', '/v1/flows', { name: 'redir', type: 'redirect', listen: 'udp://127.0.0.1:0', allow: 'any', to: 'udp://127.0.0.1:9' });
    assertError(await api.call('POST', '/v1/flows/redir/subscribers', { to: 'udp://127.0.0.1:8' }), 400, 'invalid_request');
    const rename = await api.call('PUT', '/v1/flows/redir', {
      name: 'other',
      type: 'redirect',
      listen: 'udp://127.0.0.1:0',
      allow: 'any',
      to: 'udp://127.0.0.1:9',
    });
    assertError(rename, 400, 'invalid_policy');
    assert.equal(rename.body.error.issues[0].path, 'name');
    assertError(await api.call('POST', '/v1/flows/redir/subscribers', { to: 'udp://nowhere:1' }), 400, 'invalid_policy');
    await api.call('DELETE', '/v1/flows/redir');

    const form = await api.call('POST', '/v1/flows', 'a=b', { 'content-type': 'application/x-www-form-urlencoded' });
    assertError(form, 415, 'unsupported_media_type');
  });

  test('404 for unknown flows, subscribers, routes, gateways and send jobs', async () => {
    assertError(await api.call('GET', '/v1/flows/none'), 404, 'flow_not_found');
    assertError(await api.call('GET', '/v1/flows/none/stats'), 404, 'flow_not_found');
    assertError(await api.call('PUT', '/v1/flows/none', replicate('none')), 404, 'flow_not_found');
    assertError(await api.call('PATCH', '/v1/flows/none', { payload: 'any' }), 404, 'flow_not_found');
    assertError(await api.call('DELETE', '/v1/flows/none'), 404, 'flow_not_found');
    assertError(await api.call('POST', '/v1/flows/none/subscribers', { to: 'udp://127.0.0.1:5' }), 404, 'flow_not_found');
    await api.call('POST', '/v1/flows', replicate('subs404'));
    assertError(await api.call('DELETE', '/v1/flows/subs404/subscribers?to=udp://127.0.0.1:5'), 404, 'subscriber_not_found');
    assertError(await api.call('GET', '/v1/nothing'), 404, 'not_found');
    assertError(await api.call('GET', '/v1/tpo/none'), 404, 'gateway_not_found');
    assertError(await api.call('GET', '/v1/sends/none'), 404, 'send_not_found');
    assertError(await api.call('DELETE', '/v1/sends/none'), 404, 'send_not_found');
    assert.deepEqual((await api.call('GET', '/v1/tpo')).body, { gateways: [] });
    await api.call('DELETE', '/v1/flows/subs404');
  });

  test('409 flow_exists, subscriber_exists, address_in_use (another flow, another socket)', async () => {
    const a = await api.call('POST', '/v1/flows', replicate('c409', { to: ['udp://127.0.0.1:5'] }));
    assert.equal(a.status, 201);
    assertError(await api.call('POST', '/v1/flows', replicate('c409')), 409, 'flow_exists');
    assertError(await api.call('POST', '/v1/flows/c409/subscribers', { to: 'udp://127.0.0.1:5' }), 409, 'subscriber_exists');
    // The listen address of a running flow.
    assertError(await api.call('POST', '/v1/flows', replicate('c409b', { listen: a.body.listen })), 409, 'address_in_use');
    // A socket that is not Sluice's (bind fails with EADDRINUSE).
    const other = dgram.createSocket('udp4');
    await new Promise<void>((r) => other.bind(0, '127.0.0.1', () => r()));
    try {
      const taken = `udp://127.0.0.1:${other.address().port}`;
      const r = await api.call('POST', '/v1/flows', replicate('c409c', { listen: taken }));
      assertError(r, 409, 'address_in_use');
      assert.equal(api.service.flow('c409c'), undefined);
      // A restart onto a taken address puts the old flow back.
      const moved = await api.call('PATCH', '/v1/flows/c409', { listen: taken });
      assertError(moved, 409, 'address_in_use');
      const back = await api.call('GET', '/v1/flows/c409');
      assert.equal(back.status, 200, 'the old flow runs again');
      assert.deepEqual(back.body.policy.to, ['udp://127.0.0.1:5']);
    } finally {
      other.close();
    }
    await api.call('DELETE', '/v1/flows/c409');
  });

  test('subscribers: add (201) and remove by ?to= or by body; changes reach the data plane', async () => {
    const sub = await openReceiver();
    const sender = await openSender();
    try {
      const f = await api.call('POST', '/v1/flows', replicate('subs'));
      const port = Number(f.body.listen.split(':').pop());
      const add = await api.call('POST', '/v1/flows/subs/subscribers', { to: sub.url });
      assert.equal(add.status, 201, JSON.stringify(add.body));
      assert.deepEqual(add.body.policy.to, [sub.url]);
      await sender.send(Buffer.from('hello'), port, '127.0.0.1');
      await sub.waitFor(1);
      const counted = await api.call('GET', '/v1/flows/subs/stats');
      assert.equal(counted.body.packetsIn, 1);
      assert.equal(counted.body.destinations[0].packetsOut, 1);
      const rm = await api.call('DELETE', `/v1/flows/subs/subscribers?to=${encodeURIComponent(sub.url)}`);
      assert.equal(rm.status, 200, JSON.stringify(rm.body));
      assert.deepEqual(rm.body.policy.to, []);
      await api.call('POST', '/v1/flows/subs/subscribers', { to: sub.url });
      const rmBody = await api.call('DELETE', '/v1/flows/subs/subscribers', { to: sub.url });
      assert.equal(rmBody.status, 200);
      assertError(await api.call('DELETE', '/v1/flows/subs/subscribers'), 400, 'invalid_policy');
    } finally {
      await sub.close();
      await sender.close();
      await api.call('DELETE', '/v1/flows/subs');
    }
  });

  test('50 concurrent subscriber adds (some invalid) are applied one by one: every valid one present', async () => {
    await api.call('POST', '/v1/flows', replicate('many'));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api.call('POST', '/v1/flows/many/subscribers', { to: i % 10 === 9 ? `udp://127.0.0.1:${70000 + i}` : `udp://127.0.0.1:${20000 + i}` }),
      ),
    );
    const ok = results.filter((r) => r.status === 201).length;
    assert.equal(ok, 45);
    for (const r of results.filter((x) => x.status !== 201)) assertError(r, 400, 'invalid_policy');
    const f = await api.call('GET', '/v1/flows/many');
    const want = Array.from({ length: 50 }, (_, i) => i)
      .filter((i) => i % 10 !== 9)
      .map((i) => `udp://127.0.0.1:${20000 + i}`);
    assert.deepEqual([...f.body.policy.to].sort(), [...want].sort());
    assert.equal(f.body.stats.destinations.length, 45);
    await api.call('DELETE', '/v1/flows/many');
  });

  test('sends: an aggregate (202, then done with its result), a stream job cancelled; errors', async () => {
    const sink = await openReceiver();
    try {
      const agg = await api.call('POST', '/v1/sends', {
        kind: 'aggregate',
        aggregate: {
          schedule: { kind: 'sequence', sequence: [1, 0, 2], tickMs: 1 },
          messages: [
            { to: sink.url, text: 'b' },
            { to: sink.url, hex: '61' },
            { to: sink.url, base64: Buffer.from('c').toString('base64') },
          ],
        },
      });
      assert.equal(agg.status, 202, JSON.stringify(agg.body));
      assert.equal(agg.body.kind, 'aggregate');
      await sink.waitFor(3);
      assert.deepEqual(
        sink.received.map((r) => r.data.toString()),
        ['a', 'b', 'c'],
      );
      let job: any;
      for (let i = 0; i < 100 && job?.state !== 'done'; i++) {
        job = (await api.call('GET', `/v1/sends/${agg.body.id}`)).body;
        if (job.state !== 'done') await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(job.state, 'done', JSON.stringify(job));
      assert.deepEqual(job.progress, { sent: 3, total: 3 });
      assert.equal(job.result.sent, 3);

      const stream = await api.call('POST', '/v1/sends', {
        kind: 'stream',
        packetSize: 100,
        streams: [{ to: sink.url, bitrate: 80_000, bytes: 1000, loop: true }],
      });
      assert.equal(stream.status, 202, JSON.stringify(stream.body));
      assert.equal(stream.body.progress.total, null, 'a looping stream has no end');
      await sink.waitFor(5);
      const finished = await api.call('DELETE', `/v1/sends/${agg.body.id}`);
      assert.equal(finished.status, 200, 'a finished job is returned as it is');
      assert.equal(finished.body.state, 'done');
      const cancel = await api.call('DELETE', `/v1/sends/${stream.body.id}`);
      assert.equal(cancel.status, 200);
      assert.equal(cancel.body.state, 'cancelled');
      assert.ok(cancel.body.progress.sent > 0);
      const all = await api.call('GET', '/v1/sends');
      assert.deepEqual(
        all.body.sends.map((s: any) => s.id),
        [agg.body.id, stream.body.id],
      );

      const badAgg = await api.call('POST', '/v1/sends', {
        kind: 'aggregate',
        aggregate: { schedule: { kind: 'delays', delaysMs: [0] }, messages: [{ to: 'nope', text: 'x' }] },
      });
      assertError(badAgg, 400, 'invalid_policy');
      assert.equal(badAgg.body.error.issues[0].path, 'aggregate.messages[0].to');
      assertError(await api.call('POST', '/v1/sends', { kind: 'stream', streams: [{ to: sink.url, bitrate: 1000 }] }), 400, 'invalid_policy');
      assertError(await api.call('POST', '/v1/sends', { kind: 'other' }), 400, 'invalid_policy');
    } finally {
      await sink.close();
    }
  });

  test('an aggregate job cannot be cancelled while it runs (409 not_cancellable)', async () => {
    const sink = await openReceiver();
    try {
      const agg = await api.call('POST', '/v1/sends', {
        kind: 'aggregate',
        aggregate: {
          schedule: { kind: 'delays', delaysMs: [0, 1500] },
          messages: [
            { to: sink.url, text: 'a' },
            { to: sink.url, text: 'b' },
          ],
        },
      });
      assertError(await api.call('DELETE', `/v1/sends/${agg.body.id}`), 409, 'not_cancellable');
      await sink.waitFor(2);
    } finally {
      await sink.close();
    }
  });
});

describe('HTTP API limits', () => {
  test('413 body_too_large for a body over maxBodyBytes (by Content-Length and by counting)', async () => {
    const api = await startApi({ maxBodyBytes: 4096 });
    try {
      const big = JSON.stringify(replicate('big', { to: Array.from({ length: 400 }, (_, i) => `udp://127.0.0.1:${10000 + i}`) }));
      assert.ok(big.length > 4096);
      assertError(await api.call('POST', '/v1/flows', big), 413, 'body_too_large');
      // Chunked: no Content-Length, refused once 4096 bytes arrived.
      const chunked = await fetch(`${api.url}/v1/flows`, {
        method: 'POST',
        headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
        body: new Blob([big]).stream(),
        duplex: 'half',
      } as RequestInit);
      assert.equal(chunked.status, 413);
      assert.equal(((await chunked.json()) as any).error.code, 'body_too_large');
      assert.equal(api.service.flow('big'), undefined);
      assert.equal((await api.call('GET', '/v1/health')).status, 200, 'the server goes on');
    } finally {
      await api.close();
    }
  });

  test('429 rate_limited past the burst, per token; unauthenticated requests are not counted', async () => {
    const api = await startApi({ rateLimit: { perSecond: 1, burst: 5 } });
    try {
      for (let i = 0; i < 20; i++) assert.equal((await fetch(`${api.url}/v1/health`)).status, 401);
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await api.call('GET', '/v1/health')).status);
      assert.deepEqual(statuses.slice(0, 5), [200, 200, 200, 200, 200]);
      assert.ok(
        statuses.slice(5).every((s) => s === 429),
        String(statuses),
      );
      const r = await api.call('GET', '/v1/flows');
      assertError(r, 429, 'rate_limited');
      assert.ok(r.headers.get('retry-after'), 'says when to retry');
    } finally {
      await api.close();
    }
  });
});
