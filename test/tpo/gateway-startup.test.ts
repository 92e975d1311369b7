/**
 * Connections that arrive while a gateway is starting, or while its peer
 * session is not up (issue #16, item 4). Every accepted connection is
 * carried byte-exact or reset — never left waiting in a socket nobody
 * reads — and a gateway stops on SIGTERM whatever its flows are doing.
 * The storms connect as soon as the listener appears, with the real CLI
 * (`sluice tpo`) on loopback; the bounds the code states are
 * limits.openTimeoutMs (an unanswered open is reset) and the CLI's
 * SHUTDOWN_DEADLINE_MS. The waits below are far longer than those: they
 * tell "ends" from "never ends", not fast from slow.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { runCli, startCli } from '../../harness/process/cli.js';
import { parseTpoConfig } from '../../src/tpo/config/config.js';
import { Gateway } from '../../src/tpo/gateway/gateway.js';
import { ExplicitInterception } from '../../src/tpo/intercept/explicit.js';
import { fetchStatus } from '../../src/tpo/control-socket.js';
import { freeTcpPort, freeUdpPort, hashServer, sha } from './gateway-helpers.js';

type Outcome = 'refused' | 'ok' | 'reset' | 'corrupt' | 'hang';

/**
 * One client: connect, send `data`, half-close, read to FIN. 'refused': no
 * listener yet; 'hang': neither an answer nor a reset within `hangMs`.
 */
function client(host: string, port: number, data: Buffer, hangMs: number, connected?: () => void): Promise<Outcome> {
  return attempt(host, port, data, hangMs, connected).outcome;
}

/** As client(), also telling when the connect itself succeeded (true) or was refused (false). */
function attempt(host: string, port: number, data: Buffer, hangMs: number, connected?: () => void): { connected: Promise<boolean>; outcome: Promise<Outcome> } {
  let onConnected!: (v: boolean) => void;
  const isUp = new Promise<boolean>((r) => (onConnected = r));
  const outcome = new Promise<Outcome>((resolve) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let isConnected = false;
    const done = (o: Outcome) => {
      clearTimeout(timer);
      s.destroy();
      onConnected(isConnected);
      resolve(o);
    };
    const timer = setTimeout(() => done('hang'), hangMs);
    s.on('connect', () => {
      isConnected = true;
      onConnected(true);
      connected?.();
      s.end(data);
    });
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => done(Buffer.concat(chunks).toString() === sha(data) ? 'ok' : 'corrupt'));
    s.on('error', (e: NodeJS.ErrnoException) =>
      done(!isConnected && e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : 'corrupt'),
    );
    s.on('close', () => done(isConnected ? 'reset' : 'refused'));
  });
  return { connected: isUp, outcome };
}

/**
 * Connects to `port` until the listener answers (bounded: `appearMs`),
 * then opens `count` more connections, one every 2 ms, so they span the
 * gateway's start and its peer session's coming up. Returns every
 * connected client's outcome.
 */
async function storm(
  host: string,
  port: number,
  count: number,
  hangMs: number,
  appearMs = 60_000,
): Promise<{ all: Promise<Outcome>[]; connected: () => number }> {
  let connectedCount = 0;
  const onConnect = () => connectedCount++;
  const pending: Promise<Outcome>[] = [];
  const t0 = performance.now();
  for (;;) {
    const first = attempt(host, port, randomBytes(1000), hangMs, onConnect);
    // A refused attempt is tried again; a connected one is kept and the storm starts.
    if (await first.connected) {
      pending.push(first.outcome);
      break;
    }
    if (performance.now() - t0 > appearMs) throw new Error(`no listener on ${port} within ${appearMs} ms`);
    await sleep(1);
  }
  for (let i = 0; i < count; i++) {
    pending.push(client(host, port, randomBytes(1000 + i * 997), hangMs, onConnect));
    await sleep(2);
  }
  return { all: pending, connected: () => connectedCount };
}

function exitWithin(child: ChildProcessWithoutNullStreams, ms: number): Promise<number | string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => resolve('still running'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? String(signal));
    });
  });
}

