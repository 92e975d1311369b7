/**
 * The gateway's flow table under one greedy client (issue #16, item 11):
 * per-source quotas (limits.maxFlowsPerSource) keep one client from
 * locking everyone else out, TCP flows that carry nothing for
 * limits.tcpIdleMs are reset, and when a limit is reached quiet UDP flows
 * make room, least recently used first. Clients are told apart by their
 * loopback address (127.0.0.2, 127.0.0.3, ...).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FlowAdmission } from '../../src/tpo/gateway/flow-admission.js';
import { statusText } from '../../src/cli/tpo.js';
import { freeTcpPort, startPair } from './gateway-helpers.js';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function echoUdp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  s.setRecvBufferSize(4 << 20);
  s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address));
  return s;
}

async function echoTcp(): Promise<{ port: number; sockets: Set<net.Socket>; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, sockets, close: () => srv.close() };
}

/** A UDP client bound to `address`: sends `text`, resolves with the reply (or undefined after `ms`). */
async function udpClient(address: string): Promise<{ ask: (port: number, text: string, ms?: number) => Promise<string | undefined>; close: () => void }> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, address, r));
  return {
    ask: (port, text, ms = 5000) =>
      new Promise((resolve) => {
        const t = setTimeout(() => {
          c.off('message', on);
          resolve(undefined);
        }, ms);
        const on = (m: Buffer) => {
          clearTimeout(t);
          c.off('message', on);
          resolve(m.toString());
        };
        c.on('message', on);
        c.send(text, port, '127.0.0.1');
      }),
    close: () => c.close(),
  };
}

/** A TCP client from `address`: connected, with what it read and how it ended. */
function tcpClient(address: string, port: number): Promise<{ s: net.Socket; read: () => string; ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: address });
    let got = '';
    const ended = new Promise<string>((r) => {
      s.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
      s.on('close', () => r('closed'));
    });
    s.on('data', (d) => (got += d));
    s.once('connect', () => resolve({ s, read: () => got, ended }));
    s.once('error', reject);
  });
}

test('admission: quotas per source, the table limit, and quiet UDP flows evicted least recently used first', () => {
  const a = new FlowAdmission<string>({ maxFlows: 4, maxFlowsPerSource: 3, evictIdleMs: 1000 });
  const evicted: string[] = [];
  const evict = (f: string) => {
    evicted.push(f);
    a.remove(f);
  };
  // Source x: two UDP flows and one TCP flow fill its quota.
  assert.deepEqual(a.admit('x', evict, 0), { ok: true });
  a.add('x-u1', 'x', true, 0);
  a.add('x-u2', 'x', true, 10);
  a.add('x-t1', 'x', false, 20);
  // Its UDP flows are not quiet yet: refused, nothing evicted.
  assert.deepEqual(a.admit('x', evict, 500), { ok: false, reason: 'source' });
  assert.deepEqual(evicted, []);
  // x-u1 carries a datagram: x-u2 becomes its least recently used.
  a.touch('x-u1', 600);
  // Quiet long enough: x's own least recently used UDP flow makes room.
  assert.deepEqual(a.admit('x', evict, 1500), { ok: true });
  assert.deepEqual(evicted, ['x-u2']);
  a.add('x-u3', 'x', true, 1500);
  // Another source is not held back by x's quota; the table (4) fills.
  assert.deepEqual(a.admit('y', evict, 1500), { ok: true });
  a.add('y-u1', 'y', true, 1500);
  assert.equal(a.size, 4);
  // Full table: the least recently used quiet UDP flow of anyone goes (x-u1, last active at 600), then x-u3/y-u1 are too recent.
  assert.deepEqual(a.admit('z', evict, 1700), { ok: true });
  assert.deepEqual(evicted, ['x-u2', 'x-u1']);
  a.add('z-t1', 'z', false, 1700);
  assert.deepEqual(a.admit('w', evict, 1800), { ok: false, reason: 'limit' });
  // TCP flows are never evicted: with only TCP flows left the table refuses.
  a.remove('x-u3');
  a.remove('y-u1');
  a.add('w-t1', 'w', false, 1800);
  a.add('w-t2', 'w', false, 1800);
  assert.deepEqual(a.admit('v', evict, 100_000), { ok: false, reason: 'limit' });
  assert.deepEqual(evicted, ['x-u2', 'x-u1']);
  assert.equal(a.count('x'), 1);
  assert.equal(a.count('w'), 2);
});

