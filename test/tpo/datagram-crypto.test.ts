/**
 * Every data mover datagram is authenticated: sealed and opened with the
 * session's keys, refused when anything in it changes, and accepted once
 * (the replay window).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  datagramAeadImplementation,
  deriveSessionKeys,
  openDatagram,
  openDatagramNode,
  sealDatagram,
  sealDatagramNode,
  TAG_LENGTH,
} from '../../src/tpo/protocol/datagram-crypto.js';
import { ReplayWindow } from '../../src/tpo/protocol/replay-window.js';
import { decodeDataMoverField, encodeDataMoverField, TD_DATA } from '../../src/wire/tpo/data-mover.js';

const psk = randomBytes(32);
const ni = randomBytes(16);
const nr = randomBytes(16);
const a = deriveSessionKeys(psk, ni, nr, true);
const b = deriveSessionKeys(psk, ni, nr, false);

test('the two sides derive matching keys, one per direction; other nonces give other keys', () => {
  assert.deepEqual(a.send, b.receive);
  assert.deepEqual(a.receive, b.send);
  assert.notDeepEqual(a.send, a.receive);
  assert.notDeepEqual(deriveSessionKeys(psk, randomBytes(16), nr, true).send, a.send);
  assert.throws(() => deriveSessionKeys(new Uint8Array(8), ni, nr, true), /at least 16 bytes/);
});

test('seal and open round-trip; any changed byte, a wrong key or a wrong number is refused (property)', () => {
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.uint8Array({ maxLength: 1400 }), fc.nat(), (physical, segment, flip) => {
      const field = encodeDataMoverField({ connectionId: 7, transport: { flags: segment.length ? TD_DATA : 0, logical: 3, physical } });
      const dgram = sealDatagram(a.send, physical, field, segment);
      assert.equal(dgram.length, field.length + segment.length + TAG_LENGTH);
      const { field: f, payloadOffset } = decodeDataMoverField(dgram);
      assert.equal(f.transport.physical, physical);
      assert.deepEqual(openDatagram(b.receive, physical, dgram, payloadOffset), Buffer.from(segment));
      const bad = Buffer.from(dgram);
      bad[flip % bad.length]! ^= 0x40;
      assert.equal(openDatagram(b.receive, physical, bad, payloadOffset), undefined, 'a changed byte authenticated');
      assert.equal(openDatagram(b.send, physical, dgram, payloadOffset), undefined, "the wrong direction's key");
      assert.equal(openDatagram(b.receive, physical + 1, dgram, payloadOffset), undefined, 'another number');
      assert.equal(openDatagram(b.receive, physical, dgram.subarray(0, dgram.length - 1), payloadOffset), undefined, 'truncated');
    }),
    { numRuns: 200 },
  );
});

test('the EVP and node:crypto implementations interoperate both ways, and both refuse a forgery (property)', (t) => {
  if (datagramAeadImplementation() !== 'evp') return t.skip('libcrypto symbols cannot be bound here: only node:crypto runs');
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.uint8Array({ maxLength: 9000 }), fc.nat(), (physical, segment, flip) => {
      const field = encodeDataMoverField({ connectionId: 9, transport: { flags: segment.length ? TD_DATA : 0, logical: 1, physical } });
      const evp = sealDatagram(a.send, physical, field, segment);
      const node = sealDatagramNode(a.send, physical, field, segment);
      assert.deepEqual(evp, node, 'the same key, nonce and input give the same bytes');
      const { payloadOffset } = decodeDataMoverField(evp);
      assert.deepEqual(openDatagramNode(b.receive, physical, evp, payloadOffset), Buffer.from(segment));
      assert.deepEqual(openDatagram(b.receive, physical, node, payloadOffset), Buffer.from(segment));
      const bad = Buffer.from(evp);
      bad[flip % bad.length]! ^= 0x01;
      assert.equal(openDatagram(b.receive, physical, bad, payloadOffset), undefined);
      assert.equal(openDatagramNode(b.receive, physical, bad, payloadOffset), undefined);
    }),
    { numRuns: 300 },
  );
  // The largest datagram the region holds, and one beyond it (node:crypto then).
  for (const size of [65_500, 70_000]) {
    const segment = randomBytes(size);
    const field = encodeDataMoverField({ connectionId: 9, transport: { flags: TD_DATA, logical: 1, physical: 5 } });
    const d = sealDatagram(a.send, 5, field, segment);
    assert.deepEqual(openDatagramNode(b.receive, 5, d, decodeDataMoverField(d).payloadOffset), segment);
  }
});

test('replay window: each number once; old numbers refused; reordering within the window accepted', () => {
  const w = new ReplayWindow(1024);
  assert.ok(w.accept(5));
  assert.ok(!w.accept(5), 'a repeat');
  assert.ok(w.accept(3), 'late but inside the window');
  assert.ok(w.accept(1000));
  assert.ok(!w.check(3), 'still remembered');
  assert.ok(w.accept(2000));
  assert.ok(!w.check(900), 'below the window');
  assert.ok(w.check(1999) && w.accept(1999));
  assert.ok(w.accept(1_000_000), 'a long jump');
  assert.ok(!w.check(2000));
  assert.ok(w.check(999_999));
  assert.ok(!w.check(-1) && !w.check(1.5));
});

test('replay window against a set, for random arrival orders (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.nat(5000), { maxLength: 400 }), (arrivals) => {
      const w = new ReplayWindow(256);
      const seen = new Set<number>();
      let top = -1;
      for (const n of arrivals) {
        const fresh = !seen.has(n) && (n > top || top - n < 256 - 32);
        assert.equal(w.accept(n), fresh, `number ${n} (top ${top})`);
        if (fresh) {
          seen.add(n);
          top = Math.max(top, n);
        }
      }
    }),
    { numRuns: 300 },
  );
});
