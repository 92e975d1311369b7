/**
 * RTCP on port+1 (policy rtcp: 'port+1') and subscriber liveness
 * (subscriberTimeoutMs), on the portable tier: sender reports from the
 * allowed source reach every subscriber's port+1, receiver reports are read
 * and never forwarded, strangers are dropped and counted, and a subscriber
 * that stops reporting is sent nothing until it reports again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDataPlane } from '../../src/dataplane/tiers.js';
import { PolicyTable } from '../../src/control/policy-table.js';
import { FlowTaps } from '../../src/control/flow-taps.js';
import { PolicyValidationError } from '../../src/errors.js';

interface Sock {
  readonly socket: dgram.Socket;
  readonly port: number;
  readonly got: Buffer[];
}

async function bind(address: string, port = 0): Promise<Sock> {
  const socket = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve());
  });
  return { socket, port: socket.address().port, got };
}

/** Two sockets on consecutive ports (RTP, RTCP), as an RTP receiver has. */
async function pair(address: string): Promise<[Sock, Sock]> {
  for (let i = 0; i < 50; i++) {
    const rtp = await bind(address);
    if (rtp.port >= 65_535) {
      rtp.socket.close();
      continue;
    }
    try {
      return [rtp, await bind(address, rtp.port + 1)];
    } catch {
      rtp.socket.close();
    }
  }
  throw new Error('no free port pair');
}

/** A free port P with P+1 free too (bound and released: good enough on loopback in a test). */
async function freePortPair(): Promise<number> {
  const [a, b] = await pair('127.0.0.1');
  a.socket.close();
  b.socket.close();
  return a.port;
}

const sr = (n: number) => Buffer.from([0x80, 200, 0, 6, 0, 0, 0, n, ...new Array<number>(20).fill(0)]);
const rr = Buffer.from([0x81, 201, 0, 7, 0, 0, 0, 9, ...new Array<number>(24).fill(0)]);
const rtp = (seq: number) => Buffer.from([0x80, 33, seq >> 8, seq & 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x47]);

async function until(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('rtcp port+1 and subscriberTimeoutMs are refused where they cannot work, naming the field', async () => {
  const base = { type: 'replicate', allow: 'any', to: ['udp://127.0.0.1:5000'], monitor: false } as const;
  const plane = await createDataPlane('portable', {});
  const table = new PolicyTable(
    plane,
    new FlowTaps(
      () => assert.fail('no monitor expected'),
      () => undefined,
    ),
  );
  const bad = async (policy: object, path: string) => {
    const e = await table.add(policy as never).then(
      () => assert.fail(`accepted ${JSON.stringify(policy)}`),
      (x: unknown) => x,
    );
    assert.ok(e instanceof PolicyValidationError, String(e));
    assert.ok(
      e.issues.some((i) => i.path === path),
      `${path} in ${JSON.stringify(e.issues)}`,
    );
  };
  try {
    await bad({ ...base, listen: 'udp://127.0.0.1:4000', payload: 'mpegts', rtcp: 'port+1' }, 'rtcp');
    await bad({ ...base, listen: 'udp://127.0.0.1:0', payload: 'rtp', rtcp: 'port+1' }, 'rtcp');
    await bad({ ...base, listen: 'udp://127.0.0.1:4000', payload: 'rtp', rtcp: 'port+1', to: ['udp://127.0.0.1:65535'] }, 'to[0]');
    await bad({ ...base, listen: 'udp://127.0.0.1:4000', payload: 'rtp', subscriberTimeoutMs: 5000 }, 'subscriberTimeoutMs');
    assert.equal(table.entries().length, 0);
  } finally {
    await plane.close();
  }
});

test('RTCP is relayed on port+1, reports are read not forwarded, and a silent subscriber is fed again once it reports', async () => {
  const plane = await createDataPlane('portable', {});
  const silence: [string, boolean][] = [];
  const table = new PolicyTable(
    plane,
    new FlowTaps(
      () => assert.fail('no monitor expected'),
      () => undefined,
    ),
    (_id, to, silent) => silence.push([to, silent]),
  );
  const source = await bind('127.0.0.2');
  const stranger = await bind('127.0.0.3');
  const [aRtp, aRtcp] = await pair('127.0.0.1');
  const [bRtp, bRtcp] = await pair('127.0.0.1');
  const socks = [source, stranger, aRtp, aRtcp, bRtp, bRtcp];
  const aUrl = `udp://127.0.0.1:${aRtp.port}`;
  const bUrl = `udp://127.0.0.1:${bRtp.port}`;
  let reporting: NodeJS.Timeout | undefined;
  try {
    const port = await freePortPair();
    const entry = await table.add({
      type: 'replicate',
      listen: `udp://127.0.0.1:${port}`,
      allow: '127.0.0.2',
      to: [aUrl, bUrl],
      payload: 'rtp',
      monitor: false,
      rtcp: 'port+1',
      subscriberTimeoutMs: 1000,
    });
    const send = (s: Sock, d: Buffer, p: number) => new Promise<void>((r) => s.socket.send(d, p, '127.0.0.1', () => r()));

    await send(source, sr(1), port + 1);
    await until(() => aRtcp.got.length === 1 && bRtcp.got.length === 1, 'the sender report at both subscribers');
    assert.deepEqual(aRtcp.got[0], sr(1));
    await send(stranger, sr(2), port + 1);
    await send(source, Buffer.from('not rtcp'), port + 1);
    await send(aRtcp, rr, port + 1);
    await until(() => table.stats(entry.id)?.rtcp?.fromSubscribers === 1, 'the report to be read');
    assert.deepEqual(table.stats(entry.id)?.rtcp, { fromSources: 1, copies: 2, fromSubscribers: 1, dropped: 2 });
    assert.equal(source.got.length, 0, 'receiver reports are never forwarded to the source');

    // A reports every 200 ms; B never does.
    reporting = setInterval(() => aRtcp.socket.send(rr, port + 1, '127.0.0.1'), 200);
    await until(() => silence.some(([to, s]) => to === bUrl && s), 'B to be found silent');
    assert.ok(!silence.some(([to]) => to === aUrl), 'A reports: never silent');
    await until(() => table.stats(entry.id)!.destinations.some((d) => d.to === bUrl && d.silentSince !== undefined), 'B listed as silent');
    const bBefore = bRtp.got.length;
    for (let i = 0; i < 10; i++) await send(source, rtp(i), port);
    await until(() => aRtp.got.length >= 10, 'A to get the RTP');
    await sleep(200);
    assert.equal(bRtp.got.length, bBefore, 'a silent subscriber is sent nothing');

    await send(bRtcp, rr, port + 1);
    await until(() => silence.some(([to, s]) => to === bUrl && !s), 'B to be fed again');
    await until(() => table.stats(entry.id)!.destinations.some((d) => d.to === bUrl && d.silentSince === undefined), 'B live in the plan');
    await send(source, rtp(99), port);
    await until(() => bRtp.got.length === bBefore + 1, 'B to get RTP again');
  } finally {
    clearInterval(reporting);
    for (const s of socks) s.socket.close();
    await table.clear();
    await plane.close();
  }
});
