/**
 * Fast channel change at the DataPlane level, on every tier: a stream of
 * counter-numbered datagrams to a replicate flow with a tap (a socket that
 * numbers the copies it receives, as the monitor tap does) and another
 * subscriber; mid-stream a late subscriber is fed the last 100 datagrams
 * as a burst, then live ones, by FastJoin, and handed to the plane with
 * joinFlow. It must receive exactly cache + live: every number from the
 * burst's first on, once (no gap, no duplicate); the other subscriber
 * every datagram, once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { createDataPlane, probeTiers } from '../../src/dataplane/tiers.js';
import type { FlowPlan } from '../../src/policy/compile.js';
import type { Endpoint } from '../../src/wire/endpoint.js';
import { FastJoin, type FastJoinOutcome } from '../../src/control/fast-join.js';
import type { CachedDatagram } from '../../src/media/rap-cache.js';
import { openReceiver, openSender, sendSequence, seqOf } from '../../harness/traffic/udp.js';

const TOTAL = 3000;
const JOIN_AT = 1000;
const CACHED = 100;

const v4 = (port: number): Endpoint => ({ family: 4, address: '127.0.0.1', port });
const plan = (listen: Endpoint, to: Endpoint[]): FlowPlan => ({
  name: 'fcc',
  type: 'replicate',
  listen,
  destinations: to,
  sources: { any: true },
  maxDatagramSize: 65507,
  payload: 'any',
  maxQueuedPackets: 4096,
});

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

const probes = await probeTiers();

for (const tier of ['portable', 'batched', 'kernel'] as const) {
  const probe = probes.find((p) => p.tier === tier);
  const skip = probe?.available ? false : `tier ${tier} unavailable here: ${probe?.detail ?? 'not probed'}`;
  test(`${tier}: a late subscriber gets the burst, then live, then the plane's copies: every datagram once`, { skip, timeout: 60_000 }, async () => {
    const plane = await createDataPlane(tier);
    const tap = await udpSocket();
    const feeder = await udpSocket();
    const other = await openReceiver();
    const late = await openReceiver();
    const src = await openSender();
    const tapEp = v4(tap.address().port);
    const base = [tapEp, v4(other.port)];
    try {
      const { listen } = await plane.addFlow('f', plan(v4(0), base));
      const recent: CachedDatagram[] = [];
      let index = 0;
      let join: FastJoin | undefined;
      let outcome: Promise<FastJoinOutcome> | undefined;
      tap.on('message', (msg) => {
        index++;
        const now = performance.now();
        join?.onDatagram(msg, index, now);
        recent.push({ bytes: new Uint8Array(msg), index, atMs: now });
        if (recent.length > CACHED) recent.shift();
        if (index === JOIN_AT) {
          join = new FastJoin({
            snapshot: { prefix: undefined, datagrams: recent.slice() },
            lastIndex: index,
            burstRate: 4,
            send: (d) => feeder.send(d, late.port, '127.0.0.1'),
            join: (after, force) => plane.joinFlow!('f', plan(listen, [...base, v4(late.port)]), { counter: tapEp, after, force }),
          });
          outcome = join.result;
          join.start();
        }
      });
      await sendSequence(src, { port: listen.port, address: '127.0.0.1' }, TOTAL, { burst: 4, gapMs: 2 });
      await other.waitFor(TOTAL, 30_000);
      assert.ok(outcome, 'the join started');
      const result = await outcome;
      await late.settle(300, 10_000);
      await other.settle(100);

      assert.equal(index, TOTAL, 'the tap got every datagram');
      assert.deepEqual(
        other.received.map(seqOf),
        Array.from({ length: TOTAL }, (_, i) => i),
        'the other subscriber: every datagram, once, in order',
      );
      const got = late.received.map(seqOf);
      const first = JOIN_AT - CACHED; // seq of tap index JOIN_AT - CACHED + 1
      const sorted = [...got].sort((a, b) => a - b);
      const dups = sorted.filter((s, i) => i > 0 && sorted[i - 1] === s).length;
      const expected = Array.from({ length: TOTAL - first }, (_, i) => first + i);
      const unique = [...new Set(sorted)];
      assert.deepEqual(unique, expected, `late subscriber: no gap (boundary ${result.boundary}, forced ${result.forced})`);
      assert.equal(result.overlap, 0);
      assert.equal(dups, 0, 'no duplicate');
      if (!result.forced) assert.deepEqual(got, expected, 'a join at the count asked for also keeps the order');
      assert.equal(result.burst, CACHED);
      console.log(
        `${tier}: boundary ${result.boundary}, fed ${result.fed}, forced ${result.forced}, overlap ${result.overlap}, ${result.durationMs.toFixed(0)} ms`,
      );
    } finally {
      await plane.close();
      tap.close();
      feeder.close();
      await Promise.all([other.close(), late.close(), src.close()]);
    }
  });
}
