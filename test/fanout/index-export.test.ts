/**
 * `Fanout` and its types as the package exports them (src/index.ts): the
 * example of docs/API.md, "Live fan-out: Fanout", on real loopback sockets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fanout, PolicyValidationError, fanoutInputProblem, type FanoutOptions, type FanoutStats } from '../../src/index.js';
import { spliceUnavailable } from '../../src/sys/splice.js';
import { freeUdpPort } from '../tpo/gateway-helpers.js';
import { DATAGRAM, datagram, portOf, receiver, sendSeq, waitFor } from './fanout-helpers.js';

const skip = spliceUnavailable();
if (skip) console.log(`# fan-out export test skipped: ${skip}`);

test('Fanout from the package index: an HTTP client of a named input gets every datagram; stats; close', { skip, timeout: 60_000 }, async () => {
  const port = await freeUdpPort();
  const options: FanoutOptions = { http: '127.0.0.1:0', inputs: [`cam=udp://127.0.0.1:${port}`] };
  const f = await Fanout.start(options);
  try {
    const r = await receiver(portOf(f.http!), { path: '/cam' });
    assert.ok(await waitFor(async () => (await f.stats()).totals.clients === 1, 10_000), 'client registered');
    await sendSeq(port, 0, 50);
    assert.ok(await waitFor(() => r.body().byteLength >= 50 * DATAGRAM, 10_000), 'the client got the stream');
    assert.ok(r.body().equals(Buffer.concat(Array.from({ length: 50 }, (_, i) => datagram(i)))));
    const s: FanoutStats = await f.stats();
    assert.equal(s.inputs[0]!.datagrams, 50);
    assert.equal(s.clients[0]!.via, 'http');
    r.socket.destroy();
  } finally {
    const last = await f.close();
    assert.equal(last.front.accepted, 1);
  }
  await assert.rejects(Fanout.start({ inputs: ['udp://127.0.0.1:1'] }), PolicyValidationError);
});

test('fanoutInputProblem from the package index: udp:// and rtp:// inputs pass, others say why', () => {
  assert.equal(fanoutInputProblem('udp://239.1.1.1:5000'), undefined);
  assert.equal(fanoutInputProblem('rtp://[ff3e::1]:5000'), undefined);
  assert.match(fanoutInputProblem('tcp://127.0.0.1:1') ?? '', /unsupported scheme/);
  assert.ok(fanoutInputProblem('udp://239.1.1.1') !== undefined, 'no port');
});
