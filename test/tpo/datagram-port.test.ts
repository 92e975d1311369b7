/**
 * Datagram ports (src/tpo/io/datagram-port.ts), both kinds, on 127.0.0.1:
 * many datagrams of mixed sizes arrive byte-exact and in order (each kind
 * to itself and across kinds), runs of equal sizes leave as GSO messages
 * and arrive as separate datagrams (GRO buffers split at a batched
 * receiver, kernel segmentation at a portable one), a process whose
 * batched ports are closed exits (no worker left behind), and a data
 * mover pair over batched ports moves data byte-exact through the link
 * emulator.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { setImmediate as nextTask } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { PortableDatagramPort } from '../../src/tpo/io/datagram-port.js';
import { openDatagramPort, type DatagramPort } from '../../src/tpo/io/datagram-port.js';
import { probeBatchedIo } from '../../src/sys/probe.js';
import { DataMover } from '../../src/tpo/protocol/data-mover.js';
import { deriveSessionKeys } from '../../src/tpo/protocol/datagram-crypto.js';
import { LinkEmulator } from '../../harness/wan/udp-emulator.js';

const probe = probeBatchedIo();
const skipBatched = probe.available ? undefined : `batched I/O unavailable: ${probe.reason}`;
const LOCAL = { address: '127.0.0.1', port: 0 };
const BUFFER = 8 << 20;

const open = (io: 'batched' | 'portable') => openDatagramPort({ family: 4, bind: LOCAL, io, socketBufferBytes: BUFFER });

/** Datagram i: its index in the first 4 bytes, then bytes derived from it. */
function datagram(i: number, size: number): Uint8Array {
  const d = new Uint8Array(size);
  if (size >= 4) new DataView(d.buffer).setUint32(0, i);
  for (let k = 4; k < size; k++) d[k] = (i * 31 + k * 7) & 0xff;
  return d;
}

