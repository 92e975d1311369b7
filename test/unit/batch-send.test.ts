/**
 * src/sys/batch-send.ts: the one sendmmsg loop of the batched tier, the
 * send worker and the TPO batched port, driven through an injected
 * sendmmsg: partial sends resume, the three answers of the drop-or-wait
 * hook, stale ICMP errors resent before they are believed, a refused GSO
 * message handed to the policy, and flag runs (MSG_ZEROCOPY).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { loadFfi } from '../../src/sys/ffi.js';
import { SendVector } from '../../src/sys/send-vector.js';
import { SIZEOF_MMSGHDR } from '../../src/sys/constants.js';
import { isGsoRefusal, sendAll, type BatchSendPolicy, type FullVerdict } from '../../src/sys/batch-send.js';

const ffi = loadFfi();
const E = constants.errno;

/** A vector of `n` one-datagram messages whose sendmmsg answers from `answers` (count taken, or -errno; then all). */
function vector(n: number, answers: number[]) {
  const calls: { start: number; vlen: number; flags: number }[] = [];
  let base = -1;
  const vec = new SendVector(16, 16, (_fd, address, vlen, flags) => {
    if (base < 0) base = address;
    calls.push({ start: (address - base) / SIZEOF_MMSGHDR, vlen, flags });
    const a = answers.shift();
    return a === undefined ? vlen : Math.min(a, vlen);
  });
  for (let i = 0; i < n; i++) {
    vec.begin(0x9000, 16, 0);
    vec.addIov(0x1000 + i * 2048, 100);
  }
  return { vec, calls };
}

/** A policy that records everything and answers onFull from `full`. */
function recorder(full: (at: number, errno: number, attempt: number) => FullVerdict = () => 'drop', extra: Partial<BatchSendPolicy> = {}) {
  const log: string[] = [];
  const policy: BatchSendPolicy = {
    begin: (n) => log.push(`begin ${n}`),
    onCall: () => log.push('call'),
    onSent: (at, count) => log.push(`sent ${at}+${count}`),
    onFull: (at, errno, attempt) => {
      const v = full(at, errno, attempt);
      log.push(`full ${at} ${errno === E.EAGAIN ? 'EAGAIN' : 'ENOBUFS'} #${attempt} ${v}`);
      return v;
    },
    onRefused: (at, errno, why) => log.push(`refused ${at} ${errno} ${why}`),
    ...extra,
  };
  return { policy, log };
}

