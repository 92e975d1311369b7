/**
 * tcp-redirect under hostile clients (issue 22, "Bad input"), every path:
 * floods of connections that are reset or closed at once (before or while
 * the relay connects upstream), and many clients that never read while the
 * upstream writes. Bounded in count and time; loopback only. Asserts that
 * the relay keeps no pair behind, holds no more than the socket buffers
 * and pipes per pair, and still relays byte-exact afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { collect, connectTo, randomBytes, sha, sleep, startRelay, startUpstream, until, type Mode } from './tcp-harness.js';
import { sockmapUnavailable } from '../../src/dataplane/tcp/sockmap-program.js';

const noSockmap = process.getuid?.() === 0 ? sockmapUnavailable() : 'needs root (eBPF programs and a cgroup attachment)';
if (noSockmap) console.log(`# tcp bad input: the sockmap path is left out: ${noSockmap}`);
const MODES: Mode[] = noSockmap ? ['userspace', 'splice'] : ['userspace', 'splice', 'sockmap'];
const FLOOD = 300;
const BATCH = 50;

for (const mode of MODES) {
  test(`${mode}: a flood of connections reset or closed at once leaves no pair behind; the relay still works`, async () => {
    const upstream = await startUpstream((s) => s.pipe(s));
    const relay = await startRelay(mode, upstream.port, { maxConnections: 64 });
    const port = Number(new URL(relay.listen).port);
    try {
      for (let sent = 0; sent < FLOOD; sent += BATCH) {
        await Promise.all(
          Array.from({ length: BATCH }, async (_, i) => {
            const s = connect({ host: '127.0.0.1', port });
            s.on('error', () => {});
            await once(s, 'connect').catch(() => undefined);
            // Half of them reset (RST), half close (FIN) without sending a byte.
            if ((sent + i) % 2) s.resetAndDestroy();
            else s.end();
          }),
        );
      }
      assert.ok(await until(() => relay.stats().active === 0, 20_000), `active stays at ${relay.stats().active}`);
      const st = relay.stats();
      assert.equal(st.accepted + st.refused.overLimit + st.upstreamFailed + st.refused.notAllowed <= FLOOD, true);
      assert.equal(st.accepted, st.closed + st.resets + st.idleClosed, JSON.stringify(st));
      assert.ok(await until(() => upstream.sockets.every((s) => s.destroyed), 10_000), 'upstream connections left open');
      const c = await connectTo(relay);
      const data = randomBytes(1_000_000, 3);
      const got = collect(c);
      c.end(data);
      assert.equal(sha(await got), sha(data));
    } finally {
      await relay.close();
      await upstream.close();
    }
  });

  test(`${mode}: clients that never read: back-pressure reaches every upstream (nothing buffers without bound), then every byte arrives`, async () => {
    const PAIRS = 8;
    const EACH = 64 * 1024 * 1024;
    const payload = randomBytes(EACH, 8);
    const writers: Socket[] = [];
    const upstream = await startUpstream((s) => {
      // Each upstream connection offers EACH bytes as fast as the relay takes them.
      writers.push(s);
      let off = 0;
      const pump = () => {
        while (off < EACH) {
          const more = s.write(payload.subarray(off, off + 262_144));
          off += 262_144;
          if (!more) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    const relay = await startRelay(mode, upstream.port);
    const clients: Socket[] = [];
    try {
      for (let i = 0; i < PAIRS; i++) {
        const c = await connectTo(relay);
        c.pause();
        clients.push(c);
      }
      await until(() => writers.length === PAIRS);
      // Wait until nothing moves any more (every pair stalled on its client), bounded.
      const flushed = () => writers.map((w) => w.bytesWritten - w.writableLength);
      let last = '';
      for (let i = 0; i < 100 && JSON.stringify(flushed()) !== last; i++) {
        last = JSON.stringify(flushed());
        await sleep(200);
      }
      // Had the relay kept reading into memory, each upstream would have flushed all it offered.
      const stalled = flushed();
      assert.ok(
        stalled.every((n) => n < EACH),
        `upstream flushed ${stalled.map((n) => Math.round(n / 1048576)).join(', ')} MiB of ${EACH / 1048576}`,
      );
      const got = clients.map((c) => collect(c));
      for (const c of clients) c.resume();
      for (const g of got) assert.equal(sha(await g), sha(payload));
      for (const c of clients) c.end();
      assert.ok(await until(() => relay.stats().active === 0, 60_000), `active stays at ${relay.stats().active}`);
      assert.equal(relay.stats().bytesToClient, PAIRS * EACH);
    } finally {
      for (const c of clients) c.destroy();
      await relay.close();
      await upstream.close();
    }
  });
}
