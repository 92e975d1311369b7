/**
 * The gateways' handshake: both sides end with the same session (ids,
 * nonces, keys); nothing that does not authenticate, is stale or is a
 * replay gets an answer; the answer is far smaller than the initiation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  decodeInitiate,
  decodeRespond,
  encodeInitiate,
  encodeRespond,
  peekKeyId,
  INITIATE_LENGTH,
  RESPOND_LENGTH,
  MAX_CLOCK_SKEW_MS,
} from '../../src/wire/tpo/handshake.js';
import { InitiationGuard } from '../../src/tpo/protocol/initiation-guard.js';
import { deriveSessionKeys } from '../../src/tpo/protocol/datagram-crypto.js';
import { WireError } from '../../src/wire/tpo/errors.js';

const psk = randomBytes(32);
const other = randomBytes(32);

test('a full exchange gives both sides the same keys, crossed', () => {
  const now = Date.now();
  const init = { initiatorId: 11, keyId: 3, timestamp: now, nonce: randomBytes(16) };
  const sent = encodeInitiate(psk, init);
  assert.equal(sent.length, INITIATE_LENGTH);
  assert.equal(peekKeyId(sent), 3);
  const got = decodeInitiate(psk, sent);
  assert.deepEqual({ ...got, nonce: [...got.nonce] }, { ...init, nonce: [...init.nonce] });
  assert.ok(new InitiationGuard().accept(got, now));
  const resp = { initiatorId: got.initiatorId, responderId: 22, nonce: randomBytes(16) };
  const answer = encodeRespond(psk, sent, resp);
  assert.equal(answer.length, RESPOND_LENGTH);
  assert.ok(answer.length * 20 <= sent.length, 'the answer is at least 20 times smaller (no amplification)');
  const back = decodeRespond(psk, sent, answer);
  assert.equal(back.responderId, 22);
  const ki = deriveSessionKeys(psk, init.nonce, back.nonce, true);
  const kr = deriveSessionKeys(psk, got.nonce, resp.nonce, false);
  assert.deepEqual(ki.send, kr.receive);
  assert.deepEqual(ki.receive, kr.send);
});

test('the wrong key, any changed byte, or an answer to another initiation is refused (property)', () => {
  fc.assert(
    fc.property(fc.nat(INITIATE_LENGTH - 1), fc.nat(RESPOND_LENGTH - 1), (i, j) => {
      const sent = encodeInitiate(psk, { initiatorId: 1, keyId: 0, timestamp: Date.now(), nonce: randomBytes(16) });
      assert.throws(
        () => decodeInitiate(other, sent),
        (e: unknown) => e instanceof WireError && e.reason === 'checksum',
      );
      const bad = Uint8Array.from(sent);
      bad[i]! ^= 1;
      assert.throws(
        () => decodeInitiate(psk, bad),
        (e: unknown) => e instanceof WireError,
      );
      const answer = encodeRespond(psk, sent, { initiatorId: 1, responderId: 2, nonce: randomBytes(16) });
      const badAnswer = Uint8Array.from(answer);
      badAnswer[j]! ^= 1;
      assert.throws(
        () => decodeRespond(psk, sent, badAnswer),
        (e: unknown) => e instanceof WireError,
      );
      const another = encodeInitiate(psk, { initiatorId: 1, keyId: 0, timestamp: Date.now(), nonce: randomBytes(16) });
      assert.throws(
        () => decodeRespond(psk, another, answer),
        (e: unknown) => e instanceof WireError && e.reason === 'checksum',
      );
      assert.throws(
        () => decodeInitiate(psk, sent.subarray(0, 100)),
        (e: unknown) => e instanceof WireError && e.reason === 'truncated',
      );
    }),
    { numRuns: 100 },
  );
});

test('the guard answers an initiation once, never a stale one, and never one older than the last it answered', () => {
  const g = new InitiationGuard();
  const now = Date.now();
  const mk = (t: number) => ({ initiatorId: 1, keyId: 0, timestamp: t, nonce: randomBytes(16) });
  const a = mk(now - 1000);
  assert.ok(g.accept(a, now));
  assert.ok(!g.accept(a, now + 10), 'a replay');
  assert.ok(!g.accept(mk(now - 1000), now + 10), 'another initiation with the same timestamp');
  assert.ok(!g.accept(mk(now - 2000), now + 10), 'an older one (captured earlier, replayed now)');
  assert.ok(!g.accept(mk(now - MAX_CLOCK_SKEW_MS - 1), now), 'stale');
  assert.ok(!g.accept(mk(now + MAX_CLOCK_SKEW_MS + 1), now), 'from the future');
  const b = mk(now - 999);
  assert.ok(g.accept(b, now), 'a newer one');
  assert.equal(g.newest, now - 999);
  // Whatever the order of a flood of captured initiations, each is answered at most once.
  const captured = Array.from({ length: 50 }, (_, k) => mk(now - 500 + k));
  let answered = 0;
  for (let round = 0; round < 3; round++) for (const c of [...captured].reverse().concat(captured)) if (g.accept(c, now)) answered++;
  assert.ok(answered <= captured.length, `${answered} answers to ${captured.length} initiations`);
});

test('an authentic initiation whose padding is not zero is refused', () => {
  const sent = encodeInitiate(psk, { initiatorId: 1, keyId: 0, timestamp: Date.now(), nonce: randomBytes(16) });
  const bad = Uint8Array.from(sent);
  bad[500] = 1;
  // Re-MAC it as a key holder could: the MAC verifies, the padding does not.
  bad.set(
    createHmac('sha256', psk)
      .update(bad.subarray(0, INITIATE_LENGTH - 32))
      .digest(),
    INITIATE_LENGTH - 32,
  );
  assert.throws(
    () => decodeInitiate(psk, bad),
    (e: unknown) => e instanceof WireError && e.field === 'padding',
  );
});

test('arbitrary bytes never throw anything but a WireError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1300 }), (bytes) => {
      for (const f of [() => decodeInitiate(psk, bytes), () => decodeRespond(psk, bytes, bytes), () => peekKeyId(bytes)]) {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof WireError, String(e));
        }
      }
    }),
    { numRuns: 1000 },
  );
});
