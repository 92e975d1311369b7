/**
 * The fan-out joins a multicast group on demand and leaves it with its last
 * client. Not a test file itself: test/fanout/multicast.test.ts runs it
 * inside a namespace it creates (lo up, multicast on lo, a route for
 * 224.0.0.0/4 via lo), so nothing on the host changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { Fanout } from '../../src/control/fanout.js';
import { DATAGRAM, datagram, portOf, receiver, sequences, sleep, waitFor } from './fanout-helpers.js';

const joined = (group: string) => readFileSync('/proc/net/igmp', 'utf8').includes(group);
/** 239.77.0.1 as /proc/net/igmp writes it (little-endian hex). */
const HEX = '01004DEF';

test('GET /udp/GROUP:PORT joins the group on --interface, streams it, and leaves with the last client', { timeout: 60_000 }, async () => {
  execFileSync('ip', ['link', 'set', 'lo', 'multicast', 'on']);
  execFileSync('ip', ['route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  const port = 47_777;
  const f = await Fanout.start({ http: '127.0.0.1:0', allow: ['239.77.0.0/16'], interface: 'lo' });
  try {
    assert.equal(joined(HEX), false);
    const other = await receiver(portOf(f.http!), { path: '/udp/239.78.0.1:47777' });
    await Promise.race([other.closed, sleep(5000)]);
    assert.equal(other.status(), 403, 'a group outside --allow is refused');
    const r = await receiver(portOf(f.http!), { path: `/udp/239.77.0.1:${port}` });
    assert.ok(await waitFor(async () => (await f.stats()).totals.clients === 1, 10_000));
    assert.ok(joined(HEX), 'joined 239.77.0.1');
    const u = createSocket('udp4');
    await new Promise<void>((res) => u.bind(0, '127.0.0.1', () => res()));
    u.setMulticastInterface('127.0.0.1');
    u.setMulticastLoopback(true);
    for (let i = 0; i < 100; i++) {
      await new Promise<void>((res) => u.send(datagram(i), port, '239.77.0.1', () => res()));
      // A datagram to the same port on another group is not this input's.
      await new Promise<void>((res) => u.send(datagram(10_000 + i), port, '239.77.0.2', () => res()));
      if (i % 10 === 9) await sleep(2);
    }
    u.close();
    assert.ok(await waitFor(() => r.body().byteLength >= 100 * DATAGRAM, 10_000));
    await sleep(200);
    assert.deepEqual(
      sequences(r.body()),
      Array.from({ length: 100 }, (_, i) => i),
    );
    r.socket.destroy();
    assert.ok(await waitFor(async () => (await f.stats()).totals.inputs === 0, 10_000), 'the input closed with its last client');
    assert.ok(await waitFor(() => !joined(HEX), 5000), 'left the group with the last client');
  } finally {
    await f.close();
  }
});
