/**
 * Which messages of a gateway flow go urgent (ahead of queued bulk): a thin
 * flow's, until it sends more than THIN_BYTES in a THIN_WINDOW_MS window;
 * then it counts as bulk for BULK_HOLD_MS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BULK_HOLD_MS, THIN_BYTES, THIN_WINDOW_MS, ThinFlowMeter } from '../../src/tpo/gateway/flow.js';

test('a request/response flow stays urgent; a bulk flow does not, and stays bulk for a while', () => {
  const rr = new ThinFlowMeter();
  for (let t = 0; t < 10_000; t += 50) assert.equal(rr.urgent(100, t), true, `t=${t}`);

  const bulk = new ThinFlowMeter();
  let t = 0;
  // The first 16 KiB of the window go urgent (a flow is thin until it shows otherwise)...
  assert.equal(bulk.urgent(THIN_BYTES, t), true);
  // ...the next byte makes it bulk.
  assert.equal(bulk.urgent(1, t), false);
  // A quiet window does not make it thin again before the hold ends.
  t += THIN_WINDOW_MS;
  assert.equal(bulk.urgent(100, t), false);
  t = BULK_HOLD_MS - 1;
  assert.equal(bulk.urgent(100, t), false);
  // After the hold, with little to send, it is thin again.
  t = BULK_HOLD_MS + 1;
  assert.equal(bulk.urgent(100, t), true);
  // Control messages (no data) of a bulk flow during its hold are not urgent either:
  // they would only wait at the far end for the data before them.
  bulk.urgent(THIN_BYTES + 1, t + 1);
  assert.equal(bulk.urgent(0, t + 2), false);
});