describe('sendAll', { skip: ffi.ok ? undefined : `FFI unavailable: ${ffi.ok ? '' : ffi.reason}` }, () => {
  test('a partial send resumes at the first message not taken', () => {
    const { vec, calls } = vector(5, [2, 1]);
    const { policy, log } = recorder();
    sendAll(vec, 3, policy);
    assert.deepEqual(
      calls.map((c) => [c.start, c.vlen]),
      [
        [0, 5],
        [2, 3],
        [3, 2],
      ],
    );
    assert.deepEqual(log, ['begin 5', 'call', 'sent 0+2', 'call', 'sent 2+1', 'call', 'sent 3+2']);
  });

  test("'drop': the full message is given up and the next one sent", () => {
    const { vec, calls } = vector(3, [1, -E.EAGAIN]);
    const { policy, log } = recorder(() => 'drop');
    sendAll(vec, 3, policy);
    assert.deepEqual(
      calls.map((c) => c.start),
      [0, 1, 2],
    );
    assert.deepEqual(log, ['begin 3', 'call', 'sent 0+1', 'call', 'full 1 EAGAIN #0 drop', `refused 1 ${E.EAGAIN} full`, 'call', 'sent 2+1']);
  });

  test("'retry': the same message is sent again, and attempt counts the retries for it", () => {
    const { vec } = vector(2, [-E.ENOBUFS, -E.ENOBUFS, -E.ENOBUFS, 1, -E.EAGAIN]);
    const { policy, log } = recorder((_at, _errno, attempt) => (attempt < 2 ? 'retry' : 'drop'));
    sendAll(vec, 3, policy);
    assert.deepEqual(log, [
      'begin 2',
      'call',
      'full 0 ENOBUFS #0 retry',
      'call',
      'full 0 ENOBUFS #1 retry',
      'call',
      'full 0 ENOBUFS #2 drop',
      `refused 0 ${E.ENOBUFS} full`,
      'call',
      'sent 1+1',
    ]);
    // The attempt count starts again for a later message.
    const again = vector(2, [1, -E.EAGAIN]);
    const r = recorder((_at, _errno, attempt) => (attempt < 1 ? 'retry' : 'drop'));
    sendAll(again.vec, 3, r.policy);
    assert.deepEqual(r.log.slice(3), ['call', 'full 1 EAGAIN #0 retry', 'call', 'sent 1+1']);
  });

  test("'drop-rest': this message and every later one are given up, with no more calls", () => {
    const { vec, calls } = vector(5, [2, -E.EAGAIN]);
    const { policy, log } = recorder(() => 'drop-rest');
    sendAll(vec, 3, policy);
    assert.equal(calls.length, 2);
    assert.deepEqual(log, [
      'begin 5',
      'call',
      'sent 0+2',
      'call',
      'full 2 EAGAIN #0 drop-rest',
      `refused 2 ${E.EAGAIN} full`,
      `refused 3 ${E.EAGAIN} full`,
      `refused 4 ${E.EAGAIN} full`,
    ]);
  });

  test('an errno a pending ICMP error can carry is resent staleResends times before it is believed', () => {
    // Stale once, then the message goes: the refusal was an earlier destination's ICMP error.
    const once = vector(1, [-E.ECONNREFUSED]);
    const a = recorder(() => 'drop', { staleResends: 2 });
    sendAll(once.vec, 3, a.policy);
    assert.deepEqual(a.log, ['begin 1', 'call', 'call', 'sent 0+1']);
    // Refused three times: believed after two resends.
    const real = vector(2, [-E.EHOSTUNREACH, -E.EHOSTUNREACH, -E.EHOSTUNREACH]);
    const b = recorder(() => 'drop', { staleResends: 2 });
    sendAll(real.vec, 3, b.policy);
    assert.deepEqual(b.log, ['begin 2', 'call', 'call', 'call', `refused 0 ${E.EHOSTUNREACH} error`, 'call', 'sent 1+1']);
    // Without staleResends the first refusal stands.
    const none = vector(1, [-E.ECONNREFUSED]);
    const c = recorder();
    sendAll(none.vec, 3, c.policy);
    assert.deepEqual(c.log, ['begin 1', 'call', `refused 0 ${E.ECONNREFUSED} error`]);
  });

  test('a GSO refusal goes to onGsoRefused, which may take the message over; other errors are refusals', () => {
    assert.ok(isGsoRefusal(E.EIO) && isGsoRefusal(E.EINVAL) && isGsoRefusal(E.EMSGSIZE));
    assert.ok(!isGsoRefusal(E.EPERM) && !isGsoRefusal(E.EAGAIN));
    const seen: number[] = [];
    const { vec } = vector(3, [-E.EMSGSIZE, -E.EIO, -E.EPERM]);
    const { policy, log } = recorder(() => 'drop', {
      onGsoRefused: (at) => {
        seen.push(at);
        return at === 0;
      },
    });
    sendAll(vec, 3, policy);
    assert.deepEqual(seen, [0, 1], 'EPERM is no GSO refusal');
    assert.deepEqual(log, ['begin 3', 'call', 'call', `refused 1 ${E.EIO} error`, 'call', `refused 2 ${E.EPERM} error`]);
    // Without the hook a GSO refusal is an ordinary refusal.
    const plain = vector(1, [-E.EINVAL]);
    const r = recorder();
    sendAll(plain.vec, 3, r.policy);
    assert.deepEqual(r.log, ['begin 1', 'call', `refused 0 ${E.EINVAL} error`]);
  });

  test('planRun sends runs of messages with their own flags', () => {
    const { vec, calls } = vector(5, []);
    // Messages 0-1 with flag 0x4000000 (MSG_ZEROCOPY), 2-4 without.
    const zero = (m: number) => m < 2;
    const { policy } = recorder(() => 'drop', {
      planRun: (at, end, run) => {
        let until = at + 1;
        while (until < end && zero(until) === zero(at)) until++;
        run.until = until;
        run.flags = zero(at) ? 0x4000000 : 0;
      },
    });
    sendAll(vec, 3, policy);
    assert.deepEqual(calls, [
      { start: 0, vlen: 2, flags: 0x4000000 },
      { start: 2, vlen: 3, flags: 0 },
    ]);
  });

  test('end limits the messages sent', () => {
    const { vec, calls } = vector(5, []);
    const { policy, log } = recorder();
    sendAll(vec, 3, policy, 3);
    assert.deepEqual(calls, [{ start: 0, vlen: 3, flags: 0 }]);
    assert.deepEqual(log, ['begin 3', 'call', 'sent 0+3']);
  });
});
