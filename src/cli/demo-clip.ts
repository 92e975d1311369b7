/**
 * The demo's real-media origin: media/demo-clip.m2t (H.264 + AAC in
 * MPEG-TS, made by media/make-demo-clip.sh), marked loopable
 * (media/ts-loop.ts: discontinuity_indicator on each PID's first packet)
 * and streamed into every tier's flow by a stream scheduler, looped and
 * paced by its own PCRs, until the demo's time is up or it is stopped.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sluice } from '../control/sluice.js';
import type { Flow } from '../control/flow.js';
import { markLoopStart } from '../media/ts-loop.js';

/** The clip, from src/cli or dist/cli alike. */
export const DEMO_CLIP = fileURLToPath(new URL('../../media/demo-clip.m2t', import.meta.url));
/** 7 TS packets per datagram, the usual TS-over-UDP packing. */
const PACKET_SIZE = 1316;

/** What the origin needs of a tier's run: where its flow listens, and where to count what was sent. */
export interface ClipTarget {
  readonly tier: string;
  readonly sluice: Sluice;
  readonly flow: Flow;
  sent: number;
}

export interface ClipOriginOptions {
  runs: ClipTarget[];
  durationMs: number;
  stopped: () => boolean;
  /** About once a second: elapsed ms, origin bits/s and datagrams/s (per tier) over the last interval. */
  onProgress: (elapsedMs: number, rateBps: number, packetsPerSecond: number) => void;
}

/** Streams the clip until the time is up or `stopped()`; resolves with the time taken and the datagrams sent per tier. */
export async function runClipOrigin(o: ClipOriginOptions): Promise<{ elapsedMs: number; datagrams: number }> {
  const clip = markLoopStart(readFileSync(DEMO_CLIP));
  const sched = o.runs[0]!.sluice.streams({ packetSize: PACKET_SIZE });
  try {
    const handles = o.runs.map((r) => sched.add({ id: r.tier, to: `udp://127.0.0.1:${r.flow.listen.port}`, data: clip, pace: 'pcr', loop: true }));
    const t0 = performance.now();
    let last = { t: 0, packets: 0, bytes: 0 };
    for (;;) {
      await sleep(50);
      const elapsed = performance.now() - t0;
      handles.forEach((h, i) => (o.runs[i]!.sent = h.stats().packets));
      if (elapsed >= o.durationMs || o.stopped()) break;
      if (elapsed - last.t >= 1000) {
        const s = handles[0]!.stats();
        const dt = (elapsed - last.t) / 1000;
        o.onProgress(elapsed, ((s.bytes - last.bytes) * 8) / dt, (s.packets - last.packets) / dt);
        last = { t: elapsed, packets: s.packets, bytes: s.bytes };
      }
    }
    for (const h of handles) h.remove();
    const finals = await Promise.all(handles.map((h) => h.done));
    finals.forEach((f, i) => (o.runs[i]!.sent = f.packets));
    return { elapsedMs: performance.now() - t0, datagrams: finals[0]!.packets };
  } finally {
    await sched.close();
  }
}
