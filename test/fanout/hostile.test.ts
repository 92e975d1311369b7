/**
 * The fan-out's listening sockets under bad input: malformed and hostile
 * requests get clear HTTP errors and counters, never-sending clients time
 * out, floods of half-sent requests and of streams are bounded, groups
 * outside the configuration and allow list are refused (no open proxy),
 * and the server still serves a good client afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { Fanout } from '../../src/control/fanout.js';
import { PolicyValidationError } from '../../src/errors.js';
import { spliceUnavailable } from '../../src/sys/splice.js';
import { freeUdpPort } from '../tpo/gateway-helpers.js';
import { DATAGRAM, portOf, receiver, sendSeq, sequences, sleep, waitFor } from './fanout-helpers.js';

const skip = spliceUnavailable();

async function answer(port: number, request: string): Promise<{ status: number | undefined; text: string }> {
  const r = await receiver(port, { request });
  await Promise.race([r.closed, sleep(5000)]);
  r.socket.destroy();
  return { status: r.status(), text: r.data().toString('latin1') };
}

test('bad requests get HTTP errors and counters; the server keeps serving', { skip, timeout: 60_000 }, async () => {
  const port = await freeUdpPort();
  const f = await Fanout.start({
    http: '127.0.0.1:0',
    inputs: [`tv=udp://127.0.0.1:${port}`],
    allow: [`127.0.0.2/32:${port}`],
    limits: { headerTimeoutMs: 300, maxHeaderBytes: 1024, maxClients: 2, maxPending: 4 },
  });
  const hp = portOf(f.http!);
  try {
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    assert.equal((await answer(hp, 'garbage\r\n\r\n')).status, 400);
    assert.equal((await answer(hp, 'GET / HTTP/1.1\r\nX: \x01\r\n\r\n')).status, 400);
    assert.equal((await answer(hp, get('/udp/not-an-ip:1'))).status, 400);
    assert.equal((await answer(hp, get('/udp/127.0.0.1:99999'))).status, 400);
    assert.equal((await answer(hp, get('/udp/%zz'))).status, 400);
    assert.equal((await answer(hp, get('/nothing/here'))).status, 404);
    assert.equal((await answer(hp, get('/nosuchname'))).status, 404);
    const open = await answer(hp, get('/udp/239.255.0.1:1234'));
    assert.equal(open.status, 403, 'an unconfigured group is refused: not an open proxy');
    assert.match(open.text, /not an input this server may join/);
    assert.equal((await answer(hp, get(`/udp/127.0.0.3:${port}`))).status, 403);
    assert.equal((await answer(hp, `POST /tv HTTP/1.1\r\nContent-Length: 0\r\n\r\n`)).status, 405);
    assert.equal((await answer(hp, `GET /tv HTTP/1.1\r\n${'X-Pad: y\r\n'.repeat(200)}\r\n`)).status, 431);
    assert.equal((await answer(hp, 'GET /tv HTTP/1.1\r\nHost: x\r\n')).status, 408, 'a head that never ends times out');
    const status = await answer(hp, get('/status'));
    assert.equal(status.status, 200);
    const json = JSON.parse(status.text.slice(status.text.indexOf('\r\n\r\n') + 4)) as { front: { refused: Record<string, number> } };
    assert.equal(json.front.refused.notAllowed, 2);
    const head = await answer(hp, `HEAD /tv HTTP/1.1\r\n\r\n`);
    assert.equal(head.status, 200);

    // maxClients: the third stream is a 503.
    const a = await receiver(hp, { path: '/tv' });
    const b = await receiver(hp, { path: `/udp/127.0.0.1:${port}` });
    assert.ok(await waitFor(async () => (await f.stats()).totals.clients === 2, 10_000));
    assert.equal((await answer(hp, get('/tv'))).status, 503);

    const s = await f.stats();
    assert.deepEqual(s.front.refused, { badRequest: 5, notFound: 2, notAllowed: 2, method: 1, tooLarge: 1, timeout: 1, overLimit: 1, pendingLimit: 0 });
    assert.equal(s.front.accepted, 2);
    assert.equal(s.front.status, 1);
    const n = await sendSeq(port, 0, 200);
    assert.ok(await waitFor(() => a.body().byteLength >= n * DATAGRAM && b.body().byteLength >= n * DATAGRAM, 10_000));
    assert.equal(sequences(a.body()).length, n);
    assert.equal(sequences(b.body()).length, n);
  } finally {
    await f.close();
  }
});

test('an input that cannot be opened is a 503 naming the failed call and errno', { skip, timeout: 60_000 }, async () => {
  const port = await freeUdpPort();
  // A socket bound without SO_REUSEADDR holds the port: the fan-out's bind fails.
  const holder = createSocket('udp4');
  await new Promise<void>((r) => holder.bind(port, '127.0.0.1', () => r()));
  const f = await Fanout.start({ http: '127.0.0.1:0', inputs: [`udp://127.0.0.1:${port}`] });
  try {
    const a = await answer(portOf(f.http!), `GET /udp/127.0.0.1:${port} HTTP/1.1\r\n\r\n`);
    assert.equal(a.status, 503);
    assert.match(a.text, /bind failed: EADDRINUSE/);
    assert.ok(await waitFor(async () => (await f.stats()).totals.ended['input-failed'] === 1, 5000));
    assert.equal((await f.stats()).totals.inputs, 0);
  } finally {
    holder.close();
    await f.close();
  }
});

test('a flood of connections that never send is bounded by maxPending and each is timed out', { skip, timeout: 60_000 }, async () => {
  const port = await freeUdpPort();
  const f = await Fanout.start({ http: '127.0.0.1:0', inputs: [`udp://127.0.0.1:${port}`], limits: { headerTimeoutMs: 500, maxPending: 8 } });
  const hp = portOf(f.http!);
  try {
    const sockets = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const s = connect(hp, '127.0.0.1');
        s.on('error', () => {});
        await new Promise<void>((r) => s.once('connect', () => r()).once('error', () => r()));
        return s;
      }),
    );
    assert.ok(await waitFor(async () => (await f.stats()).front.refused.timeout === 8, 10_000), 'the 8 pending ones were timed out');
    const s = await f.stats();
    assert.equal(s.front.refused.pendingLimit, 32, 'the rest were reset at once');
    for (const x of sockets) x.destroy();
    // Afterwards a good client is served.
    const r = await receiver(hp, { path: `/udp/127.0.0.1:${port}` });
    assert.ok(await waitFor(async () => (await f.stats()).totals.clients === 1, 10_000));
    const n = await sendSeq(port, 0, 50);
    assert.ok(await waitFor(() => r.body().byteLength >= n * DATAGRAM, 10_000));
  } finally {
    await f.close();
  }
});

test('plain TCP listeners reset connections over maxClients; bad options are PolicyValidationErrors', { skip, timeout: 60_000 }, async () => {
  await assert.rejects(Fanout.start({ http: 'nonsense' }), PolicyValidationError);
  await assert.rejects(Fanout.start({ inputs: ['udp://127.0.0.1:5000'] }), PolicyValidationError);
  await assert.rejects(Fanout.start({ http: '127.0.0.1:0', allow: ['10.0.0.0/99'] }), PolicyValidationError);
  await assert.rejects(Fanout.start({ http: '127.0.0.1:0', limits: { pipeBytes: 4096 } }), PolicyValidationError);
  const port = await freeUdpPort();
  const f = await Fanout.start({ tcp: [{ listen: 'tcp://127.0.0.1:0', input: `udp://127.0.0.1:${port}` }], limits: { maxClients: 1 } });
  try {
    const a = await receiver(portOf(f.tcp[0]!));
    assert.ok(await waitFor(async () => (await f.stats()).totals.clients === 1, 10_000));
    const b = connect(portOf(f.tcp[0]!), '127.0.0.1');
    b.on('error', () => {});
    await Promise.race([new Promise((r) => b.once('close', r)), sleep(5000)]);
    assert.ok(b.destroyed, 'the connection over the limit was reset');
    assert.equal((await f.stats()).front.refused.overLimit, 1);
    // A plain TCP client that sends junk is ignored, not parsed.
    a.socket.write(Buffer.alloc(100_000, 0xff));
    const n = await sendSeq(port, 0, 100);
    assert.ok(await waitFor(() => a.body().byteLength >= n * DATAGRAM, 10_000));
    assert.equal(sequences(a.body()).length, n);
  } finally {
    await f.close();
  }
});
