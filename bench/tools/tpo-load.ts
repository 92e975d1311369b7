/**
 * TPO bench load (issue #6): two data movers (src/tpo/protocol/data-mover.ts) in this
 * process, on loopback, with the link emulator in a process of its own
 * between them (harness/bin/link-emu.ts), so this process's CPU is the two
 * gateways' transport work and nothing else.
 *
 *   --io batched|portable (default batched): the movers' datagram ports
 *       (src/tpo/io/datagram-port.ts): sendmmsg/UDP GSO and recvmmsg in a
 *       receive thread, or node:dgram one datagram per call.
 *   --mode bulk    --mb N --loss L [--rate-mbit 50 --rtt-ms 100]
 *       N MB of random driver buffers (16 KiB) from A to B, then the same
 *       again on the now established session; prints goodput, wire bytes
 *       (both directions) per delivered byte, CPU per delivered MB for each.
 *   --mode chatty  --msgs-per-s 20000 --seconds 2 --size 100 [--compression auto|none]
 *       100-byte messages, each with its own random payload, through A's
 *       packet driver (2 ms deadline) and data mover; prints datagrams A put
 *       on the wire per message.
 *
 * One JSON line on stdout: {"event":"done",...}.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { DataMover } from '../../src/tpo/protocol/data-mover.js';
import { deriveSessionKeys } from '../../src/tpo/protocol/datagram-crypto.js';
import { PacketDriver } from '../../src/tpo/protocol/packet-driver.js';
import { openDriverBuffer } from '../../src/wire/tpo/compression.js';
import { openDatagramPort, type DatagramPort } from '../../src/tpo/io/datagram-port.js';
import { flag } from './load-common.js';

const mode = flag('mode');
const loss = Number(flag('loss', '0'));
const rateMbit = Number(flag('rate-mbit', '50'));
const rttMs = Number(flag('rtt-ms', '100'));
const emuCpu = flag('emu-cpu', '');
const io = flag('io', 'batched') as 'batched' | 'portable';
if (io !== 'batched' && io !== 'portable') throw new Error(`--io must be batched or portable, not ${io}`);

function bind(): Promise<DatagramPort> {
  // 'batched' is strict: a bench row labelled batched must not be portable in disguise.
  return openDatagramPort({ family: 4, bind: { address: '127.0.0.1', port: 0 }, io, socketBufferBytes: 16 << 20 });
}

const sa = await bind();
const sb = await bind();
const link = { delayMs: rttMs / 2, loss, rateBps: rateMbit * 1e6 };
const config = {
  seed: 7,
  peerA: { address: '127.0.0.1', port: sa.address().port },
  peerB: { address: '127.0.0.1', port: sb.address().port },
  aToB: link,
  bToA: link,
  socketBufferBytes: 16 << 20,
};
const emuArgs = ['--import', 'tsx', 'harness/bin/link-emu.ts', '--config', JSON.stringify(config)];
const emuProc = emuCpu
  ? spawn('taskset', ['-c', emuCpu, process.execPath, ...emuArgs], { stdio: ['pipe', 'pipe', 'inherit'] })
  : spawn(process.execPath, emuArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: emuProc.stdout! });
const ready = await new Promise<{ a: { address: string; port: number }; b: { address: string; port: number } }>((resolve, reject) => {
  lines.once('line', (l) => resolve(JSON.parse(l)));
  emuProc.once('exit', (c) => reject(new Error(`link emulator exited ${c}`)));
});
const psk = randomBytes(32);
const ni = randomBytes(16);
const nr = randomBytes(16);
const a = new DataMover({ localId: 1, peerId: 2, keys: deriveSessionKeys(psk, ni, nr, true), transmit: (d) => sa.send(d, ready.a) });
const b = new DataMover({ localId: 2, peerId: 1, keys: deriveSessionKeys(psk, ni, nr, false), transmit: (d) => sb.send(d, ready.b) });
sa.on('message', (m) => a.receive(m));
sb.on('message', (m) => b.receive(m));
const emit = (o: object) => process.stdout.write(`${JSON.stringify({ event: 'done', mode, io, ...o })}\n`);

try {
  if (mode === 'bulk') {
    const mb = Number(flag('mb', '40'));
    const buffers = Array.from({ length: mb * 64 }, () => randomBytes(16_384));
    // Goodput after startup too: what arrived after the first STARTUP_S seconds, over the rest.
    const STARTUP_S = 2;
    const transfer = async () => {
      let delivered = 0;
      let got = 0;
      let atStartupEnd: { bytes: number; t: number } | undefined;
      let t0 = 0;
      const onBuffer = (x: Uint8Array) => {
        delivered += x.length;
        if (!atStartupEnd && performance.now() - t0 >= STARTUP_S * 1000) atStartupEnd = { bytes: delivered, t: performance.now() };
        if (++got === buffers.length) finish();
      };
      let finish = () => {};
      const done = new Promise<void>((resolve) => (finish = resolve));
      b.on('buffer', onBuffer);
      const sentBefore = a.stats.bytesSent + b.stats.bytesSent;
      const retxBefore = a.stats.retransmissions;
      const cpu0 = process.cpuUsage();
      t0 = performance.now();
      for (const x of buffers) if (!a.send(x)) await new Promise((r) => a.once('drain', r));
      await done;
      b.off('buffer', onBuffer);
      const end = performance.now();
      const s = (end - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      return {
        seconds: s,
        goodputMbit: (delivered * 8) / s / 1e6,
        ofLink: (delivered * 8) / s / (rateMbit * 1e6),
        steadyOfLink: atStartupEnd && end > atStartupEnd.t ? ((delivered - atStartupEnd.bytes) * 8) / ((end - atStartupEnd.t) / 1000) / (rateMbit * 1e6) : NaN,
        wirePerDelivered: (a.stats.bytesSent + b.stats.bytesSent - sentBefore) / delivered,
        cpuSPerMB: (cpu.user + cpu.system) / 1e6 / (delivered / 1e6),
        retransmissions: a.stats.retransmissions - retxBefore,
      };
    };
    // A new session starts from 1 Mbit/s (the whole-transfer figure includes
    // that startup); a gateway pair's session outlives the flows it carries,
    // so the same transfer again on the established session is what later
    // flows see.
    const cold = await transfer();
    const established = await transfer();
    emit({
      loss,
      rateMbit,
      rttMs,
      mb,
      ...cold,
      established,
      timeouts: a.stats.timeouts,
      srttMs: a.rtt.srttMs,
      // How the ports batched (both transfers): datagrams per send call and per receive hand-over, drops at the socket.
      sendCallsA: sa.stats.sendCalls,
      datagramsSentA: sa.stats.datagramsSent,
      gsoMessagesA: sa.stats.gsoMessages,
      receiveBatchesB: sb.stats.receiveBatches,
      datagramsReceivedB: sb.stats.datagramsReceived,
      portDrops: sa.stats.dropped.queueFull + sa.stats.dropped.sendError + sb.stats.dropped.queueFull + sb.stats.dropped.sendError,
    });
  } else if (mode === 'chatty') {
    const perS = Number(flag('msgs-per-s', '20000'));
    const seconds = Number(flag('seconds', '2'));
    const size = Number(flag('size', '100'));
    const total = Math.round(perS * seconds);
    let received = 0;
    const done = new Promise<void>((resolve) =>
      b.on('buffer', (x: Uint8Array) => {
        received += openDriverBuffer(x).messages.length;
        if (received >= total) resolve();
      }),
    );
    // The driver's default compression unless told otherwise; every message
    // has its own random payload, so only the message headers compress.
    const compression = flag('compression', 'auto') as 'auto' | 'none';
    const driver = new PacketDriver((sealed) => a.send(sealed.bytes), { compression });
    const POOL = 4096;
    const pool = randomBytes(size * POOL);
    const dataBefore = a.stats.datagramsSent;
    let sent = 0;
    const t0 = performance.now();
    // Messages at their rate: every ms, what is due by then (Node timers are 1 ms coarse).
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * perS));
        for (; sent < due; sent++) {
          driver.push(0, {
            header: {
              function: 'data',
              protocol: 'udp',
              sequence: sent,
              src: { address: '10.0.0.1', port: 1000 },
              dst: { address: '10.0.0.2', port: 2000 },
              status: 0,
              dataLength: size,
            },
            data: pool.subarray((sent % POOL) * size, ((sent % POOL) + 1) * size),
          });
        }
        if (sent >= total) {
          clearInterval(timer);
          driver.close();
          resolve();
        }
      }, 1);
    });
    await done;
    const datagrams = a.stats.datagramsSent - dataBefore;
    emit({
      messages: total,
      size,
      perS,
      compression,
      datagrams,
      datagramsPerMessage: datagrams / total,
      buffers: driver.stats.buffers,
      ackDatagrams: b.stats.datagramsSent,
    });
  } else {
    throw new Error(`unknown --mode ${mode}`);
  }
} finally {
  a.close();
  b.close();
  await sa.close();
  await sb.close();
  emuProc.stdin!.end();
}
