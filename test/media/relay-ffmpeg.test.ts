/**
 * A live relay with real clients: ffmpeg sends H.264/AAC MPEG-TS over RTP,
 * a lossy hop before the relay drops every 25th datagram, Sluice replicates
 * the stream (payload rtp-mpegts) to an ffmpeg receiver and a plain socket,
 * and then: the monitor counted exactly the datagrams the hop dropped, found
 * the H.264 and AAC PIDs, and ffprobe finds both streams in the receiver's
 * capture. On the portable and batched tiers (the kernel tier's monitor runs
 * in test/conformance inside a namespace). Skips with a printed reason when
 * ffmpeg is not installed (.ci/run installs it).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice, type TierName } from '../../src/index.js';
import { probeBatchedIo } from '../../src/sys/probe.js';

const hasFfmpeg = ['ffmpeg', 'ffprobe'].every((p) => spawnSync(p, ['-hide_banner', '-version'], { stdio: 'ignore' }).status === 0);
const skip = hasFfmpeg ? false : 'ffmpeg/ffprobe are not installed (Debian package ffmpeg)';
if (skip) process.stdout.write(`# skipping the ffmpeg relay tests: ${skip}\n`);

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

async function udp(port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  s.bind(port, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

/** A free port P with P+1 free as well (ffmpeg's rtp:// input binds both). */
async function freeRtpPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const a = await udp();
    const p = a.address().port;
    try {
      const b = await udp(p + 1);
      a.close();
      b.close();
      return p;
    } catch {
      a.close();
    }
  }
  throw new Error('no free port pair');
}

async function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await once(child, 'exit');
  clearTimeout(timer);
}

/** The distinct codecs ffprobe finds in a capture. */
function probeCodecs(file: string): string[] {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  return [...new Set(r.stdout.split('\n').filter(Boolean))].sort();
}

/** Sequence numbers the lossy hop let through: the monitor must count every gap between the first and the last, and nothing else. */
function gapsBetween(seqs: readonly number[]): number {
  let ext = seqs[0]!;
  const seen = new Set<number>([ext]);
  let lo = ext;
  let hi = ext;
  for (const s of seqs.slice(1)) {
    let d = (s - (ext & 0xffff) + 0x10000) & 0xffff;
    if (d > 0x8000) d -= 0x10000;
    ext += d;
    seen.add(ext);
    lo = Math.min(lo, ext);
    hi = Math.max(hi, ext);
  }
  return hi - lo + 1 - seen.size;
}

const tiers: { tier: TierName; skip: string | false }[] = [
  { tier: 'portable', skip },
  { tier: 'batched', skip: skip || (probeBatchedIo().available ? false : `batched tier unavailable: ${probeBatchedIo().reason}`) },
];

describe('live relay of ffmpeg RTP/MPEG-TS with upstream loss', { skip, timeout: 300_000 }, () => {
  let dir = '';
  let clip = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ffmpeg-'));
    clip = join(dir, 'clip.ts');
    // 4 s of H.264 (GOP 1 s) and AAC at a constant mux rate, as an IPTV head-end sends.
    run('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440'],
      ...['-t', '4', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-b:v', '600k', '-c:a', 'aac', '-b:a', '64k'],
      ...['-f', 'mpegts', '-muxrate', '1000000', clip],
    ]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const { tier, skip: tierSkip } of tiers) {
    test(`${tier} tier: loss counted exactly, H.264 and AAC found, the receiver's capture plays`, { skip: tierSkip }, async () => {
      const sluice = await Sluice.open({ tier });
      const hop = await udp();
      const plain = await udp();
      const children: ChildProcess[] = [];
      try {
        const rxPort = await freeRtpPort();
        const flow = await sluice.apply({
          type: 'replicate',
          listen: 'udp://127.0.0.1:0',
          allow: '127.0.0.1',
          to: [`udp://127.0.0.1:${rxPort}`, `udp://127.0.0.1:${plain.address().port}`],
          payload: 'rtp-mpegts',
        });
        let plainGot = 0;
        plain.on('message', () => plainGot++);
        // The lossy hop: every 25th datagram from ffmpeg never reaches Sluice.
        const forwarded: number[] = [];
        let n = 0;
        hop.on('message', (m) => {
          if (++n % 25 === 0) return;
          forwarded.push(m.readUInt16BE(2));
          hop.send(m, flow.listen.port, '127.0.0.1');
        });
        const capture = join(dir, `${tier}.ts`);
        const receiver = spawn(
          'ffmpeg',
          ['-hide_banner', '-loglevel', 'error', '-y', '-i', `rtp://127.0.0.1:${rxPort}`, '-c', 'copy', '-f', 'mpegts', capture],
          { stdio: ['pipe', 'ignore', 'pipe'] },
        );
        children.push(receiver);
        await sleep(1000); // the receiver binds its ports
        const sender = spawn(
          'ffmpeg',
          ['-hide_banner', '-loglevel', 'error', '-re', '-i', clip, '-c', 'copy', '-f', 'rtp_mpegts', `rtp://127.0.0.1:${hop.address().port}`],
          {
            stdio: 'ignore',
          },
        );
        children.push(sender);
        await exited(sender, 60_000);
        assert.equal(sender.exitCode, 0, 'the sender ran to the end');
        await sleep(500);
        receiver.stdin?.end('q');
        await exited(receiver, 10_000);

        const deadline = Date.now() + 10_000;
        while (flow.stats().media?.datagrams !== forwarded.length && Date.now() < deadline) await sleep(20);
        const st = flow.stats();
        const media = st.media!;
        assert.equal(media.datagrams, forwarded.length, 'the monitor read one copy of every relayed datagram');
        assert.ok(n >= 100, `ffmpeg sent ${n} datagrams`);
        assert.equal(media.rtp?.lost, gapsBetween(forwarded), 'every datagram the hop dropped, and nothing else, is lost');
        assert.ok((media.rtp?.lost ?? 0) >= 3);
        const kinds = media.ts?.pids.map((p) => p.kind) ?? [];
        assert.ok(kinds.includes('H.264') && kinds.includes('AAC'), `PIDs: ${kinds.join(', ')}`);
        assert.ok((media.ts?.ccError ?? 0) > 0, 'the lost datagrams are continuity errors in the TS too');
        assert.equal(plainGot, forwarded.length, 'the other subscriber got every relayed datagram');
        assert.deepEqual(probeCodecs(capture), ['aac', 'h264'], "ffprobe finds both streams in the receiver's capture");
        await flow.remove();
      } finally {
        for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
        hop.close();
        plain.close();
        await sluice.close();
      }
    });
  }
});
