/**
 * The suspension policy (suspendAfterErrors / suspendRetryMs) as a state
 * machine over explicit times, and the error-queue parser over hand-built
 * control data; then the error queue of a real socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { constants } from 'node:os';
import { ERROR_RUN_GAP_MS, MAX_RETRY_MS, SubscriberHealth } from '../../src/dataplane/common/subscriber-health.js';
import { ErrorQueueReader, enableRecvErr, parseExtendedError } from '../../src/sys/error-queue.js';
import { loadFfi } from '../../src/sys/ffi.js';
import { RawUdpSocket } from '../../src/sys/udp-socket.js';
import { NativeRegion } from '../../src/sys/memory.js';
import { SendVector } from '../../src/sys/send-vector.js';
import { readSockaddr, writeSockaddr } from '../../src/sys/sockaddr.js';

test('N errors in a row suspend; rare errors never add up', () => {
  const h = new SubscriberHealth({ afterErrors: 3, retryMs: 1000 });
  assert.equal(h.onError(0), false);
  assert.equal(h.onError(ERROR_RUN_GAP_MS + 1), false, 'a gap restarts the count');
  assert.equal(h.onError(ERROR_RUN_GAP_MS + 2), false);
  assert.equal(h.isSuspended(), false);
  assert.equal(h.onError(ERROR_RUN_GAP_MS + 3), true);
  assert.equal(h.isSuspended(), true);
  assert.equal(h.suspendedUntil, ERROR_RUN_GAP_MS + 3 + 1000);
  assert.equal(h.onError(ERROR_RUN_GAP_MS + 4), false, 'late errors for earlier copies change nothing');
});

test('a failed retry suspends again at once for twice as long, up to the cap; a quiet probation resets', () => {
  const h = new SubscriberHealth({ afterErrors: 2, retryMs: 1000 });
  h.onError(0);
  h.onError(1);
  assert.equal(h.suspendedUntil, 1001);
  assert.equal(h.resumeIfDue(1000), false);
  assert.equal(h.resumeIfDue(1001), true);
  assert.equal(h.isSuspended(), false);
  // On probation: one error is enough, and the wait doubles.
  let t = 1050;
  let wait = 1000;
  for (let i = 0; i < 10; i++) {
    assert.equal(h.onError(t), true);
    wait = Math.min(wait * 2, MAX_RETRY_MS);
    assert.equal(h.suspendedUntil, t + wait);
    t = h.suspendedUntil;
    assert.equal(h.resumeIfDue(t), true);
    t += 10;
  }
  assert.equal(wait, MAX_RETRY_MS);
  // A probation without an error (it lasts at least the last wait) ends it.
  t += MAX_RETRY_MS + 1;
  assert.equal(h.onError(t), false, 'back to needing afterErrors errors');
  assert.equal(h.onError(t + 1), true);
  assert.equal(h.suspendedUntil, t + 1 + 1000, 'and the first wait again');
});

test('parseExtendedError reads IP_RECVERR / IPV6_RECVERR and rejects truncated control data', () => {
  const cmsg = (level: number, type: number, errno: number, origin: number, icmpType: number, code: number) => {
    const b = new Uint8Array(48);
    const v = new DataView(b.buffer);
    v.setUint32(0, 16 + 16 + 16, true);
    v.setInt32(8, level, true);
    v.setInt32(12, type, true);
    v.setUint32(16, errno, true);
    b[20] = origin;
    b[21] = icmpType;
    b[22] = code;
    return b;
  };
  assert.deepEqual(parseExtendedError(cmsg(0, 11, 111, 2, 3, 3)), { errno: 111, origin: 2, type: 3, code: 3 });
  assert.deepEqual(parseExtendedError(cmsg(41, 25, 111, 3, 1, 4)), { errno: 111, origin: 3, type: 1, code: 4 });
  assert.equal(parseExtendedError(cmsg(1, 11, 111, 2, 3, 3)), undefined, 'another level');
  assert.equal(parseExtendedError(cmsg(0, 11, 111, 2, 3, 3), 20), undefined, 'cut short');
  const lying = cmsg(0, 11, 111, 2, 3, 3);
  new DataView(lying.buffer).setUint32(0, 4096, true);
  assert.equal(parseExtendedError(lying), undefined, 'length beyond the buffer');
  assert.equal(parseExtendedError(new Uint8Array(0)), undefined);
});

const ffi = loadFfi();
test(
  'a socket with IP_RECVERR reads the port unreachable its datagram drew, naming the destination',
  { skip: ffi.ok ? undefined : 'needs the FFI' },
  async () => {
    const closed = dgram.createSocket('udp4');
    await new Promise<void>((r) => closed.bind(0, '127.0.0.1', () => r()));
    const deadPort = closed.address().port;
    await new Promise<void>((r) => closed.close(() => r()));
    const s = RawUdpSocket.open(4);
    try {
      s.bind({ family: 4, address: '127.0.0.1', port: 0 });
      enableRecvErr(s.fd, 4);
      const name = new NativeRegion(32);
      const len = writeSockaddr(name.bytes, 0, 4, '127.0.0.1', deadPort);
      const payload = new NativeRegion(16);
      const vec = new SendVector(1, 1);
      vec.begin(name.address, len, 0);
      vec.addIov(payload.address, 8);
      assert.equal(vec.send(s.fd, 0), 1);
      const reader = new ErrorQueueReader(s.fd);
      const seen: { to: string; errno: number }[] = [];
      for (let i = 0; i < 50 && seen.length === 0; i++) {
        reader.drain((n, e) => {
          const ep = readSockaddr(n, 0);
          seen.push({ to: `${ep.address}:${ep.port}`, errno: e.errno });
        });
        if (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(seen, [{ to: `127.0.0.1:${deadPort}`, errno: constants.errno.ECONNREFUSED }]);
      assert.equal(reader.clearPendingError(), 0, 'reading the queue cleared the pending error');
    } finally {
      s.close();
    }
  },
);
