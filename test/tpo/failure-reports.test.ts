/**
 * Issue 19: how often the TPO failure reports come. Unanswered handshakes
 * are reported after a few, then with growing intervals; handshake
 * failures from one source are coalesced with a doubling interval;
 * clients wait for a session at most their bound, in arrival order; two
 * gateways that both initiate say so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { UnansweredHandshakes, UNREACHABLE_AFTER_ATTEMPTS } from '../../src/tpo/link/unanswered.js';
import { HandshakeFailureCoalescer } from '../../src/tpo/tpo-events.js';
import { SessionWait } from '../../src/tpo/gateway/session-wait.js';
import { parseTpoConfig, TpoGateway, type TpoHandshakeFailure } from '../../src/tpo/index.js';
import { collect, freeUdpPort, until } from './gateway-helpers.js';

test('unanswered handshakes: a report after 5, then after 10 s, 30 s, 60 s, ...; an answer starts afresh', () => {
  const u = new UnansweredHandshakes();
  const at: number[] = [];
  // An initiation every second for 10 minutes.
  for (let t = 0; t <= 600_000; t += 1000) if (u.sent(t)) at.push(t);
  assert.equal(at[0], (UNREACHABLE_AFTER_ATTEMPTS - 1) * 1000, 'the first report comes with the 5th unanswered initiation');
  assert.deepEqual(
    at.slice(1, 6).map((t, i) => t - at[i]!),
    [10_000, 30_000, 60_000, 120_000, 300_000],
  );
  assert.equal(u.attempts, 601);
  u.answered();
  assert.equal(u.attempts, 0);
  for (let i = 1; i < UNREACHABLE_AFTER_ATTEMPTS; i++) assert.equal(u.sent(700_000 + i), undefined);
  assert.deepEqual(u.sent(700_010), { attempts: UNREACHABLE_AFTER_ATTEMPTS, sinceMs: 9 });
});

test('handshake failures from one source: the first at once, then after 1 s, 2 s, 4 s ... up to 60 s; a new episode at once again', () => {
  const c = new HandshakeFailureCoalescer();
  const from = { address: '192.0.2.1', port: 7400, family: 'IPv4' as const };
  const events: { t: number; count: number }[] = [];
  // One failure every 250 ms for 5 minutes.
  for (let t = 0; t <= 300_000; t += 250) {
    const e = c.add('a', 'authentication', from, t);
    if (e) events.push({ t, count: e.count });
  }
  const gaps = events.slice(1).map((e, i) => e.t - events[i]!.t);
  assert.deepEqual(gaps.slice(0, 7), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
  assert.ok(
    gaps.slice(7).every((g) => g === 60_000),
    `at most one a minute from then on: ${gaps.join(' ')}`,
  );
  assert.equal(events.reduce((n, e) => n + e.count, 0) <= 1201, true);
  assert.equal(events[1]!.count, 4, 'an event counts the failures since the last');
  // Quiet for over a minute: the next one is reported at once, and the interval starts at 1 s again.
  const t0 = 300_000 + 61_000;
  assert.ok(c.add('a', 'authentication', from, t0));
  assert.equal(c.add('a', 'authentication', from, t0 + 999), undefined);
  assert.ok(c.add('a', 'authentication', from, t0 + 1000));
});

test('session wait: flows are released when the session comes up, else expire in arrival order after the bound', async () => {
  const expired: string[] = [];
  const w = new SessionWait<string>(150, (flow, peer) => expired.push(`${peer}:${flow}`));
  w.add('f1', 'b');
  await new Promise((r) => setTimeout(r, 50));
  w.add('f2', 'b');
  w.add('g1', 'c');
  w.forget('g1', 'c');
  w.add('h1', 'd');
  w.release('d');
  assert.equal(w.size, 2);
  await new Promise((r) => setTimeout(r, 130));
  assert.deepEqual(expired, ['b:f1'], 'the first is due first');
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(expired, ['b:f1', 'b:f2']);
  assert.equal(w.size, 0);
  w.add('x', 'b');
  w.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(expired, ['b:f1', 'b:f2'], 'close() expires nothing');
});

test('two gateways that were both given the other address: each says so (roleConflict)', { timeout: 30_000 }, async () => {
  const [portA, portB] = [await freeUdpPort(), await freeUdpPort()];
  const key = randomBytes(32).toString('hex');
  const a = await TpoGateway.start({
    config: parseTpoConfig({ name: 'a', listen: `127.0.0.1:${portA}`, peers: [{ name: 'b', address: `127.0.0.1:${portB}`, key, keyId: 1 }] }),
    control: false,
  });
  const b = await TpoGateway.start({
    config: parseTpoConfig({ name: 'b', listen: `127.0.0.1:${portB}`, peers: [{ name: 'a', address: `127.0.0.1:${portA}`, key, keyId: 1 }] }),
    control: false,
  });
  const fa = collect(a, 'handshakefailure') as TpoHandshakeFailure[];
  const fb = collect(b, 'handshakefailure') as TpoHandshakeFailure[];
  try {
    await until('both report', () => fa.length > 0 && fb.length > 0);
    assert.deepEqual([fa[0]!.reason, fa[0]!.peer, fa[0]!.from], ['roleConflict', 'b', `127.0.0.1:${portB}`]);
    assert.deepEqual([fb[0]!.reason, fb[0]!.peer, fb[0]!.from], ['roleConflict', 'a', `127.0.0.1:${portA}`]);
    assert.match(fa[0]!.message, /which this side initiates to as well: .*give peers\[\]\.address on one side only/);
  } finally {
    await a.close();
    await b.close();
  }
});