/**
 * A loopback address of its own for the listener: the storm knocks before
 * the gateway listens, and on a shared host another process may take a
 * port that was free a moment ago on 127.0.0.1.
 */
function ownLoopback(): string {
  const b = randomBytes(3);
  return `127.${(b[0]! % 250) + 3}.${b[1]}.${(b[2]! % 250) + 2}`;
}

function gatewayConfigs(
  dir: string,
  o: { portA: number; portB: number; peerOfA: number; listenHost?: string; listen: number; target: number; openTimeoutMs: number },
) {
  const key = randomBytes(32).toString('hex');
  const a = join(dir, 'a.json');
  const b = join(dir, 'b.json');
  writeFileSync(
    a,
    JSON.stringify({
      name: 'sa',
      listen: `127.0.0.1:${o.portA}`,
      peers: [{ name: 'b', address: `127.0.0.1:${o.peerOfA}`, key, keyId: 1 }],
      table: [{ protocol: 'tcp', listen: `${o.listenHost ?? '127.0.0.1'}:${o.listen}`, target: `127.0.0.1:${o.target}` }],
      limits: { openTimeoutMs: o.openTimeoutMs },
      control: join(dir, 'a.sock'),
    }),
  );
  writeFileSync(
    b,
    JSON.stringify({
      name: 'sb',
      listen: `127.0.0.1:${o.portB}`,
      peers: [{ name: 'a', key, keyId: 1 }],
      deliver: { allow: ['127.0.0.1/32'] },
      control: join(dir, 'b.sock'),
    }),
  );
  return { a, b };
}

