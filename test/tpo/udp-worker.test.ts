/**
 * The transparent interceptor's UDP receive thread
 * (src/tpo/intercept/udp-worker.ts) on its src/worker channel, without
 * root: on a plain UDP socket on 127.0.0.1 (no IP_RECVORIGDSTADDR, so the
 * destination is the listener's own address) a datagram arrives in a
 * 'batch' with its source; close() ends the thread through the eventfd,
 * not by terminate(); a listener that is no socket stops the thread with
 * its own SyscallError, rebuilt. The interception itself (TPROXY, original
 * destinations) is test/netns/tpo-intercept.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { WorkerChannel } from '../../src/worker/channel.js';
import { RawUdpSocket } from '../../src/sys/udp-socket.js';
import { Waker } from '../../src/sys/poller.js';
import { EngineFailedError, SyscallError } from '../../src/errors.js';
import type { UdpWorkerData, UdpWorkerDatagram, UdpWorkerNotifications, UdpWorkerRequests } from '../../src/tpo/intercept/udp-worker-protocol.js';

const ENGINE = "the transparent UDP receive thread ('sluice-tproxy-udp')";
const entry = new URL('../../src/tpo/intercept/udp-worker.ts', import.meta.url);

function start(fds: number[], bound: UdpWorkerData['bound'], waker: Waker) {
  return WorkerChannel.start<UdpWorkerRequests, UdpWorkerNotifications, undefined, UdpWorkerData>({
    spawn: { entry, name: 'sluice-tproxy-udp', workerData: { fds, bound, wakeFd: waker.fd } },
    engine: ENGINE,
    wake: () => waker.signal(),
  });
}

describe('transparent UDP receive thread', () => {
  test("a datagram arrives in a 'batch' with its source; close() ends the thread through the eventfd", async () => {
    const socket = RawUdpSocket.open(4);
    const waker = new Waker();
    const client = dgram.createSocket('udp4');
    try {
      socket.bind({ family: 4, address: '127.0.0.1', port: 0 });
      const bound = socket.localEndpoint();
      const ch = await start([socket.fd], [bound], waker);
      const got = once(ch, 'batch') as Promise<[readonly UdpWorkerDatagram[]]>;
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', () => resolve()));
      client.send('hello', bound.port, '127.0.0.1');
      const [batch] = await got;
      assert.equal(batch.length, 1);
      const d = batch[0]!;
      assert.equal(d.i, 0);
      assert.equal(Buffer.from(d.data).toString(), 'hello');
      assert.deepEqual(d.src, { family: 4, address: '127.0.0.1', port: client.address().port });
      assert.deepEqual(d.dst, bound, 'no original-destination cmsg: the listener address');
      const t0 = performance.now();
      // terminateAfterMs 0 would hide a thread that ignores its eventfd; 2 s is what the interceptor gives it.
      await ch.close({ terminateAfterMs: 2000 });
      assert.ok(performance.now() - t0 < 1500, 'woken at once, not terminated');
      assert.equal(ch.exitCode, 0, 'the thread returned (terminate() would give 1)');
      assert.equal(ch.failure, undefined);
    } finally {
      client.close();
      waker.close();
      socket.close();
    }
  });

  test('a listener that is no socket stops the thread with its SyscallError', async () => {
    const notSocket = new Waker();
    const waker = new Waker();
    try {
      const ch = await start([notSocket.fd], [{ family: 4, address: '127.0.0.1', port: 1 }], waker);
      const failed = once(ch, 'failed') as Promise<[EngineFailedError]>;
      notSocket.signal();
      const [e] = await failed;
      assert.ok(e instanceof EngineFailedError);
      assert.equal(e.engine, ENGINE);
      assert.ok(e.cause instanceof SyscallError, String(e.cause));
      assert.equal(e.cause.op, 'recvmsg(transparent UDP)');
      assert.equal(e.cause.errno, 'ENOTSOCK');
      await ch.close();
    } finally {
      waker.close();
      notSocket.close();
    }
  });
});
