/**
 * TpoGateway, the 'sluice/tpo' facade (issue 17, item 7): two of them on
 * loopback in explicit mode (no root) carry a TCP connection byte-exact
 * and say so in their events (peerup, flowopen), a refused flow is a
 * flowfail, a third gateway with the wrong key is a handshakefailure; a
 * listener that throws does not break the gateway; close() is idempotent
 * and leaves no listener, socket or process handler behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ControlSocketError,
  fetchStatus,
  parseTpoConfig,
  TpoGateway,
  type TpoFlowFailure,
  type TpoFlowInfo,
  type TpoGatewayEvents,
  type TpoHandshakeFailure,
} from '../../src/tpo/index.js';
import { freeTcpPort, freeUdpPort, hashServer, sha } from './gateway-helpers.js';

/** Connects, sends `data`, half-closes, reads to FIN; a reset or refusal rejects. */
function transfer(port: number, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => {
      s.end();
      resolve(got);
    });
    s.on('error', reject);
    s.on('connect', () => s.end(data));
  });
}

/** The first `event` the gateway emits that `match` accepts. */
function next<K extends keyof TpoGatewayEvents>(
  gw: TpoGateway,
  event: K,
  match: (...args: TpoGatewayEvents[K]) => boolean = () => true,
  ms = 20_000,
): Promise<TpoGatewayEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' from ${gw.name} within ${ms} ms`)), ms);
    const on = (...args: TpoGatewayEvents[K]) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      gw.off(event, on as never);
      resolve(args);
    };
    gw.on(event, on as never);
  });
}

const handlerCounts = () => ['SIGINT', 'SIGTERM', 'exit'].map((e) => process.listenerCount(e));