test('one client holding its quota of TCP connections and flooding UDP source ports does not stop another client', { timeout: 60_000 }, async () => {
  const tcp = await echoTcp();
  const udp = await echoUdp();
  const lt = await freeTcpPort();
  const lu = await freeTcpPort();
  const pair = await startPair({
    table: [
      { protocol: 'tcp', listen: `127.0.0.1:${lt}`, target: `127.0.0.1:${tcp.port}` },
      { protocol: 'udp', listen: `127.0.0.1:${lu}`, target: `127.0.0.1:${udp.address().port}` },
    ],
    limits: { maxFlows: 40, maxFlowsPerSource: 10 },
  });
  const held: net.Socket[] = [];
  const udpClients: { close: () => void }[] = [];
  try {
    // Client x: 10 TCP connections, carried (each echoes).
    for (let i = 0; i < 10; i++) {
      const c = await tcpClient('127.0.0.2', lt);
      held.push(c.s);
      c.s.write(`x${i}`);
      await until(() => c.read() === `x${i}`, 10_000, `connection ${i} of x to be carried`);
    }
    // The 11th is reset: x's quota is full (the reset may come before the client saw its connect complete).
    const extra = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: lt, localAddress: '127.0.0.2' });
      held.push(s);
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
      setTimeout(() => resolve('still open after 20 s'), 20_000).unref();
    });
    assert.equal(extra, 'ECONNRESET');
    // And x's UDP from 60 source ports: nothing of it is admitted (its quota is full of TCP, which is never evicted).
    for (let i = 0; i < 60; i++) {
      const c = await udpClient('127.0.0.2');
      udpClients.push(c);
      void c.ask(lu, `u${i}`, 100);
    }
    await until(() => pair.a.status().counters.refusedSourceQuota >= 61, 30_000, 'x refused 61 times');
    // Client y still gets through, TCP and UDP, byte-exact.
    const y = await tcpClient('127.0.0.3', lt);
    held.push(y.s);
    y.s.write('hello from y');
    await until(() => y.read() === 'hello from y', 10_000, "y's TCP echo");
    const yu = await udpClient('127.0.0.3');
    udpClients.push(yu);
    assert.equal(await yu.ask(lu, 'ping'), 're:ping');
    const flows = pair.a.status().flows;
    assert.equal(flows.filter((f) => f.tuple.includes(' 127.0.0.2:')).length, 10, 'x holds exactly its quota');
    assert.equal(pair.a.status().counters.refusedLimit, 0, 'the table itself never filled');
    // What `sluice status` shows.
    const text = statusText(pair.a.status());
    assert.match(text, /refusedSourceQuota=6\d/);
    assert.match(text, /busiest source 127\.0\.0\.2: 10/);
    // The session's rate control, as `ss -i` shows a TCP connection's.
    assert.match(text, /phase +min rtt ms +pacing Mbit\/s +window KiB/);
    const rate = pair.a.status().peers[0]?.rate;
    assert.ok(rate && ['startup', 'drain', 'probe'].includes(rate.phase) && rate.windowBytes > 0, JSON.stringify(rate));
  } finally {
    for (const s of held) s.destroy();
    for (const c of udpClients) c.close();
    await pair.close();
    tcp.close();
    udp.close();
  }
});

