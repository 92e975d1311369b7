/**
 * The urgent lane and the session's window (data-mover.ts,
 * URGENT_ALLOWANCE_BYTES): with the window full of bulk that nothing
 * acknowledges, a thin flow's buffer still leaves at once, and the urgent
 * lane as a whole goes no further past the window than its allowance. A
 * driven clock keeps the pacer's credit and the retransmission timer where
 * the test puts them; no datagram is acknowledged, none leaves the process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataMover, URGENT_ALLOWANCE_BYTES as ALLOWANCE } from '../../src/tpo/protocol/data-mover.js';
import { deriveSessionKeys } from '../../src/tpo/protocol/datagram-crypto.js';
import { decodeDataMoverField, TD_DATA } from '../../src/wire/tpo/data-mover.js';

test('with the window full of unacknowledged bulk, an urgent buffer leaves at once; the urgent lane stops at its allowance past the window', async () => {
  let now = 1000;
  const sent: Buffer[] = [];
  const keys = deriveSessionKeys(randomBytes(32), randomBytes(16), randomBytes(16), true);
  const m = new DataMover({ localId: 1, peerId: 2, keys, transmit: (d) => void sent.push(Buffer.from(d)), now: () => now, initialRttMs: 10 });
  try {
    // 160 KiB of bulk, far more than the first window (10 datagrams).
    for (let i = 0; i < 10; i++) m.send(randomBytes(16 * 1024));
    // Let the pacer run until the window stops it: 2 ms of credit a step, well inside the 200 ms retransmission timeout.
    let before = -1;
    for (let step = 0; step < 20 && sent.length !== before; step++) {
      before = sent.length;
      now += 2;
      await sleep(5);
    }
    const dataSent = sent.filter((d) => decodeDataMoverField(d).field.transport.flags & TD_DATA).length;
    assert.ok(dataSent >= 8 && dataSent <= 14, `the first window went (${dataSent} data datagrams)`);
    assert.equal(m.stats.retransmissions, 0);
    assert.ok(m.queuedBytes > 100_000, 'most of the bulk still waits for the window');

    // A thin flow's request: out in send() itself, though the window is full and the pacer has no credit left.
    now += 2;
    const n0 = sent.length;
    m.send(randomBytes(300), true);
    assert.equal(sent.length, n0 + 1, 'the urgent buffer left at once');

    // Many thin flows at once: the lane goes at most its allowance past the window, then waits like the bulk.
    for (let i = 0; i < 40; i++) m.send(randomBytes(1000), true);
    const urgentSent = sent.length - n0;
    const urgentBytes = sent.slice(n0).reduce((s, d) => s + d.length, 0);
    assert.ok(urgentSent > 5 && urgentSent < 41, `${urgentSent} of 41 urgent buffers went`);
    assert.ok(urgentBytes <= ALLOWANCE + 3000, `${urgentBytes} urgent bytes past a full window`);
    const waiting = sent.length;
    now += 2;
    await sleep(5);
    assert.equal(sent.length, waiting, 'nothing more leaves until an ack opens the window');
  } finally {
    m.close();
  }
});
