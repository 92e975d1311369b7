/**
 * A cluster node facing bad input and a failing store, on loopback with a
 * real etcd (harness/etcd/etcd-server.ts) and one `sluice serve --cluster`:
 * flows written straight into etcd that are garbage, name an unknown field,
 * or clash on a port are refused whole and reported (GET /v1/cluster and
 * `sluice cluster status --json`) while the node's good flow keeps
 * delivering; an unreachable store at start-up is a non-zero exit naming
 * the store; a store that dies later leaves forwarding running, and the
 * node says so. Waits bound only hangs.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import { etcdSkipReason, freePort, startEtcd, type EtcdServer } from '../../harness/etcd/etcd-server.js';
import { labDatagram, labSeq } from '../../harness/cluster/lab-datagram.js';
import { runCli } from '../../harness/process/cli.js';
import { startServe, type Serve } from '../server/api-helpers.js';

const skip = etcdSkipReason() ?? false;
if (skip) process.stdout.write(`# skipping the cluster input tests: ${skip}\n`);

/** Receives lab datagrams on a loopback port; keeps their sequence numbers and arrival times. */
async function receiver(): Promise<{ port: number; got: { seq: number; t: number }[]; close(): void }> {
  const sock = dgram.createSocket('udp4');
  const got: { seq: number; t: number }[] = [];
  sock.on('message', (m) => {
    const seq = labSeq(m);
    if (seq !== undefined) got.push({ seq, t: Date.now() });
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { port: sock.address().port, got, close: () => sock.close() };
}

describe('cluster node: bad input and store failures', { skip, timeout: 240_000 }, () => {
  let etcd: EtcdServer;
  let store: EtcdStore;
  let dir: string;
  let config: string;
  let node: Serve | undefined;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let ingestPort: number;
  let sender: dgram.Socket;
  let seq = 0;
  let pump: NodeJS.Timeout | undefined;

  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 5000 });
    dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-input-'));
    config = join(dir, 'serve.json');
    writeFileSync(config, JSON.stringify({ tier: 'portable', api: { listen: '127.0.0.1:0', tokenFile: join(dir, 'token') }, state: join(dir, 'state.json') }));
    rx = await receiver();
    ingestPort = await freePort();
    sender = dgram.createSocket('udp4');
  });
  after(async () => {
    clearInterval(pump);
    sender?.close();
    await node?.stop();
    rx?.close();
    store?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start with a clear message when the store is unreachable', async () => {
    const dead = await freePort();
    const r = await runCli(['serve', '--config', config, '--cluster', `etcd://127.0.0.1:${dead}`, '--node', 'h0', '--address', '127.0.0.1'], 90_000);
    assert.notEqual(r.code, 0, `exit code; stderr: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${dead}`), 'the message names the store');
    assert.match(r.stderr, /cluster store|etcd/i);
  });

  it('runs a good flow; garbage, unknown fields and port clashes written into etcd are refused whole and reported', async () => {
    const args = ['--cluster', `etcd://${etcd.endpoint}`, '--node', 'h1', '--address', '127.0.0.1', '--lease-ttl', '2', '--log-level', 'info'];
    node = await startServe(config, args, join(dir, 'token'));
    const good = { name: 'good', ingest: { primary: 'h1', port: ingestPort, allow: '127.0.0.1/32' }, subscribers: [`127.0.0.1:${rx.port}`] };
    await store.put('/sluice/flows/good', JSON.stringify(good));
    pump = setInterval(() => sender.send(labDatagram(seq++, 100), ingestPort, '127.0.0.1'), 10);
    const deadline = Date.now() + 30_000;
    while (rx.got.length === 0 && Date.now() < deadline) await sleep(100);
    assert.ok(rx.got.length > 0, `the good flow delivers; log: ${node.stderr().slice(-2000)}`);

    await store.put('/sluice/flows/bad1', '{"name": "bad1", "ingest": ');
    await store.put('/sluice/flows/bad2', JSON.stringify({ ...good, name: 'bad2', ingest: { ...good.ingest, port: ingestPort + 1 }, colour: 'red' }));
    await store.put('/sluice/flows/bad3', JSON.stringify({ ...good, name: 'bad3' }));
    const tBad = Date.now();
    let status: { refused: { key: string; reason: string }[]; self: { localFlows: string[] } } | undefined;
    while (Date.now() < tBad + 20_000) {
      status = (await node.call('GET', '/v1/cluster')).body;
      if ((status?.refused.length ?? 0) >= 3) break;
      await sleep(200);
    }
    const refused = new Map(status!.refused.map((r) => [r.key, r.reason]));
    for (const k of ['bad1', 'bad2', 'bad3']) assert.ok(refused.has(`/sluice/flows/${k}`), `${k} refused: ${JSON.stringify(status!.refused)}`);
    assert.match(refused.get('/sluice/flows/bad2')!, /colour/, 'the reason names the unknown field');
    assert.match(refused.get('/sluice/flows/bad3')!, new RegExp(String(ingestPort)), 'the reason names the clashing port');
    // Said in the log too, once per refused write.
    for (const k of ['bad1', 'bad2', 'bad3'])
      assert.ok(
        node.records().some((r) => r.level === 'warn' && (r.key === `/sluice/flows/${k}` || r.flow === k) && typeof r.reason === 'string'),
        `a warn names /sluice/flows/${k}; log: ${node.stderr().slice(-2000)}`,
      );
    // Never applied in part: no local flow of a refused one, the good one still there.
    const local = ((await node.call('GET', '/v1/flows')).body as { flows: { name: string }[] }).flows.map((f) => f.name);
    assert.ok(!local.some((n) => /^cluster\.bad/.test(n)), `local flows: ${local.join(', ')}`);
    assert.ok(
      local.some((n) => n.startsWith('cluster.good.')),
      `local flows: ${local.join(', ')}`,
    );

    const cli = await runCli(['cluster', 'status', '--json', '--cluster', `etcd://${etcd.endpoint}`], 90_000);
    assert.equal(cli.code, 0, cli.stderr);
    const fromCli = JSON.parse(cli.stdout) as { refused: { key: string }[] };
    assert.deepEqual(fromCli.refused.map((r) => r.key).sort(), ['/sluice/flows/bad1', '/sluice/flows/bad2', '/sluice/flows/bad3']);

    // The good flow delivered throughout, without a gap.
    await sleep(500);
    const since = rx.got.filter((g) => g.t >= tBad - 500).map((g) => g.seq);
    assert.ok(since.length > 50, `still delivering after the bad writes (${since.length})`);
    assert.equal(since.at(-1)! - since[0]! + 1, new Set(since).size, 'no datagram of the good flow lost');
  });

  it('keeps forwarding when the store dies, and says so', async () => {
    assert.ok(node, 'the node of the previous case runs');
    await etcd.kill();
    const tDown = Date.now();
    await node.waitForLog((r) => /store unreachable/.test(String(r.msg)), 30_000);
    await sleep(3000); // past the 2 s lease: the store is gone, so no one can expire it, and the node keeps its assignment
    const status = (await node.call('GET', '/v1/cluster')).body as { self: { storeUp: boolean } };
    assert.equal(status.self.storeUp, false, 'GET /v1/cluster says the store is down');
    const after = rx.got.filter((g) => g.t >= tDown + 2500);
    assert.ok(after.length > 20, `datagrams still delivered with the store down (${after.length})`);
  });
});