/** Sizes: runs of equal sizes (GSO material, some ending shorter) mixed with odd single sizes, 0 and near-maximal ones. */
function mixedSizes(n: number): number[] {
  const sizes: number[] = [];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  while (sizes.length < n) {
    const pick = rnd();
    if (pick < 0.5) {
      const s = 4 + Math.floor(rnd() * 1468);
      const run = 1 + Math.floor(rnd() * 80);
      for (let k = 0; k < run; k++) sizes.push(s);
      if (rnd() < 0.5) sizes.push(4 + Math.floor(rnd() * s));
    } else if (pick < 0.97) sizes.push(4 + Math.floor(rnd() * 9000));
    else sizes.push(rnd() < 0.5 ? 60_000 + Math.floor(rnd() * 5507) : 0);
  }
  return sizes.slice(0, n);
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = performance.now();
  // Bounded: at most ms / 5 turns.
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Sends `sizes` from `tx` to `rx` in tasks of `perTask` datagrams; checks every datagram byte-exact and in order. */
async function exchange(tx: DatagramPort, rx: DatagramPort, sizes: number[], perTask: number): Promise<void> {
  const got: { msg: Uint8Array; port: number; address: string }[] = [];
  const onMessage = (msg: Buffer, from: { address: string; port: number }) => got.push({ msg: Uint8Array.from(msg), port: from.port, address: from.address });
  rx.on('message', onMessage);
  try {
    const to = { address: '127.0.0.1', port: rx.address().port };
    for (let i = 0; i < sizes.length; i++) {
      tx.send(datagram(i, sizes[i]!), to);
      // Give the receiver time between tasks: loopback drops silently when its buffer is full.
      if (i % perTask === perTask - 1) {
        await nextTask();
        await until(() => got.length >= i + 1 - 4 * perTask, 5000, 'the receiver to keep up');
      }
    }
    await until(() => got.length >= sizes.length, 10_000, `${sizes.length} datagrams (have ${got.length})`);
    assert.equal(got.length, sizes.length);
    for (let i = 0; i < sizes.length; i++) {
      const g = got[i]!;
      assert.equal(g.msg.length, sizes[i], `datagram ${i} size`);
      assert.deepEqual(g.msg, datagram(i, sizes[i]!), `datagram ${i} bytes`);
      assert.equal(g.port, tx.address().port);
      assert.equal(g.address, '127.0.0.1');
    }
  } finally {
    rx.off('message', onMessage);
  }
}

describe('datagram ports', () => {
  for (const io of ['portable', 'batched'] as const) {
    test(
      `${io}: 4,000 datagrams of mixed sizes arrive byte-exact and in order`,
      { skip: io === 'batched' ? skipBatched : undefined, timeout: 30_000 },
      async () => {
        const a = await open(io);
        const b = await open(io);
        try {
          assert.equal(a.kind, io);
          await exchange(a, b, mixedSizes(4000), 100);
          await exchange(b, a, mixedSizes(500), 50);
          assert.equal(a.stats.dropped.queueFull + a.stats.dropped.sendError, 0);
          if (io === 'batched')
            assert.ok(a.stats.sendCalls < a.stats.datagramsSent / 5, `batched sends (${a.stats.sendCalls} calls for ${a.stats.datagramsSent})`);
        } finally {
          await a.close();
          await b.close();
        }
      },
    );
  }

  test(
    'batched to portable and back: mixed sizes byte-exact (GSO runs cut by the kernel for a plain socket)',
    { skip: skipBatched, timeout: 30_000 },
    async () => {
      const a = await open('batched');
      const b = await open('portable');
      try {
        await exchange(a, b, mixedSizes(2000), 100);
        await exchange(b, a, mixedSizes(1000), 100);
        assert.ok(a.stats.gsoMessages > 0);
      } finally {
        await a.close();
        await b.close();
      }
    },
  );

  test(
    'a run of equal sizes leaves as GSO messages and arrives as separate datagrams (GRO buffers split)',
    { skip: skipBatched ?? (probe.gso ? undefined : 'no UDP GSO here'), timeout: 20_000 },
    async () => {
      const a = await open('batched');
      const b = await open('batched');
      try {
        // 300 of 1000 bytes and a shorter last one, all in one task: one flush.
        const sizes = [...Array.from({ length: 300 }, () => 1000), 333];
        const got: Uint8Array[] = [];
        b.on('message', (m: Buffer) => got.push(Uint8Array.from(m)));
        const to = { address: '127.0.0.1', port: b.address().port };
        sizes.forEach((s, i) => a.send(datagram(i, s), to));
        a.flush();
        assert.equal(a.stats.sendCalls, 1, 'one sendmmsg');
        const perMessage = Math.min(probe.gsoMaxSegments, 65);
        assert.equal(a.stats.gsoMessages, Math.ceil(sizes.length / perMessage));
        assert.equal(a.stats.gsoSegments, sizes.length);
        await until(() => got.length >= sizes.length, 5000, 'every datagram');
        got.forEach((m, i) => assert.deepEqual(m, datagram(i, sizes[i]!), `datagram ${i}`));
        // Loopback hands a GSO message to a GRO socket whole: the port split it.
        if (probe.gro) assert.ok(b.stats.groBuffers > 0, 'GRO buffers were received and split');
      } finally {
        await a.close();
        await b.close();
      }
    },
  );

  test('sends after close are dropped and counted; close is idempotent; auto picks batched here', { timeout: 20_000 }, async () => {
    const p = await openDatagramPort({ bind: LOCAL });
    assert.equal(p.kind, probe.available ? 'batched' : 'portable');
    assert.equal(p.fallbackReason, probe.available ? undefined : probe.reason);
    await p.close();
    p.send(new Uint8Array(10), { address: '127.0.0.1', port: 9 });
    assert.equal(p.stats.dropped.closed, 1);
    await p.close();
  });

  test('binding an address in use rejects with a SyscallError naming bind and EADDRINUSE', { skip: skipBatched, timeout: 20_000 }, async () => {
    const a = await open('batched');
    try {
      await assert.rejects(
        openDatagramPort({ bind: { address: '127.0.0.1', port: a.address().port }, io: 'batched' }),
        (e: Error & { op?: string; errno?: string }) => e.name === 'SyscallError' && e.op === 'bind' && e.errno === 'EADDRINUSE',
      );
    } finally {
      await a.close();
    }
  });

  test('a process whose batched ports are closed exits: no receive thread left behind', { skip: skipBatched, timeout: 30_000 }, () => {
    const fixture = fileURLToPath(new URL('../fixtures/datagram-port-exit.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', fixture], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.error, undefined, `the child exited by itself (${r.error?.message})`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /received 200/);
  });

  test('a data mover pair over batched ports: byte-exact through the link emulator with 5 % loss', { skip: skipBatched, timeout: 60_000 }, async () => {
    const pa = await open('batched');
    const pb = await open('batched');
    const emu = await LinkEmulator.create({
      seed: 11,
      peerA: { address: '127.0.0.1', port: pa.address().port },
      peerB: { address: '127.0.0.1', port: pb.address().port },
    });
    emu.set('both', { delayMs: 10, loss: 0.05, reorder: 0.02 });
    const psk = randomBytes(32);
    const ni = randomBytes(16);
    const nr = randomBytes(16);
    const a = new DataMover({ localId: 1, peerId: 2, keys: deriveSessionKeys(psk, ni, nr, true), transmit: (d) => pa.send(d, emu.a) });
    const b = new DataMover({ localId: 2, peerId: 1, keys: deriveSessionKeys(psk, ni, nr, false), transmit: (d) => pb.send(d, emu.b) });
    pa.on('message', (m) => a.receive(m));
    pb.on('message', (m) => b.receive(m));
    try {
      const buffers = Array.from({ length: 150 }, (_, i) => randomBytes(1000 + ((i * 977) % 20_000)));
      const sent = createHash('sha256');
      const got = createHash('sha256');
      let n = 0;
      b.on('buffer', (x: Uint8Array) => {
        got.update(x);
        n++;
      });
      for (const x of buffers) {
        sent.update(x);
        if (!a.send(x)) await new Promise((r) => a.once('drain', r));
      }
      await until(() => n === buffers.length, 45_000, 'every buffer');
      assert.equal(got.digest('hex'), sent.digest('hex'));
      assert.ok(a.stats.retransmissions > 0, 'losses were repaired');
      assert.ok(pa.stats.gsoMessages > 0 || !probe.gso, 'data left in GSO messages');
      assert.equal(pa.stats.dropped.queueFull + pa.stats.dropped.sendError, 0);
    } finally {
      a.close();
      b.close();
      await emu.close();
      await pa.close();
      await pb.close();
    }
  });
});

test(
  'portable port: socket buffers beyond net.core.rmem_max where allowed (root), as the batched port',
  { skip: process.getuid?.() === 0 ? undefined : 'needs root (SO_RCVBUFFORCE)', timeout: 10_000 },
  async () => {
    const { readFileSync } = await import('node:fs');
    const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    const port = await openDatagramPort({ bind: { address: '127.0.0.1', port: 0 }, io: 'portable', socketBufferBytes: 4 * rmemMax });
    try {
      assert.equal(port.kind, 'portable');
      // The kernel reports double what it granted: capped, that would be 2 x rmem_max.
      const got = (port as PortableDatagramPort).receiveBufferBytes;
      assert.ok(got >= 8 * rmemMax, `receive buffer ${got} bytes for a request of ${4 * rmemMax} (rmem_max ${rmemMax})`);
    } finally {
      await port.close();
    }
  },
);
