/**
 * The flow sequencer (src/tpo/gateway/flow-sequencer.ts): per-flow order,
 * and bounds on what it holds whatever a peer sends (issue #16): per flow
 * by count and by bytes, per group (the gateway's peer) by bytes, the
 * group's largest holder reset first. Pure: items are plain objects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowSequencer } from '../../src/tpo/gateway/flow-sequencer.js';

interface Item {
  readonly seq: number;
  readonly bytes: number;
  copied?: boolean;
}

function make(options: { maxHeld?: number; maxHeldBytes?: number; maxGroupBytes?: number } = {}) {
  const delivered: [string, Item][] = [];
  const overflows: [string, Item][] = [];
  const orphans: [string, Item[]][] = [];
  const seq = new FlowSequencer<Item>({
    ...options,
    deliver: (key, item) => delivered.push([key, item]),
    onOrphans: (key, items) => orphans.push([key, items]),
    onOverflow: (key, item) => overflows.push([key, item]),
    sizeOf: (i) => i.bytes,
    groupOf: (key) => key.slice(0, key.indexOf('|')),
    hold: (i) => ({ ...i, copied: true }),
  });
  const push = (key: string, n: number, bytes = 0, fn = 'data') => seq.push(key, { function: fn, sequence: n }, { seq: n, bytes });
  return { seq, push, delivered, overflows, orphans };
}

test('messages come out in sequence order; held ones are what hold() returned; nothing stays accounted', () => {
  const s = make();
  for (const n of [0, 3, 2, 5, 1, 4]) s.push('p|f', n, 100);
  assert.deepEqual(
    s.delivered.map(([, i]) => i.seq),
    [0, 1, 2, 3, 4, 5],
  );
  assert.deepEqual(
    s.delivered.map(([, i]) => !!i.copied),
    [false, false, true, true, false, true],
  );
  assert.equal(s.seq.stats.heldBytes, 0);
  assert.equal(s.seq.groupBytes('p'), 0);
});

test('a flow holding more bytes than its bound is dropped and handed to onOverflow; its late messages are ignored', () => {
  const MiB = 1 << 20;
  const s = make({ maxHeldBytes: 4 * MiB });
  s.push('p|f', 0, 10);
  // Sequence 1 never comes; 32 KiB messages pile up behind it.
  for (let n = 2; n < 2 + 200; n++) s.push('p|f', n, 32 * 1024);
  assert.equal(s.overflows.length, 1, 'one overflow');
  assert.equal(s.overflows[0]![0], 'p|f');
  assert.equal(s.seq.stats.overflows, 1);
  // 128 fit in 4 MiB; the 129th overflowed; the rest are late messages of a flow that ended.
  assert.equal(s.seq.stats.overflowDropped, 129);
  assert.equal(s.seq.stats.heldBytes, 0, 'everything held was let go');
  assert.equal(s.seq.groupBytes('p'), 0);
  assert.ok(s.seq.stats.late >= 200 - 129);
  assert.equal(s.delivered.length, 1);
  // A new flow on the key starts at 0 again.
  s.push('p|f', 0, 10);
  assert.equal(s.delivered.length, 2);
});

test('a flow holding more messages than its count bound is dropped too (small messages)', () => {
  const s = make({ maxHeld: 100 });
  s.push('p|f', 0);
  for (let n = 2; n < 2 + 150; n++) s.push('p|f', n, 1);
  assert.equal(s.overflows.length, 1);
  assert.equal(s.seq.stats.overflowDropped, 101);
});

test("a peer's flows together: the largest holder is reset when the group's bound is reached, not the newcomer; other groups are not touched", () => {
  const MiB = 1 << 20;
  const s = make({ maxHeldBytes: 16 * MiB, maxGroupBytes: 20 * MiB });
  // Another peer holds 10 MiB: its own group.
  s.push('q|x', 0);
  for (let n = 2; n < 12; n++) s.push('q|x', n, MiB);
  // Peer p: flow a holds 12 MiB, flow b 6 MiB (18 of 20).
  s.push('p|a', 0);
  for (let n = 2; n < 14; n++) s.push('p|a', n, MiB);
  s.push('p|b', 0);
  for (let n = 2; n < 8; n++) s.push('p|b', n, MiB);
  assert.equal(s.overflows.length, 0);
  assert.equal(s.seq.groupBytes('p'), 18 * MiB);
  // Flow c's 3 MiB would take p to 21 MiB: a (the largest) goes, c's message is held.
  s.push('p|c', 0);
  s.push('p|c', 2, 3 * MiB);
  assert.deepEqual(
    s.overflows.map(([k]) => k),
    ['p|a'],
  );
  assert.equal(s.seq.stats.groupOverflows, 1);
  assert.equal(s.seq.groupBytes('p'), 9 * MiB);
  assert.equal(s.seq.groupBytes('q'), 10 * MiB);
  // When the newcomer is itself the largest, it goes.
  for (let n = 3; n < 3 + 12; n++) s.push('p|c', n, MiB);
  assert.equal(s.overflows.length, 2);
  assert.equal(s.overflows.at(-1)![0], 'p|c');
  assert.ok(s.seq.groupBytes('p') <= 20 * MiB);
  assert.equal(s.seq.stats.heldBytes, s.seq.groupBytes('p') + s.seq.groupBytes('q'));
});

test('orphans (no sequence 0 within waitMs) leave the accounts', () => {
  let now = 0;
  const orphans: string[] = [];
  const seq = new FlowSequencer<{ bytes: number }>({
    deliver: () => undefined,
    onOrphans: (k) => orphans.push(k),
    onOverflow: () => undefined,
    sizeOf: (i) => i.bytes,
    now: () => now,
  });
  seq.push('p|f', { function: 'data', sequence: 5 }, { bytes: 1000 });
  assert.equal(seq.stats.heldBytes, 1000);
  now = 5000;
  seq.sweep();
  assert.deepEqual(orphans, ['p|f']);
  assert.equal(seq.stats.heldBytes, 0);
});
