/** The reuseport steering program's arithmetic (src/sys/reuseport.ts): pure, no sockets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_STEERED_SOCKETS, steeringIndex, steeringProgram } from '../../src/sys/reuseport.js';
import { SubscriberHealth } from '../../src/dataplane/common/subscriber-health.js';

test('steeringIndex is in range, a function of the source, and spreads ports over the sockets', () => {
  for (const n of [1, 2, 3, 8]) {
    const hits = new Array<number>(n).fill(0);
    for (let port = 1024; port < 3024; port++) {
      const i = steeringIndex('10.0.0.7', port, n);
      assert.ok(Number.isInteger(i) && i >= 0 && i < n);
      assert.equal(steeringIndex('10.0.0.7', port, n), i);
      hits[i]!++;
    }
    // 2000 ports: every socket gets a fair share (far from 0, far from all).
    for (const h of hits) assert.ok(h > 2000 / n / 2, `socket share ${h} of 2000 over ${n}`);
  }
});

test('IPv6 sources: the four address words are folded (textual forms of one address agree)', () => {
  const forms = ['2001:db8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '[2001:db8::1]'];
  const idx = forms.map((a) => steeringIndex(a, 5004, 7));
  assert.deepEqual(new Set(idx).size, 1);
  assert.equal(steeringIndex('::ffff:10.0.0.7', 9, 5), steeringIndex('::ffff:a00:7', 9, 5));
});

test('the program: one instruction list per group size, ends with ret a; bad sizes are RangeErrors', () => {
  const p = steeringProgram(2);
  assert.deepEqual(p.at(-1), [0x16, 0, 0, 0]);
  assert.deepEqual(
    p.find((x) => x[0] === 0x94),
    [0x94, 0, 0, 2],
  );
  for (const bad of [0, -1, 1.5, MAX_STEERED_SOCKETS + 1]) assert.throws(() => steeringProgram(bad), RangeError);
});

test("SubscriberHealth.mirror takes another worker's suspension and resumption", () => {
  const h = new SubscriberHealth({ afterErrors: 3, retryMs: 200 });
  assert.equal(h.mirror(1000, 500), true);
  assert.equal(h.isSuspended(), true);
  assert.equal(h.suspendedUntil, 1000);
  assert.equal(h.mirror(1000, 600), false);
  assert.equal(h.onError(700), false, 'errors while suspended change nothing');
  assert.equal(h.mirror(0, 1000), true);
  assert.equal(h.isSuspended(), false);
});
