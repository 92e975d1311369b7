/**
 * TPO gateways in the daemon, through the API (in this process, explicit
 * interception on loopback, no root): status, a peer and a table entry
 * added at run time that pair and carry a TCP flow byte-exact, the
 * errors (400 with field paths, 404, 409), the events, and the changes
 * replayed from the state file after a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freeTcpPort, freeUdpPort, hashServer, sha } from '../tpo/gateway-helpers.js';
import { readEvents, startApi, tempDir } from './api-helpers.js';

function through(port: number, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.on('connect', () => s.end(data));
  });
}

test('TPO through the API: peers and table entries at run time, errors, events, replayed after a restart', { timeout: 120_000 }, async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = await hashServer();
  t.after(() => server.close());
  const [portA, portB, web] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort()];
  const id = randomBytes(3).toString('hex');
  const [nameA, nameB] = [`ga-${id}`, `gb-${id}`];
  const key = randomBytes(32).toString('hex');
  writeFileSync(
    join(dir, 'a.yaml'),
    JSON.stringify({
      name: nameA,
      listen: `127.0.0.1:${portA}`,
      peers: [{ name: 'x', key: randomBytes(32).toString('hex'), keyId: 9 }],
      control: join(dir, 'a.sock'),
    }),
  );
  writeFileSync(
    join(dir, 'b.yaml'),
    JSON.stringify({
      name: nameB,
      listen: `127.0.0.1:${portB}`,
      peers: [{ name: 'a', key, keyId: 1 }],
      deliver: { allow: ['127.0.0.1/32'] },
      control: join(dir, 'b.sock'),
    }),
  );
  const config = 'tier: portable\ntpo:\n  - config: a.yaml\n  - config: b.yaml\n';
  let api = await startApi({ config, dir });
  try {
    const events = await readEvents(api.url, api.token);
    const list = await api.call('GET', '/v1/tpo');
    assert.deepEqual(list.body.gateways.map((g: any) => g.name).sort(), [nameA, nameB]);
    assert.equal((await api.call('GET', `/v1/tpo/${nameA}`)).body.listen, `127.0.0.1:${portA}`);
    assert.equal((await api.call('GET', '/v1/health')).body.gateways, 2);

    // A peer added at run time pairs.
    const peer = await api.call('POST', `/v1/tpo/${nameA}/peers`, { name: 'b', address: `127.0.0.1:${portB}`, key, keyId: 1 });
    assert.equal(peer.status, 201, JSON.stringify(peer.body));
    assert.deepEqual(peer.body, { name: 'b', address: `127.0.0.1:${portB}`, keyId: 1 });
    assert.equal((await events.waitFor((e) => e.type === 'tpochanged')).data.change, 'peeradded');
    await events.waitFor((e) => e.type === 'peerup' && e.data.gateway === nameA && e.data.peer === 'b', 20_000);
    const peers = await api.call('GET', `/v1/tpo/${nameA}/peers`);
    assert.deepEqual(
      peers.body.peers.map((p: any) => p.name),
      ['x', 'b'],
    );
    assert.ok(!JSON.stringify(peers.body).includes(key), 'never a key');

    // A table entry added at run time carries a flow.
    const entry = await api.call('POST', `/v1/tpo/${nameA}/table`, {
      name: 'web',
      protocol: 'tcp',
      listen: `127.0.0.1:${web}`,
      target: `127.0.0.1:${server.port}`,
      peers: ['b'],
    });
    assert.equal(entry.status, 201, JSON.stringify(entry.body));
    const data = randomBytes(200_000);
    assert.equal(await through(web, data), sha(data));
    assert.deepEqual(
      (await api.call('GET', `/v1/tpo/${nameA}/table`)).body.table.map((e: any) => e.name),
      ['web'],
    );

    // Errors.
    const bad = await api.call('POST', `/v1/tpo/${nameA}/peers`, { name: 'c', key: 'abcd' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'invalid_policy');
    assert.ok(
      bad.body.error.issues.some((i: any) => i.path === 'key'),
      JSON.stringify(bad.body),
    );
    const dup = await api.call('POST', `/v1/tpo/${nameA}/peers`, { name: 'b', key, keyId: 4 });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, 'conflict');
    const used = await api.call('DELETE', `/v1/tpo/${nameA}/peers/b`);
    assert.equal(used.status, 409, 'a table entry names it');
    assert.equal(used.body.error.code, 'conflict');
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const takenPort = (blocker.address() as net.AddressInfo).port;
    const taken = await api.call('POST', `/v1/tpo/${nameA}/table`, {
      name: 'w2',
      protocol: 'tcp',
      listen: `127.0.0.1:${takenPort}`,
      target: '127.0.0.1:1',
      peers: ['b'],
    });
    blocker.close();
    assert.equal(taken.status, 409, JSON.stringify(taken.body));
    assert.equal(taken.body.error.code, 'address_in_use');
    assert.equal((await api.call('DELETE', `/v1/tpo/${nameA}/peers/nobody`)).body.error.code, 'peer_not_found');
    assert.equal((await api.call('DELETE', `/v1/tpo/${nameA}/table/nothing`)).body.error.code, 'entry_not_found');
    assert.equal((await api.call('GET', '/v1/tpo/none/peers')).body.error.code, 'gateway_not_found');

    // Removing x (a config peer) is recorded as a removal; b and web as additions.
    assert.equal((await api.call('DELETE', `/v1/tpo/${nameA}/peers/x`)).status, 200);
    const state = JSON.parse(readFileSync(join(dir, 'serve.state.json'), 'utf8'));
    assert.deepEqual(state.tpo[nameA].removedPeers, ['x']);
    assert.deepEqual(
      state.tpo[nameA].peers.map((p: any) => p.name),
      ['b'],
    );
    assert.deepEqual(
      state.tpo[nameA].table.map((e: any) => e.name),
      ['web'],
    );
    events.close();
  } finally {
    await api.close();
  }

  // The same config and state: the changes come back.
  api = await startApi({ config, dir });
  try {
    assert.deepEqual(
      (await api.call('GET', `/v1/tpo/${nameA}/peers`)).body.peers.map((p: any) => p.name),
      ['b'],
    );
    assert.deepEqual(
      (await api.call('GET', `/v1/tpo/${nameA}/table`)).body.table.map((e: any) => e.name),
      ['web'],
    );
    const t0 = Date.now();
    while (!(await api.call('GET', `/v1/tpo/${nameA}`)).body.peers.find((p: any) => p.name === 'b')?.up) {
      assert.ok(Date.now() - t0 < 20_000, 'the replayed peer pairs again');
      await new Promise((r) => setTimeout(r, 50));
    }
    const data = randomBytes(10_000);
    assert.equal(await through(web, data), sha(data));
    const removed = await api.call('DELETE', `/v1/tpo/${nameA}/table/web`);
    assert.equal(removed.status, 200);
    assert.equal(removed.body.name, 'web');

    // SIGHUP: the files win. The gateway the API changed restarts from its file; the other is left alone.
    const summary = await api.service.reload();
    assert.deepEqual(summary.gatewaysRestarted, [nameA]);
    assert.deepEqual(summary.gatewaysStarted, []);
    assert.deepEqual(
      (await api.call('GET', `/v1/tpo/${nameA}/peers`)).body.peers.map((p: any) => p.name),
      ['x'],
    );
    const after = JSON.parse(readFileSync(join(dir, 'serve.state.json'), 'utf8'));
    assert.deepEqual(after.tpo[nameA], { peers: [], removedPeers: [], table: [], removedTable: [] });
  } finally {
    await api.close();
  }
});
