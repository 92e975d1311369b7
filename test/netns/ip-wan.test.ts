/**
 * The IP-level WAN emulator in a real three-site topology (root only):
 * RTT through it is the configured delay, a 50 Mbit/s cap delivers
 * 50 Mbit/s, 1 % loss drops 1 % of packets, TCP crosses it in MTU-sized
 * packets (offloads really off), and nothing is left behind.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { listTestNamespaces, rootSkipReason } from '../helpers/netns.js';
import { WAN_ADDR, createWanTopology, type WanTopology } from '../helpers/wan-topology.js';

const skip = rootSkipReason();
if (skip) process.stdout.write(`# skipping ip-wan namespace tests: ${skip}\n`);

const LOAD = 'bench/tools/wan-load.ts';

describe('IP-level WAN emulator in namespaces', { skip }, () => {
  let wt: WanTopology;
  let ours: string[] = [];

  before(async () => {
    wt = await createWanTopology();
    ours = wt.topo.realNames;
  });

  after(async () => {
    await wt?.destroy();
    const left = listTestNamespaces().filter((n) => ours.includes(n));
    assert.deepEqual(left, [], 'namespaces left behind');
  });

  test('RTT through the emulator is the configured 2 x 50 ms', async () => {
    const emu = await wt.startEmulator({ common: { delayMs: 50, rateBps: 50e6 } });
    const echo = wt.topo.runNode('server', LOAD, ['udp-echo', '--port', '7000'], { stdin: 'pipe' });
    try {
      await echo.waitForLine(/ready/);
      const ping = wt.topo.runNode('client', LOAD, ['udp-ping', '--to', `${WAN_ADDR.server}:7000`, '--count', '50', '--interval-ms', '20']);
      await ping.waitExit(30_000);
      const r = ping.jsonLines<{ n: number; p50: number; min: number; max: number }>()[0]!;
      process.stdout.write(`# RTT p50 ${r.p50.toFixed(2)} ms, min ${r.min.toFixed(2)}, max ${r.max.toFixed(2)} (configured 100)\n`);
      assert.equal(r.n, 50);
      assert.ok(r.min >= 100, `no probe may beat the configured delay (min ${r.min})`);
      assert.ok(r.p50 < 103, `median RTT ${r.p50} ms should be within 3 ms of 100`);
    } finally {
      echo.endInput();
      await echo.stop();
      const s = await emu.stop();
      if (s) process.stdout.write(`# emulator lateness mean ${s.aToB.latenessMeanMs.toFixed(3)} ms, max ${s.aToB.latenessMaxMs.toFixed(3)} ms\n`);
    }
  });

  test('a 50 Mbit/s cap delivers 50 Mbit/s of an 80 Mbit/s offer', async () => {
    const emu = await wt.startEmulator({ common: { delayMs: 10, rateBps: 50e6 } });
    const sink = wt.topo.runNode('server', LOAD, ['udp-sink', '--port', '7001'], { stdin: 'pipe' });
    try {
      await sink.waitForLine(/ready/);
      const blast = wt.topo.runNode('client', LOAD, ['udp-blast', '--to', `${WAN_ADDR.server}:7001`, '--rate-mbit', '80', '--seconds', '4']);
      await blast.waitExit(30_000);
      const line = sink.nextLine();
      sink.writeLine('stats');
      const got = JSON.parse(await line) as { packets: number; ipBytes: number; spanMs: number };
      const mbit = (got.ipBytes * 8) / (got.spanMs * 1000);
      const s = (await emu.stats()).aToB;
      process.stdout.write(`# delivered ${mbit.toFixed(2)} Mbit/s of IP packets (cap 50); emulator queue drops ${s.dropQueue} of ${s.rxFrames}, lateness mean ${s.latenessMeanMs.toFixed(3)} ms, max ${s.latenessMaxMs.toFixed(3)} ms\n`);
      assert.ok(mbit > 47.5 && mbit < 51, `delivered ${mbit} Mbit/s, want 50 ± 5 % (and never much above)`);
      assert.ok(s.dropQueue > 0, 'an 80 Mbit/s offer must overflow the 50 Mbit/s queue');
      assert.equal(s.kernelDrops, 0, 'the emulator must keep up: no kernel drops on its sockets');
    } finally {
      sink.endInput();
      await sink.stop();
      await emu.stop();
    }
  });

  test('1 % random loss drops about 1 % of packets', async () => {
    const emu = await wt.startEmulator({ common: { delayMs: 5, rateBps: 50e6, loss: 0.01 }, seed: 7 });
    const sink = wt.topo.runNode('server', LOAD, ['udp-sink', '--port', '7002'], { stdin: 'pipe' });
    try {
      await sink.waitForLine(/ready/);
      // 200-byte datagrams at 16 Mbit/s for 3 s: ~21 000 packets, well under the cap (no queue drops).
      const blast = wt.topo.runNode('client', LOAD, ['udp-blast', '--to', `${WAN_ADDR.server}:7002`, '--rate-mbit', '16', '--seconds', '3', '--size', '200']);
      await blast.waitExit(30_000);
      const sent = blast.jsonLines<{ sent: number }>()[0]!.sent;
      const line = sink.nextLine();
      sink.writeLine('stats');
      const got = JSON.parse(await line) as { packets: number };
      const s = (await emu.stats()).aToB;
      const lost = (sent - got.packets) / sent;
      process.stdout.write(`# sent ${sent}, received ${got.packets}: ${(lost * 100).toFixed(3)} % lost; emulator dropped ${s.dropLoss} (loss), ${s.dropQueue} (queue)\n`);
      assert.equal(s.dropQueue, 0);
      assert.equal(sent - got.packets, s.dropLoss, 'every missing packet is one the emulator dropped on purpose');
      assert.ok(lost > 0.008 && lost < 0.012, `loss ${lost} should be 1 % ± 0.2 (≈ 3 sigma at this count)`);
    } finally {
      sink.endInput();
      await sink.stop();
      await emu.stop();
    }
  });

  test('TCP crosses the emulator in MTU-sized packets', async () => {
    const emu = await wt.startEmulator({ common: { delayMs: 10, rateBps: 50e6 } });
    const sink = wt.topo.runNode('server', LOAD, ['tcp-sink', '--port', '7003'], { stdin: 'pipe' });
    try {
      await sink.waitForLine(/ready/);
      const send = wt.topo.runNode('client', LOAD, ['tcp-send', '--to', `${WAN_ADDR.server}:7003`, '--seconds', '2', '--max-bytes', String(20 << 20), '--cc', 'cubic']);
      await send.waitExit(30_000);
      const done = send.jsonLines<{ cc: string; written: number }>()[0]!;
      await sink.waitForLine(/"event":"conn"/, { timeoutMs: 10_000 });
      const conn = sink.jsonLines<{ event: string; bytes: number }>().find((l) => l.event === 'conn')!;
      const s = (await emu.stats()).aToB;
      process.stdout.write(`# TCP (${done.cc}): ${conn.bytes} bytes received; largest IP packet at the emulator ${s.maxIpBytes} B, GSO frames ${s.gso}, oversize ${s.oversize}\n`);
      assert.equal(done.cc, 'cubic', 'the congestion control asked for is the one the connection uses');
      assert.ok(conn.bytes > 1 << 20, 'TCP must get through');
      assert.ok(s.maxIpBytes <= 1500, `largest packet ${s.maxIpBytes} exceeds the 1500-byte MTU`);
      assert.equal(s.gso, 0);
      assert.equal(s.oversize, 0);
    } finally {
      sink.endInput();
      await sink.stop();
      await emu.stop();
    }
  });
});
