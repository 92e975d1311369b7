/**
 * The RTP monitor against a real sender: ffmpeg streams a short H.264
 * MPEG-TS-over-RTP clip (RFC 2250) to a loopback node:dgram socket; the test
 * drops every 20th datagram before the monitor sees it, and checks that the
 * monitor counts exactly those as lost, that every RTP payload is whole TS
 * packets, and that ffmpeg's RTCP (sent to its own port) parses.
 * Skips with a printed reason when ffmpeg is not installed (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMonitor, type TsMonitorLike } from '../../src/media/monitor.js';
import { parseRtp } from '../../src/wire/rtp.js';
import { parseRtcp } from '../../src/wire/rtcp.js';
import type { MediaAlarm } from '../../src/media/monitor-types.js';

const hasFfmpeg = spawnSync('ffmpeg', ['-hide_banner', '-version'], { stdio: 'ignore' }).status === 0;
const skip = hasFfmpeg ? false : 'ffmpeg is not installed (Debian package ffmpeg)';
if (skip) process.stdout.write(`# skipping the ffmpeg RTP test: ${skip}\n`);

async function bound(): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

test(
  'ffmpeg rtp_mpegts: every 20th datagram dropped before the monitor is counted lost, exactly; payloads are whole TS packets',
  { skip, timeout: 120_000 },
  async () => {
    const rtpSocket = await bound();
    const rtcpSocket = await bound();
    const { port } = rtpSocket.address();
    const rtcp: Buffer[] = [];
    rtcpSocket.on('message', (m) => rtcp.push(m));

    const tsPayloads: Uint8Array[] = [];
    const stubTs: TsMonitorLike = {
      push: () => assert.fail('the TS monitor of rtp-mpegts gets payloads, not datagrams'),
      pushPackets: (buf) => void tsPayloads.push(Uint8Array.from(buf)),
      tick: () => {},
      stats: () => ({ payload: 'mpegts', datagrams: 0, activeAlarms: [] }),
    };
    const alarms: MediaAlarm[] = [];
    const monitor = createMonitor('rtp-mpegts', { onAlarm: (a) => alarms.push(a) }, { createTsMonitor: () => stubTs });

    const all: Buffer[] = [];
    let dropped = 0;
    rtpSocket.on('message', (m) => {
      all.push(m);
      // Drop every 20th; the monitor sees the rest with their real arrival times.
      if (all.length % 20 === 0) dropped++;
      else monitor.push(m, performance.now());
    });
    const ticker = setInterval(() => monitor.tick(performance.now()), 100);

    const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=25', '-t', '2'];
    // Constant bitrate (HRD filler) so the 2 s clip makes ~120 datagrams whatever the picture.
    args.push('-c:v', 'libx264', '-g', '25', '-x264-params', 'nal-hrd=cbr', '-b:v', '600k', '-minrate', '600k', '-maxrate', '600k', '-bufsize', '300k');
    args.push('-f', 'rtp_mpegts', `rtp://127.0.0.1:${port}?rtcpport=${rtcpSocket.address().port}`);
    const ffmpeg = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    ffmpeg.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(ffmpeg, 'exit')) as [number | null];
    assert.equal(code, 0, `ffmpeg failed: ${stderr}`);
    await sleep(300); // the last datagrams in flight on loopback
    clearInterval(ticker);
    rtpSocket.close();
    rtcpSocket.close();

    // Loopback lost nothing: ffmpeg's own sequence numbers are contiguous in what arrived.
    const seqs = all.map((m) => {
      const r = parseRtp(m);
      assert.ok(r.ok, 'every datagram ffmpeg sent is RTP');
      return r.header.sequence;
    });
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], (seqs[i - 1]! + 1) & 0xffff, `datagram ${i} follows ${i - 1}`);
    // A drop at the very end is not a gap the receiver can see (no later packet); all.length % 20 === 0 would be one.
    const visibleDrops = dropped - (all.length % 20 === 0 ? 1 : 0);
    assert.ok(all.length >= 60 && visibleDrops >= 3, `ffmpeg sent ${all.length} datagrams, ${visibleDrops} dropped`);

    const s = monitor.stats();
    const r = s.rtp!;
    assert.equal(s.datagrams, all.length - dropped);
    assert.deepEqual(
      {
        lost: r.lost,
        expected: r.expected,
        malformed: r.malformed,
        reordered: r.reordered,
        duplicates: r.duplicates,
        payloadType: r.payloadType,
        rtcp: r.rtcp,
      },
      // Probation takes the first packet (A.1); the last was not dropped or is not expected.
      { lost: visibleDrops, expected: all.length - 1 - (all.length % 20 === 0 ? 1 : 0), malformed: 0, reordered: 0, duplicates: 0, payloadType: 33, rtcp: 0 },
    );
    assert.equal(tsPayloads.length, all.length - dropped);
    for (const p of tsPayloads) {
      assert.ok(p.length > 0 && p.length % 188 === 0, `an RTP payload of ${p.length} bytes`);
      for (let i = 0; i < p.length; i += 188) assert.equal(p[i], 0x47);
    }
    // One loss episode: raised once (and cleared at most once, if the last drop came over a second before the end).
    const loss = alarms.filter((a) => a.kind === 'rtpLoss').map((a) => a.state);
    assert.ok(loss.join() === 'raised' || loss.join() === 'raised,cleared', `rtpLoss alarms: ${loss.join()}`);
    process.stdout.write(
      `# ffmpeg sent ${all.length} datagrams and ${rtcp.length} RTCP; ${dropped} dropped, lost ${r.lost}, jitter ${r.jitterMs.toFixed(3)} ms\n`,
    );

    // ffmpeg's RTCP sender reports name the RTP stream's SSRC.
    const first = parseRtp(all[0]!);
    const ssrc = first.ok ? first.header.ssrc : -1;
    assert.ok(rtcp.length >= 1, 'ffmpeg sent RTCP');
    for (const m of rtcp) {
      const p = parseRtcp(m);
      assert.ok(p.ok, `RTCP from ffmpeg: ${JSON.stringify(p)}`);
      const sr = p.packets.find((x) => x.type === 'sr');
      if (sr) assert.equal(sr.ssrc, ssrc);
    }
  },
);
