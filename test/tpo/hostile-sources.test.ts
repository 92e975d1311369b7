/**
 * Many source addresses at once (issue 16, item 1): a batched port's
 * receive thread keeps a bounded table of source ids and restarts it when
 * full. The restart must fall between batches, never inside one, or the
 * datagrams earlier in the batch carry ids the application thread no
 * longer knows (it read `undefined` as the source and the port demux
 * threw) or, worse, ids that now name another source. Checked three ways:
 * the id tables driven directly across many restarts, a batched port on
 * loopback fed by 3,000 source ports (every datagram arrives with its
 * true source), and a gateway pair whose initiating side is flooded with
 * handshake-kind datagrams from those ports (it survives, answers none
 * of them and still carries a flow).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventEmitter } from 'node:events';
import { openDatagramPort } from '../../src/tpo/io/datagram-port.js';
import { reportPortError, type DatagramSource } from '../../src/tpo/io/port.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { SourceIdTable, SourceTable, type PortBatch } from '../../src/tpo/io/batched-port-protocol.js';
import { writeSockaddr } from '../../src/sys/sockaddr.js';
import { SOCKADDR_SPACE } from '../../src/sys/constants.js';
import { freeTcpPort, startPair } from './gateway-helpers.js';

const probe = probeBatchedIo();
const skipBatched = probe.available ? undefined : `batched I/O unavailable: ${probe.reason}`;

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** `count` UDP sockets on 127.0.0.1, each on its own ephemeral port. */
async function sockets(count: number): Promise<dgram.Socket[]> {
  const out: dgram.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = dgram.createSocket('udp4');
    s.on('error', () => {});
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    out.push(s);
  }
  return out;
}

async function closeAll(socks: dgram.Socket[]): Promise<void> {
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
}

/** A receive batch with no datagram bytes (what the source-table tests need), with `extra` fields. */
function emptyBatch(extra: Partial<PortBatch>): PortBatch {
  return {
    data: new ArrayBuffer(0),
    pairs: new Int32Array(0),
    groBuffers: 0,
    truncated: 0,
    unknownSources: 0,
    receivedAtEpochMs: performance.timeOrigin + performance.now(),
    ...extra,
  };
}

test('source ids: a restart of the table never invalidates ids already written into the batch being built', () => {
  const ids = new SourceIdTable(64);
  const app = new SourceTable();
  const meta = new Uint8Array(SOCKADDR_SPACE);
  let resets = 0;
  let port = 1;
  // 200 batches of up to 48 datagrams from mostly new sources: the table (64) restarts again and again.
  for (let b = 0; b < 200; b++) {
    const n = 1 + ((b * 37) % 48);
    ids.beginBatch(n);
    const expected: number[] = [];
    const pairs = new Int32Array(2 * n);
    for (let j = 0; j < n; j++) {
      // Every fifth datagram repeats a recent source (ids that must stay valid within the batch).
      const p = j % 5 === 4 ? Math.max(1, port - 3) : port++;
      writeSockaddr(meta, 0, 4, '127.0.0.1', p);
      pairs[2 * j] = 0;
      pairs[2 * j + 1] = ids.idOf(meta, 0);
      expected.push(p);
    }
    const batch = emptyBatch({ pairs });
    ids.finish(batch);
    if (batch.reset) resets++;
    app.apply(batch);
    for (let j = 0; j < n; j++) assert.equal(app.get(pairs[2 * j + 1]!)?.port, expected[j], `batch ${b}, datagram ${j}`);
  }
  assert.ok(resets > 10, `the table restarted (${resets} times)`);
});

test('the application thread drops (and counts) a datagram whose source id it does not know, never hands over undefined', () => {
  const app = new SourceTable();
  app.apply(emptyBatch({ sources: [{ id: 0, address: '127.0.0.1', port: 9, family: 'IPv4' }] }));
  assert.equal(app.get(0)?.port, 9);
  assert.equal(app.get(1), undefined);
  assert.equal(app.get(-1), undefined);
  assert.equal(app.get(1 << 30), undefined);
  app.apply(emptyBatch({ reset: true }));
  assert.equal(app.get(0), undefined, 'a reset forgets every earlier id');
});