test('a TCP flow that carries nothing for limits.tcpIdleMs is reset at both ends; a busy one stays', { timeout: 120_000 }, async () => {
  const tcp = await echoTcp();
  const lt = await freeTcpPort();
  const pair = await startPair({ table: [{ protocol: 'tcp', listen: `127.0.0.1:${lt}`, target: `127.0.0.1:${tcp.port}` }], limits: { tcpIdleMs: 5000 } });
  const held: net.Socket[] = [];
  try {
    const idle = await tcpClient('127.0.0.2', lt);
    const busy = await tcpClient('127.0.0.3', lt);
    held.push(idle.s, busy.s);
    idle.s.write('a');
    busy.s.write('b');
    await until(() => idle.read() === 'a' && busy.read() === 'b', 10_000, 'both carried');
    // The busy one sends every 100 ms (50 times inside the timeout: a loaded host's stalls do not make it idle); the idle one nothing.
    let n = 0;
    const timer = setInterval(() => busy.s.write(String(n++ % 10)), 100);
    try {
      const ended = await Promise.race([idle.ended, sleep(60_000, 'still open after 60 s')]);
      assert.equal(ended, 'ECONNRESET', 'the idle client is reset');
      await until(() => tcp.sockets.size === 1, 30_000, 'the far side to close the idle connection too');
      // Past the timeout since the idle one's last byte, the busy one still echoes.
      await sleep(1000);
      const before = busy.read().length;
      await until(() => busy.read().length > before + 2, 10_000, 'the busy connection to keep echoing');
      assert.ok(!busy.s.destroyed);
    } finally {
      clearInterval(timer);
    }
    assert.ok(pair.a.status().counters.idleTcpClosed + pair.b.status().counters.idleTcpClosed >= 1);
  } finally {
    for (const s of held) s.destroy();
    await pair.close();
    tcp.close();
  }
});

test('a full table makes room by ending its least recently used quiet UDP flows first', { timeout: 60_000 }, async () => {
  const udp = await echoUdp();
  const lu = await freeTcpPort();
  const pair = await startPair({ table: [{ protocol: 'udp', listen: `127.0.0.1:${lu}`, target: `127.0.0.1:${udp.address().port}` }], limits: { maxFlows: 3 } });
  const clients: Awaited<ReturnType<typeof udpClient>>[] = [];
  const at = async (address: string) => {
    const c = await udpClient(address);
    clients.push(c);
    return c;
  };
  const sources = () =>
    pair.a
      .status()
      .flows.map((f) => /^udp ([\d.]+):/.exec(f.tuple)![1])
      .sort();
  try {
    const [a, b, c] = [await at('127.0.0.2'), await at('127.0.0.3'), await at('127.0.0.4')];
    for (const [cl, name] of [
      [a, 'a'],
      [b, 'b'],
      [c, 'c'],
    ] as const)
      assert.equal(await cl.ask(lu, name), `re:${name}`);
    // All three quiet for over the eviction threshold (1 s), then b is used again: a and c are now the least recent.
    await sleep(1300);
    assert.equal(await b.ask(lu, 'b again'), 're:b again');
    const d = await at('127.0.0.5');
    assert.equal(await d.ask(lu, 'd'), 're:d', 'd gets in: a quiet flow made room');
    assert.deepEqual(sources(), ['127.0.0.3', '127.0.0.4', '127.0.0.5'], 'a (least recently used) was evicted');
    const e = await at('127.0.0.6');
    assert.equal(await e.ask(lu, 'e'), 're:e');
    assert.deepEqual(sources(), ['127.0.0.3', '127.0.0.5', '127.0.0.6'], 'then c');
    assert.equal(pair.a.status().counters.evictedUdp, 2);
    // An evicted client simply starts a new flow with its next datagram (if there is room again).
    assert.equal(pair.a.status().counters.refusedLimit, 0);
  } finally {
    for (const cl of clients) cl.close();
    await pair.close();
    udp.close();
  }
});
