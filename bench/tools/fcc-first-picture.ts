/**
 * Time to the first decoded picture of a late ffmpeg subscriber, with and
 * without fast channel change, on each tier (issue 20's bench figure).
 * ffmpeg sends live H.264 in MPEG-TS (2 s GOP, 25 fps) into a replicate
 * flow with `fastChannelChange`; every `--gap-ms` two ffmpeg receivers are
 * added at the same moment, one with flow.addSubscriber (the cache), one
 * with flow.update (live), at positions spread over the GOP. A receiver's
 * exit after `-frames:v 1` is its first picture.
 *
 *   node --import tsx bench/tools/fcc-first-picture.ts [--joins 10] [--tiers portable,batched,kernel]
 *
 * Prints one JSON line per tier: median and p90 (ms) with and without the
 * cache, and the decoder error lines per join.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sluice, type TierName } from '../../src/index.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const JOINS = Number(opt('joins', '10'));
const TIERS = opt('tiers', 'portable,batched,kernel').split(',') as TierName[];
const RX = ['-hide_banner', '-loglevel', 'error', '-probesize', '32', '-analyzeduration', '1', '-threads', '1'];

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function bound(port: number): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (let i = 0; i < 750 && !readFileSync('/proc/net/udp', 'utf8').includes(hex); i++) await sleep(20);
}

function receiver(port: number): Promise<{ at: number; errors: number }> {
  const child = spawn('ffmpeg', [...RX, '-i', `udp://127.0.0.1:${port}`, '-frames:v', '1', '-f', 'null', '-'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  return new Promise((resolve) =>
    child.on('exit', () => {
      clearTimeout(killer);
      resolve({ at: performance.now(), errors: stderr.split('\n').filter((l) => /non-existing PPS|no frame|decode_slice_header/.test(l)).length });
    }),
  );
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
};

for (const tier of TIERS) {
  const sluice = await Sluice.open({ tier });
  const flow = await sluice.apply({ type: 'replicate', listen: 'udp://127.0.0.1:0', to: [], allow: 'any', payload: 'mpegts', fastChannelChange: {} });
  const sender = spawn(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=25'],
      ...['-c:v', 'libx264', '-g', '50', '-b:v', '1M', '-f', 'mpegts', `udp://127.0.0.1:${flow.listen.port}?pkt_size=1316`],
    ],
    { stdio: 'ignore' },
  );
  const fast: number[] = [];
  const live: number[] = [];
  const liveErrors: number[] = [];
  const fastErrors: number[] = [];
  try {
    await sleep(2500);
    for (let j = 0; j < JOINS; j++) {
      const [p1, p2] = [await freePort(), await freePort()];
      const r1 = receiver(p1);
      const r2 = receiver(p2);
      await Promise.all([bound(p1), bound(p2)]);
      const t0 = performance.now();
      // The live one first: the update replaces the (empty) list, the fast join then edits the list as it is.
      const plain = flow.update({ to: [`udp://127.0.0.1:${p2}`] });
      await Promise.all([flow.addSubscriber(`udp://127.0.0.1:${p1}`), plain]);
      const [a, b] = await Promise.all([r1, r2]);
      fast.push(a.at - t0);
      live.push(b.at - t0);
      liveErrors.push(b.errors);
      fastErrors.push(a.errors);
      await flow.update({ to: [] });
      // Spread the joins over the 2 s GOP.
      await sleep(700 + ((j * 370) % 1000));
    }
    const stats = flow.stats().fastChannelChange;
    console.log(
      JSON.stringify({
        tier,
        joins: JOINS,
        withCacheMs: { p50: pct(fast, 0.5), p90: pct(fast, 0.9) },
        withoutCacheMs: { p50: pct(live, 0.5), p90: pct(live, 0.9) },
        decoderErrorLinesWithout: { p50: pct(liveErrors, 0.5), max: Math.max(...liveErrors) },
        decoderErrorLinesWith: { max: Math.max(...fastErrors) },
        fastChannelChange: stats,
      }),
    );
  } finally {
    sender.kill('SIGKILL');
    await sluice.close();
  }
}