test(
  'two TpoGateways on loopback carry TCP byte-exact, with peerup, flowopen and flowfail events; close() twice is one close',
  { timeout: 90_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-facade-'));
    const server = await hashServer();
    const before = handlerCounts();
    const [portA, portB, listen, denied] = [await freeUdpPort(), await freeUdpPort(), await freeTcpPort(), await freeTcpPort()];
    const key = randomBytes(32).toString('hex');
    const b = await TpoGateway.start({
      config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key, keyId: 1 }], deliver: { allow: ['127.0.0.1/32'] } }),
      control: { path: join(dir, 'b.sock') },
    });
    const bUp = next(b, 'peerup');
    const a = await TpoGateway.start({
      config: parseTpoConfig({
        name: 'a',
        listen: `127.0.0.1:${portA}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key, keyId: 1 }],
        table: [
          { name: 'web', protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: `127.0.0.1:${server.port}` },
          // B delivers only to 127.0.0.1: this one is refused there.
          { name: 'denied', protocol: 'tcp', listen: `127.0.0.1:${denied}`, target: `127.0.0.2:${server.port}` },
        ],
      }),
      control: false,
    });
    let closed = 0;
    a.on('close', () => closed++);
    try {
      assert.deepEqual(handlerCounts(), before, 'starting installs no SIGINT/SIGTERM/exit handler');
      assert.equal(a.controlPath, undefined);
      assert.equal(b.controlPath, join(dir, 'b.sock'));
      assert.deepEqual(await next(a, 'peerup'), ['b']);
      assert.deepEqual(await bUp, ['a']);

      // A listener that throws is reported, and the gateway goes on.
      const listenerErrors: [string, unknown][] = [];
      a.on('listenererror', (event, err) => listenerErrors.push([event, err]));
      a.on('flowopen', () => {
        throw new Error('a broken listener');
      });
      const openedA = next(a, 'flowopen');
      const openedB = next(b, 'flowopen');
      const data = randomBytes(3_000_000);
      assert.equal(await transfer(listen, data), sha(data), 'the server got the upload byte-exact');
      const [fa] = (await openedA) as [TpoFlowInfo];
      const [fb] = (await openedB) as [TpoFlowInfo];
      assert.equal(fa.role, 'source');
      assert.equal(fb.role, 'destination');
      assert.equal(fa.protocol, 'tcp');
      assert.deepEqual(fa.dst, { address: '127.0.0.1', port: server.port });
      assert.deepEqual(fa.peers, ['b']);
      assert.deepEqual(fb.peers, ['a']);
      assert.equal(fa.tuple, fb.tuple, 'both gateways name the flow by the tuple the source side intercepted');
      assert.equal(listenerErrors.length, 1);
      assert.equal(listenerErrors[0]![0], 'flowopen');
      assert.equal(a.status().counters.flowsOpened, 1);

      // A destination B may not deliver to: B refuses it, the client sees a reset.
      const refused = next(b, 'flowfail');
      await assert.rejects(transfer(denied, Buffer.from('x')));
      const [fail] = (await refused) as [TpoFlowFailure];
      assert.equal(fail.reason, 'notAllowed');
      assert.equal(fail.role, 'destination');
      assert.equal(fail.peer, 'a');
      assert.match(fail.tuple!, new RegExp(`> 127\\.0\\.0\\.2:${server.port}$`));

      // The control socket answers the status, as `sluice status` reads it.
      const st = (await fetchStatus(b.controlPath!)) as ReturnType<TpoGateway['status']>;
      assert.equal(st.name, 'b');
      assert.equal(st.counters.refusedNotAllowed, 1);

      const first = a.close();
      assert.equal(a.close(), first, 'a second close() returns the first one');
      assert.ok(a.closed);
      await first;
      await b.close();
      await b.close();
      assert.equal(closed, 1, "'close' is emitted once");
      // Nothing of A listens any more: its client listeners, its peer port.
      await assert.rejects(transfer(listen, Buffer.from('x')), /ECONNREFUSED/);
      const rebind = net.createServer();
      await new Promise<void>((resolve, reject) => rebind.once('error', reject).listen(denied, '127.0.0.1', resolve));
      rebind.close();
      assert.equal(existsSync(join(dir, 'b.sock')), false, 'the control socket is removed');
      assert.deepEqual(handlerCounts(), before, 'closing leaves no process handler either');
    } finally {
      await a.close();
      await b.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'a gateway with the wrong key is a handshakefailure (authentication), coalesced per source; an unknown key id is one too',
  { timeout: 60_000 },
  async () => {
    const [portB, portC, portD] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
    const b = await TpoGateway.start({
      config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', key: randomBytes(32).toString('hex'), keyId: 1 }] }),
      control: false,
    });
    const failures: TpoHandshakeFailure[] = [];
    b.on('handshakefailure', (f) => failures.push(f));
    const c = await TpoGateway.start({
      config: parseTpoConfig({
        name: 'c',
        listen: `127.0.0.1:${portC}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: randomBytes(32).toString('hex'), keyId: 1 }],
      }),
      control: false,
    });
    // D uses a key id no peer of B has: the demux drops it before any link sees it.
    const d = await TpoGateway.start({
      config: parseTpoConfig({
        name: 'd',
        listen: `127.0.0.1:${portD}`,
        peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key: randomBytes(32).toString('hex'), keyId: 2 }],
      }),
      control: false,
    });
    try {
      const t0 = performance.now();
      const fromC = () => failures.filter((f) => f.from === `127.0.0.1:${portC}`);
      while ((fromC().length < 2 || failures.length === fromC().length) && performance.now() - t0 < 20_000) await sleep(50);
      const { message: unknownMessage, ...unknown } = failures.find((f) => f.from === `127.0.0.1:${portD}`) ?? { message: '' };
      assert.deepEqual(unknown, { from: `127.0.0.1:${portD}`, reason: 'unknownKey', count: 1 }, 'no peer has key id 2');
      assert.match(unknownMessage, /uses a key id no peer here has: the peers' keyId settings differ/);
      await d.close();
      failures.splice(0, failures.length, ...fromC());
      assert.ok(failures.length >= 2, `two events within 20 s (got ${failures.length})`);
      const { message, ...first } = failures[0]!;
      assert.deepEqual(first, { peer: 'a', from: `127.0.0.1:${portC}`, reason: 'authentication', count: 1 });
      assert.equal(message, `handshake from 127.0.0.1:${portC} for peer a failed authentication: the peers' keys differ (or the datagram was forged)`);
      // C retries every 250 ms at first: the second event (a second later) stands for the ones in between.
      assert.equal(failures[1]!.reason, 'authentication');
      assert.ok(failures[1]!.count > 1, `the second event counts several (${failures[1]!.count})`);
      const dropped = b.status().peers[0]!.link.droppedHandshake;
      assert.ok(dropped >= failures.reduce((n, f) => n + f.count, 0), 'the counter counts every one');
      assert.equal(b.status().peers[0]!.up, false);
    } finally {
      await d.close();
      await c.close();
      await b.close();
    }
  },
);

test('a start that fails (the control socket path is a file) closes what it started', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tpo-facade-'));
  const [port, listen] = [await freeUdpPort(), await freeTcpPort()];
  const before = handlerCounts();
  try {
    writeFileSync(join(dir, 'not-a-socket'), 'x');
    await assert.rejects(
      TpoGateway.start({
        config: parseTpoConfig({
          name: 'a',
          listen: `127.0.0.1:${port}`,
          peers: [{ name: 'b', address: '127.0.0.1:9', key: randomBytes(32).toString('hex') }],
          table: [{ protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
        }),
        control: { path: join(dir, 'not-a-socket') },
      }),
      (err: unknown) => err instanceof ControlSocketError && /a regular file/.test(err.message),
    );
    // The listener and the peer port are free again.
    await assert.rejects(transfer(listen, Buffer.from('x')), /ECONNREFUSED/);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => sock.once('error', reject).bind(port, '127.0.0.1', resolve));
    sock.close();
    assert.deepEqual(handlerCounts(), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
