/**
 * The batched tier's send error policy, driven through an injected
 * sendmmsg: partial sends resume, a refused destination does not stop the
 * others, a full socket becomes queueFull within a bounded wait, and a GSO
 * message the kernel refuses latches GSO off for that destination and is
 * resent datagram by datagram. Counters always add up.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { loadFfi } from '../../src/sys/ffi.js';
import { SendBatch, type BatchDestination, type PacketList } from '../../src/dataplane/batched/send-batch.js';
import { D, F, newDestinationCounters, newFlowCounters } from '../../src/dataplane/batched/shared-counters.js';
import { SIZEOF_MMSGHDR } from '../../src/sys/constants.js';
import { RawUdpSocket } from '../../src/sys/udp-socket.js';

const ffi = loadFfi();
const E = constants.errno;

/** One scripted answer per sendmmsg call: messages accepted, or -errno. */
function scripted(answers: number[]) {
  const calls: { start: number; vlen: number }[] = [];
  let base = -1;
  const fn = (_fd: number, address: number, vlen: number) => {
    if (base < 0) base = address;
    calls.push({ start: (address - base) / SIZEOF_MMSGHDR, vlen });
    const a = answers.shift();
    return a === undefined ? vlen : Math.min(a, vlen);
  };
  return { fn, calls, resetBase: () => (base = -1) };
}

function packets(sizes: number[]): PacketList {
  const address = new Float64Array(sizes.length);
  const length = new Int32Array(sizes);
  sizes.forEach((_, i) => (address[i] = 0x1000 + i * 2048));
  return { address, length };
}

function dest(i: number): BatchDestination {
  return { counters: newDestinationCounters(), nameAddress: 0x9000 + i * 32, nameLength: 16 };
}

describe('SendBatch error policy', { skip: ffi.ok ? undefined : `FFI unavailable: ${ffi.ok ? '' : ffi.reason}` }, () => {
  let sock: RawUdpSocket;
  before(() => {
    sock = RawUdpSocket.open(4);
  });
  after(() => sock.close());

  test('a partial sendmmsg resumes at the first unsent message', () => {
    const s = scripted([2, 1]);
    const b = new SendBatch(16, 16, s.fn);
    const p = packets([100, 100, 100, 100, 100]);
    const ds = [0, 1, 2, 3, 4].map(dest);
    const flow = newFlowCounters();
    ds.forEach((d, i) => b.add(d, p, i, 1, 0));
    b.transmit(sock.fd, flow, p, { ns: 1e6 }, undefined);
    assert.deepEqual(s.calls, [
      { start: 0, vlen: 5 },
      { start: 2, vlen: 3 },
      { start: 3, vlen: 2 },
    ]);
    assert.equal(flow[F.packetsOut], 5);
    assert.equal(flow[F.bytesOut], 500);
    assert.ok(ds.every((d) => d.counters[D.packetsOut] === 1));
  });

  test('a refused destination is counted and skipped; later ones still go', () => {
    // Refused three times: not a stale pending error (see the ICMP test below).
    const s = scripted([1, -E.EHOSTUNREACH, -E.EHOSTUNREACH, -E.EHOSTUNREACH]);
    const b = new SendBatch(16, 16, s.fn);
    const p = packets([64]);
    const ds = [0, 1, 2].map(dest);
    const flow = newFlowCounters();
    ds.forEach((d) => b.add(d, p, 0, 1, 0));
    b.transmit(sock.fd, flow, p, { ns: 1e6 }, undefined);
    assert.deepEqual(
      s.calls.map((c) => c.start),
      [0, 1, 1, 1, 2],
    );
    assert.equal(ds[1]!.counters[D.sendError], 1);
    assert.equal(ds[1]!.counters[D.lastErrno], E.EHOSTUNREACH);
    assert.equal(ds[1]!.counters[D.packetsOut], 0);
    assert.equal(ds[2]!.counters[D.packetsOut], 1);
    assert.equal(flow[F.packetsOut], 2);
    assert.equal(flow[F.sendError], 1);
  });

  test('EAGAIN is retried, then dropped as queueFull within the time budget', () => {
    const s = scripted([-E.EAGAIN, 1, ...Array(20).fill(-E.EAGAIN)]);
    const b = new SendBatch(16, 16, s.fn);
    const p = packets([64]);
    const ds = [0, 1, 2].map(dest);
    const flow = newFlowCounters();
    ds.forEach((d) => b.add(d, p, 0, 1, 0));
    const t0 = performance.now();
    b.transmit(sock.fd, flow, p, { ns: 2e6 }, undefined);
    assert.ok(performance.now() - t0 < 1000, 'bounded');
    // First message: one EAGAIN then sent. Second: EAGAIN on every retry → queueFull.
    assert.equal(ds[0]!.counters[D.packetsOut], 1);
    assert.equal(ds[1]!.counters[D.queueFull], 1);
    assert.equal(ds[1]!.counters[D.packetsOut], 0);
    assert.equal(flow[F.queueFull]! + flow[F.packetsOut]!, 3);
  });

  test('EMSGSIZE on a GSO message latches GSO off for that destination and resends singly', () => {
    const s = scripted([-E.EMSGSIZE, -E.EMSGSIZE, -E.EMSGSIZE]);
    const fb = scripted([]);
    const b = new SendBatch(16, 64, s.fn);
    const fallback = new SendBatch(16, 16, fb.fn);
    const p = packets([1316, 1316, 1316, 1000]);
    const [a, c] = [dest(0), dest(1)];
    const flow = newFlowCounters();
    b.add(a, p, 0, 4, 1316);
    const info = b.messageInfo(0);
    assert.deepEqual({ iovecs: info.iovecs, bytes: info.bytes, segmentSize: info.segmentSize }, { iovecs: 4, bytes: 3 * 1316 + 1000, segmentSize: 1316 });
    b.add(c, p, 0, 4, 1316);
    b.transmit(sock.fd, flow, p, { ns: 1e6 }, fallback);
    assert.equal(a.counters[D.gsoOff], 1);
    assert.equal(c.counters[D.gsoOff], 0);
    assert.deepEqual(fb.calls, [{ start: 0, vlen: 4 }]);
    assert.equal(a.counters[D.packetsOut], 4);
    assert.equal(a.counters[D.bytesOut], 3 * 1316 + 1000);
    assert.equal(c.counters[D.packetsOut], 4);
    assert.equal(flow[F.packetsOut], 8);
    assert.equal(flow[F.gsoMessages], 1);
    assert.equal(flow[F.gsoSegments], 4);
  });

  test("a refusal that may be another copy's pending ICMP error is sent again before it is believed", () => {
    // The socket reads ICMP errors (IP_RECVERR): the kernel hands the last
    // one to the next send, whatever its destination. Once: the resend goes.
    const s = scripted([-E.ECONNREFUSED]);
    const b = new SendBatch(16, 16, s.fn);
    const p = packets([64]);
    const ds = [0, 1].map(dest);
    const flow = newFlowCounters();
    ds.forEach((d) => b.add(d, p, 0, 1, 0));
    b.transmit(sock.fd, flow, p, { ns: 1e6 }, undefined);
    assert.deepEqual(
      s.calls.map((c) => c.start),
      [0, 0],
    );
    assert.ok(ds.every((d) => d.counters[D.packetsOut] === 1 && d.counters[D.sendError] === 0));
    assert.equal(flow[F.sendError], 0);
  });
});