test('a batched port fed by 3,000 source ports at once hands every datagram over with its true source', { skip: skipBatched, timeout: 120_000 }, async () => {
  const port = await openDatagramPort({ family: 4, bind: { address: '127.0.0.1', port: 0 }, io: 'batched', socketBufferBytes: 8 << 20 });
  const got: { from: DatagramSource; claimed: number }[] = [];
  port.on('message', (msg: Buffer, from: DatagramSource) => got.push({ from, claimed: msg.readUInt16BE(4) }));
  const to = port.address().port;
  let sent = 0;
  try {
    // Three rounds of 1,000 sockets: 3,000 sources, each sending two handshake-kind datagrams back to back.
    for (let round = 0; round < 3; round++) {
      const socks = await sockets(1000);
      for (const s of socks) {
        const d = Buffer.alloc(24);
        d[0] = 1;
        d[1] = 2 + (sent & 1);
        d.writeUInt16BE(s.address().port, 4);
        s.send(d, to, '127.0.0.1');
        s.send(d, to, '127.0.0.1');
        sent += 2;
      }
      await until(() => got.length + port.stats.receiveDropped.unknownSource >= sent, 20_000, `round ${round}'s datagrams`);
      await closeAll(socks);
    }
    assert.equal(port.stats.receiveDropped.unknownSource, 0, 'no datagram lost its source');
    assert.equal(got.length, sent);
    for (const g of got) {
      assert.equal(g.from.address, '127.0.0.1');
      assert.equal(g.from.port, g.claimed, 'the source handed over is the one that sent the datagram');
    }
  } finally {
    await port.close();
  }
});

test(
  'an initiating gateway flooded with handshake-kind datagrams from 3,000 source ports survives, answers none and still carries a flow',
  { timeout: 120_000 },
  async () => {
    const server = net.createServer((s) => {
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => s.end(h.digest('hex')));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const listen = await freeTcpPort();
    const pair = await startPair({
      table: [{ protocol: 'tcp', listen: `127.0.0.1:${listen}`, target: `127.0.0.1:${(server.address() as net.AddressInfo).port}` }],
    });
    const to = pair.a.address().port;
    let answers = 0;
    try {
      for (let round = 0; round < 3; round++) {
        const socks = await sockets(1000);
        for (const s of socks) s.on('message', () => answers++);
        let i = 0;
        for (const s of socks) {
          // Kinds 2 (initiate) and 3 (respond): short, truncated, or the full size with garbage.
          const size = [8, 12, 60, 1200][i % 4]!;
          const d = randomBytes(size);
          d[0] = 1;
          d[1] = 2 + (i & 1);
          d[2] = 0;
          d[3] = 0;
          s.send(d, to, '127.0.0.1');
          s.send(d, to, '127.0.0.1');
          i++;
        }
        await sleep(200);
        await closeAll(socks);
      }
      assert.equal(answers, 0, 'nothing was answered');
      const up = pair.a.status().peers[0]!;
      assert.ok(up.up, 'the session survived');
      const data = randomBytes(200_000);
      const reply = await new Promise<string>((resolve, reject) => {
        const c = net.connect({ host: '127.0.0.1', port: listen });
        const chunks: Buffer[] = [];
        c.on('data', (d) => chunks.push(d));
        c.on('end', () => resolve(Buffer.concat(chunks).toString()));
        c.on('error', reject);
        c.on('connect', () => c.end(data));
      });
      assert.equal(reply, createHash('sha256').update(data).digest('hex'), 'a flow crossed byte-exact after the flood');
    } finally {
      await pair.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  },
);

for (const io of ['batched', 'portable'] as const) {
  test(
    `${io} port: a 'message' listener that throws loses only that datagram (counted), and a port error with no listener is a warning, not a crash`,
    { skip: io === 'batched' ? skipBatched : undefined, timeout: 30_000 },
    async () => {
      const port = await openDatagramPort({ family: 4, bind: { address: '127.0.0.1', port: 0 }, io });
      const got: number[] = [];
      port.on('message', (msg: Buffer) => {
        if (msg[0] === 0xee) throw new TypeError('a handler bug');
        got.push(msg[0]!);
      });
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      const s = (await sockets(1))[0]!;
      try {
        for (const b of [1, 0xee, 2, 0xee, 3]) s.send(Buffer.from([b]), port.address().port, '127.0.0.1');
        await until(() => got.length === 3, 10_000, 'the good datagrams');
        assert.deepEqual(got, [1, 2, 3]);
        assert.equal(port.stats.receiveDropped.listenerError, 2);
        assert.match(port.stats.lastListenerError ?? '', /a handler bug/);
        // An 'error' event with nobody listening would throw; the port reports it as a warning instead.
        assert.doesNotThrow(() => reportPortError(port as unknown as EventEmitter, new Error('receive thread gone')));
        await until(() => warnings.some((w) => /receive thread gone/.test(w)), 5_000, 'the warning');
        assert.ok(
          warnings.some((w) => /a handler bug/.test(w)),
          'the first handler failure is reported',
        );
      } finally {
        process.off('warning', onWarning);
        await closeAll([s]);
        await port.close();
      }
    },
  );
}
