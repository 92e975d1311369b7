/**
 * Fast channel change with real clients, every tier: ffmpeg sends live
 * H.264 in MPEG-TS (2 s GOP) into a replicate flow with
 * `fastChannelChange`; mid-GOP a late ffmpeg subscriber is added and must
 * decode its first picture with no "non-existing PPS" errors. The time to
 * that picture is printed (a bench figure, not a bound).
 * Through the public API: Sluice.apply, flow.addSubscriber (the flow's
 * monitor tap feeds the cache).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { probeTiers } from '../../src/dataplane/tiers.js';
import { Sluice } from '../../src/index.js';

/** Probe only what the first picture needs, so its exit measures the picture, not ffmpeg's default 5 s analysis. */
const RX_ARGS = '-probesize 32 -analyzeduration 1 -threads 1';
const ffmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const probes = await probeTiers();

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once a UDP socket is bound to `port` (ffmpeg opened its input), read from /proc/net/udp. */
async function boundPort(port: number): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (readFileSync('/proc/net/udp', 'utf8').includes(hex)) return;
    await sleep(20);
  }
  throw new Error(`nothing bound udp port ${port} within 15 s`);
}

/** Runs an ffmpeg receiver until it decoded one picture; resolves with when it did and what it logged. */
function receiver(port: number): { ready: Promise<void>; done: Promise<{ code: number | null; stderr: string; at: number }> } {
  const args = (process.env.FCC_RX_ARGS ?? RX_ARGS).split(' ');
  const child = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args, '-i', `udp://127.0.0.1:${port}`, '-frames:v', '1', '-f', 'null', '-'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const done = new Promise<{ code: number | null; stderr: string; at: number }>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stderr, at: performance.now() });
    }),
  );
  return { ready: boundPort(port), done };
}

for (const tier of ['portable', 'batched', 'kernel'] as const) {
  const probe = probes.find((p) => p.tier === tier);
  const skip = !ffmpeg ? 'ffmpeg is not installed' : probe?.available ? false : `tier ${tier} unavailable here: ${probe?.detail ?? 'not probed'}`;
  test(`${tier}: a late ffmpeg subscriber decodes its first picture from the cache, with no missing-PPS errors`, { skip, timeout: 60_000 }, async () => {
    const sluice = await Sluice.open({ tier });
    let sender: ReturnType<typeof spawn> | undefined;
    try {
      const flow = await sluice.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [], allow: 'any', payload: 'mpegts', fastChannelChange: {} });
      const entry = { listen: flow.listen };
      sender = spawn(
        'ffmpeg',
        [
          ...['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-t', '12'],
          ...['-c:v', 'libx264', '-g', '50', '-f', 'mpegts', `udp://127.0.0.1:${entry.listen.port}?pkt_size=1316`],
        ],
        { stdio: 'ignore' },
      );
      // Into the second group of pictures, away from its keyframe.
      await sleep(3000);
      const port = await freePort();
      const plainPort = await freePort();
      const rx = receiver(port);
      // For comparison (printed, not asserted): a subscriber added at the same moment without the cache.
      const plain = receiver(plainPort);
      await Promise.all([rx.ready, plain.ready]);
      const t0 = performance.now();
      // flow.update joins live (only addSubscriber uses the cache); the list was empty.
      const plainAdded = flow.update({ to: [`udp://127.0.0.1:${plainPort}`] });
      await flow.addSubscriber(`udp://127.0.0.1:${port}`);
      await plainAdded;
      const joined = performance.now();
      const [out, without] = await Promise.all([rx.done, plain.done]);
      const stats = flow.stats();
      const errors = (text: string): number => text.split('\n').filter((l) => /non-existing PPS|no frame|decode_slice_header/.test(l)).length;
      console.log(
        `${tier}: first picture ${(out.at - t0).toFixed(0)} ms after addSubscriber (handover at ${(joined - t0).toFixed(0)} ms), ` +
          `without the cache ${(without.at - t0).toFixed(0)} ms with ${errors(without.stderr)} decoder error lines; ` +
          `fast channel change ${JSON.stringify(stats.fastChannelChange)}`,
      );
      assert.equal(out.code, 0, out.stderr);
      assert.doesNotMatch(out.stderr, /non-existing PPS|no frame/);
      assert.equal(stats.fastChannelChange?.fastJoins, 1);
      assert.ok(
        stats.destinations.some((d) => d.to === `udp://127.0.0.1:${port}`),
        'the plane serves the subscriber',
      );
      await flow.remove();
    } finally {
      sender?.kill('SIGKILL');
      await sluice.close();
    }
  });
}
