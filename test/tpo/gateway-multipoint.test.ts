/**
 * Multipoint (issue #7): one gateway peers with two others on its one UDP
 * port, each pair with its own key; a route table picks the peer per
 * destination; a table entry naming both peers fans one flow out to both
 * (UDP: every datagram reaches both destinations; TCP: both servers get the
 * client's bytes, the client hears the first peer's server).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTpoConfig } from '../../src/tpo/config/config.js';
import { Gateway } from '../../src/tpo/gateway/gateway.js';
import { ExplicitInterception } from '../../src/tpo/intercept/explicit.js';
import { freeTcpPort, freeUdpPort } from './gateway-helpers.js';

async function udpSink(address = '127.0.0.1'): Promise<{ sock: dgram.Socket; got: string[] }> {
  const sock = dgram.createSocket('udp4');
  const got: string[] = [];
  sock.on('message', (m, r) => {
    got.push(m.toString());
    sock.send(Buffer.from(`ack ${m}`), r.port, r.address);
  });
  await new Promise<void>((r) => sock.bind(0, address, r));
  sock.setRecvBufferSize(4 << 20);
  return { sock, got };
}

async function tcpHashServer(tag: string): Promise<{ srv: net.Server; port: number; hashes: string[] }> {
  const hashes: string[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => {
      const hex = h.digest('hex');
      hashes.push(hex);
      s.end(`${tag}:${hex}`);
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, port: (srv.address() as net.AddressInfo).port, hashes };
}

test('one gateway, two peers on one port: route table per destination, fan-out of a UDP and a TCP flow to both', { timeout: 60_000 }, async () => {
  const [pa, pb, pc] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
  const [kb, kc] = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
  const sinkB = await udpSink();
  // A destination only C's route covers: 127.0.0.2 (loopback answers on all of 127/8).
  const sinkC = await udpSink('127.0.0.2');
  const tcpB = await tcpHashServer('B');
  const [lFan, lTcp, lB] = [await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
  const configA = parseTpoConfig({
    name: 'a',
    listen: `127.0.0.1:${pa}`,
    peers: [
      { name: 'b', address: `127.0.0.1:${pb}`, key: kb, keyId: 1 },
      { name: 'c', address: `127.0.0.1:${pc}`, key: kc, keyId: 2 },
    ],
    table: [
      { name: 'fan-udp', protocol: 'udp', listen: `127.0.0.1:${lFan}`, target: `127.0.0.1:${sinkB.sock.address().port}`, peers: ['b', 'c'] },
      { name: 'fan-tcp', protocol: 'tcp', listen: `127.0.0.1:${lTcp}`, target: `127.0.0.1:${tcpB.port}`, peers: ['b', 'c'] },
      { name: 'to-c', protocol: 'udp', listen: `127.0.0.1:${lB}`, target: `127.0.0.2:${sinkC.sock.address().port}` },
    ],
    routes: [
      { dst: '127.0.0.2/32', peer: 'c' },
      { dst: '127.0.0.0/8', peer: 'b' },
    ],
  });
  // B and C both deliver to what the messages name: for the fan-out entries, the same sink and server.
  const configB = parseTpoConfig({ name: 'b', listen: `127.0.0.1:${pb}`, peers: [{ name: 'a', key: kb, keyId: 1 }], deliver: { allow: ['127.0.0.0/8'] } });
  const configC = parseTpoConfig({ name: 'c', listen: `127.0.0.1:${pc}`, peers: [{ name: 'a', key: kc, keyId: 2 }], deliver: { allow: ['127.0.0.0/8'] } });
  const ic = await ExplicitInterception.start(configA.table);
  const a = await Gateway.start(configA, { interception: ic, interceptionName: 'explicit' });
  const b = await Gateway.start(configB);
  const c = await Gateway.start(configC);
  try {
    const t0 = performance.now();
    while (!a.status().peers.every((p) => p.up)) {
      if (performance.now() - t0 > 10_000) throw new Error('peers did not come up');
      await sleep(10);
    }
    // Fan-out UDP: both B and C deliver to the same target (sinkB): it sees every datagram twice.
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    const acks: string[] = [];
    client.on('message', (m) => acks.push(m.toString()));
    for (let i = 0; i < 50; i++) client.send(`f${i}`, lFan, '127.0.0.1');
    // Routed UDP: 127.0.0.2 goes to C by the /32 route (C delivers to 127.0.0.2, which loopback answers from sinkC's port).
    for (let i = 0; i < 20; i++) client.send(`r${i}`, lB, '127.0.0.1');
    const t1 = performance.now();
    while ((sinkB.got.length < 100 || sinkC.got.length < 20) && performance.now() - t1 < 10_000) await sleep(20);
    for (let i = 0; i < 50; i++) assert.equal(sinkB.got.filter((x) => x === `f${i}`).length, 2, `f${i} reached the target through both peers`);
    assert.equal(sinkC.got.filter((x) => x.startsWith('r')).length, 20, 'the /32 route sent these through C');
    assert.equal(b.status().counters.flowsDelivered, 1, 'B delivered the fan-out flow only');
    assert.equal(c.status().counters.flowsDelivered, 2, 'C delivered the fan-out flow and the routed one');
    // Replies of both branches reach the client (UDP fan-out: every branch's datagrams come back).
    while (acks.filter((x) => x.startsWith('ack f')).length < 100 && performance.now() - t1 < 10_000) await sleep(20);
    assert.equal(acks.filter((x) => x.startsWith('ack f')).length, 100);
    client.close();

    // Fan-out TCP: both branches connect to tcpB's port; the client hears the primary (B) only.
    const data = randomBytes(300_000);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: lTcp, allowHalfOpen: true });
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('end', () => resolve(Buffer.concat(chunks).toString()));
      s.on('error', reject);
      s.on('connect', () => s.end(data));
    });
    const hex = createHash('sha256').update(data).digest('hex');
    assert.equal(reply, `B:${hex}`);
    const t2 = performance.now();
    while (tcpB.hashes.length < 2 && performance.now() - t2 < 5000) await sleep(20);
    assert.deepEqual(tcpB.hashes, [hex, hex], 'both branches delivered the whole stream');
  } finally {
    await a.close();
    await b.close();
    await c.close();
    await ic.close();
    sinkB.sock.close();
    sinkC.sock.close();
    tcpB.srv.close();
  }
});