test(
  'connections made as soon as the listener appears are carried byte-exact or reset, never left hanging; SIGTERM always ends the gateway',
  { timeout: 300_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
    const server = await hashServer();
    const listenHost = ownLoopback();
    const listen = await freeTcpPort();
    const portB = await freeUdpPort();
    const cfg = gatewayConfigs(dir, { portA: await freeUdpPort(), portB, peerOfA: portB, listenHost, listen, target: server.port, openTimeoutMs: 3_000 });
    const b = startCli(['tpo', '--config', cfg.b]);
    let a: ChildProcessWithoutNullStreams | undefined;
    let aErr = '';
    try {
      await new Promise<void>((resolve, reject) => {
        let err = '';
        b.stderr.on('data', (d) => {
          err += d;
          if (/sb up/.test(err)) resolve();
        });
        b.once('exit', () => reject(new Error(`gateway b exited: ${err}`)));
      });
      const counts: Record<Outcome, number> = { refused: 0, ok: 0, reset: 0, corrupt: 0, hang: 0 };
      for (let round = 0; round < 3; round++) {
        a = startCli(['tpo', '--config', cfg.a]);
        aErr = '';
        a.stderr.on('data', (d) => (aErr += d));
        // openTimeoutMs (3 s) bounds a connection that is not carried; 30 s tells a bound from a hang.
        const s = await storm(listenHost, listen, 30, 30_000);
        const outcomes = await Promise.all(s.all);
        for (const o of outcomes) counts[o]++;
        if (outcomes.includes('hang') || outcomes.includes('corrupt')) {
          // What the gateways held at that moment, for whoever reads the failure.
          for (const side of ['a', 'b'])
            console.log(`# ${side}: ${JSON.stringify(await fetchStatus(join(dir, `${side}.sock`)).catch((e: Error) => e.message))}`);
        }
        a.kill('SIGTERM');
        const exit = await exitWithin(a, 30_000);
        assert.equal(exit, 0, `round ${round}: gateway a after SIGTERM: ${exit}\n${aErr.slice(-2000)}`);
      }
      console.log(`# outcomes: ${JSON.stringify(counts)}`);
      assert.equal(counts.hang, 0, `no connection is left hanging: ${JSON.stringify(counts)}`);
      assert.equal(counts.refused, 0, `once listening, the listener stays: ${JSON.stringify(counts)}`);
      assert.equal(counts.corrupt, 0, `no connection is corrupted: ${JSON.stringify(counts)}`);
      assert.ok(counts.ok > 0, `connections are carried: ${JSON.stringify(counts)}`);
    } finally {
      if (a && a.exitCode === null) a.kill('SIGKILL');
      b.kill('SIGTERM');
      await exitWithin(b, 10_000);
      if (b.exitCode === null) b.kill('SIGKILL');
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('SIGTERM ends a gateway whose connections wait for a peer that never answers; its clients are reset', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
  const listenHost = ownLoopback();
  const listen = await freeTcpPort();
  // Nothing listens on the peer's port: the session never comes up, and the open timeout (60 s) is far off.
  const cfg = gatewayConfigs(dir, { portA: await freeUdpPort(), portB: 1, peerOfA: await freeUdpPort(), listenHost, listen, target: 9, openTimeoutMs: 60_000 });
  const a = startCli(['tpo', '--config', cfg.a]);
  let aErr = '';
  a.stderr.on('data', (d) => (aErr += d));
  try {
    const s = await storm(listenHost, listen, 10, 90_000);
    // Every client is in (connected, unanswered), then the stop.
    const t0 = performance.now();
    while (s.connected() < 11 && performance.now() - t0 < 30_000) await sleep(20);
    a.kill('SIGTERM');
    const exit = await exitWithin(a, 30_000);
    assert.equal(exit, 0, `gateway after SIGTERM: ${exit}\n${aErr.slice(-2000)}`);
    const outcomes = await Promise.all(s.all);
    assert.deepEqual([...new Set(outcomes)], ['reset'], `every waiting client is reset: ${outcomes.join(' ')}`);
  } finally {
    if (a.exitCode === null) a.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an open that no answer reaches within limits.openTimeoutMs is reset and counted', { timeout: 30_000 }, async () => {
  const listen = await freeTcpPort();
  const config = parseTpoConfig({
    name: 'a',
    listen: `127.0.0.1:${await freeUdpPort()}`,
    // A peer that is not there: the session never comes up.
    peers: [{ name: 'b', address: `127.0.0.1:${await freeUdpPort()}`, key: randomBytes(32).toString('hex'), keyId: 1 }],
    table: [{ protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
    limits: { openTimeoutMs: 1000 },
  });
  const ic = new ExplicitInterception(config.table);
  const gw = await Gateway.start(config, { interception: ic, io: 'portable' });
  await ic.listen();
  try {
    const outcome = await client('127.0.0.1', listen, Buffer.from('hello'), 20_000);
    assert.equal(outcome, 'reset');
    assert.equal(gw.status().counters.openTimedOut, 1);
    assert.equal(gw.status().flows.length, 0);
  } finally {
    await gw.close();
    await ic.close();
  }
});

test('an interception with no consumer resets its connections instead of holding them', { timeout: 30_000 }, async () => {
  const listen = await freeTcpPort();
  const config = parseTpoConfig({
    name: 'a',
    listen: '127.0.0.1:0',
    peers: [{ name: 'b', address: '127.0.0.1:9', key: randomBytes(32).toString('hex') }],
    table: [{ protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: '127.0.0.1:9' }],
  });
  const ic = await ExplicitInterception.start(config.table);
  try {
    assert.equal(await client('127.0.0.1', listen, Buffer.from('x'), 20_000), 'reset');
    assert.equal(ic.stats.refused, 1);
  } finally {
    // Closes at once: no connection is left for the server to wait for.
    await ic.close();
  }
});

test('sluice tpo whose listener address is taken says so plainly and exits 1 (no stack trace, nothing left running)', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const taken = (busy.address() as net.AddressInfo).port;
  try {
    const cfg = gatewayConfigs(dir, { portA: await freeUdpPort(), portB: 1, peerOfA: await freeUdpPort(), listen: taken, target: 9, openTimeoutMs: 30_000 });
    const r = await runCli(['tpo', '--config', cfg.a], 30_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`listen \\(tcp\\) failed: EADDRINUSE \\(table entry tcp#0 on 127\\.0\\.0\\.1:${taken}\\)`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    busy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
