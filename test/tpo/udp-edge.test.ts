/**
 * The UDP edge on its own, with a recording FlowHost instead of a gateway:
 * what the destination side does with datagrams that arrive before its
 * socket is bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { UdpEdge } from '../../src/tpo/gateway/udp-edge.js';
import { message, type CarriedFlow, type FlowHost, type FlowTuple } from '../../src/tpo/gateway/flow.js';

function recordingHost(): FlowHost & { sent: number } {
  return {
    sent: 0,
    send() {
      this.sent++;
      return true;
    },
    hasRoom: () => true,
    requestDrain: () => undefined,
    forget: (_f: CarriedFlow) => undefined,
    active: (_f: CarriedFlow) => undefined,
  };
}

test(
  'a burst released before the destination socket is bound is delivered whole (the sequencer releases a flow held behind its lost first datagram at once)',
  { timeout: 30_000 },
  async () => {
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    server.setRecvBufferSize(4 << 20);
    const got = new Set<string>();
    server.on('message', (m) => got.add(m.toString()));
    const tuple: FlowTuple = { protocol: 'udp', src: { address: '10.1.0.2', port: 5000 }, dst: { address: '127.0.0.1', port: server.address().port } };
    const counters = { udpDropped: 0, udpTooLarge: 0, sequenceErrors: 0 };
    const edge = new UdpEdge({ tuple, role: 'destination', peers: ['a'], domain: 0, host: recordingHost(), idleMs: 60_000, counters });
    try {
      edge.connect();
      // 300 datagrams in one synchronous run, as the sequencer hands them over: none can find the socket bound.
      for (let i = 0; i < 300; i++) edge.onMessage('a', message(tuple, 'data', i, Buffer.from(`d${i}`)));
      const t0 = performance.now();
      while (got.size < 300 && performance.now() - t0 < 10_000) await sleep(10);
      assert.equal(got.size, 300, `delivered ${got.size} of 300 (dropped ${counters.udpDropped})`);
      assert.equal(counters.udpDropped, 0);
    } finally {
      edge.close();
      server.close();
    }
  },
);
