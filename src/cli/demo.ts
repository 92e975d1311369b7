/**
 * `sluice demo`: runs the stream demo and prints live lines and a summary.
 * The live line is redrawn in place on a terminal, a line a second
 * otherwise. SIGINT or SIGTERM ends the stream early; the subscribers
 * still drain, the summary counts what was sent, and the exit code is 0
 * unless something was lost.
 */
import { probeTiers } from '../dataplane/tiers.js';
import { Sluice } from '../control/sluice.js';
import { NotSupportedError } from '../errors.js';
import { TIER_NAMES, type TierName } from '../policy/schema.js';
import { runStreamDemo, type DemoProgress } from './demo-run.js';
import { EXIT, emitJson, table, totalDrops } from './output.js';
import { listenForStop, type StopListener } from './signals.js';
import { durationText } from './progress.js';

export interface DemoCliOptions {
  subscribers: number;
  /** A synthetic stream at this rate instead of the clip. */
  bitrateBps?: number;
  /** One more destination for a player, e.g. udp://127.0.0.1:5000. */
  watch?: string;
  durationMs: number;
  /** `auto`, `all`, or a comma-separated list of tiers. */
  tiers: string;
  json: boolean;
}

async function resolveTiers(spec: string): Promise<TierName[]> {
  if (spec === 'auto') {
    const s = await Sluice.open({ tier: 'auto' });
    const tier = s.tier;
    await s.close();
    return [tier];
  }
  const probes = await probeTiers();
  if (spec === 'all') return probes.filter((p) => p.available).map((p) => p.tier);
  const wanted = spec.split(',').map((t) => t.trim());
  for (const t of wanted) {
    const p = probes.find((x) => x.tier === t);
    if (!p) throw new NotSupportedError(`unknown tier '${t}'`, `use auto, all, or a list of ${TIER_NAMES.join(', ')}`);
    if (!p.available) throw new NotSupportedError(`tier '${t}' is unavailable`, p.detail);
  }
  return wanted as TierName[];
}

const mbit = (bps: number) => `${(bps / 1e6).toFixed(2)} Mbit/s`;

function liveLine(p: DemoProgress, durationMs: number): string {
  const parts = p.tiers.map((t) => `${t.tier}: in ${t.relay.packetsIn} out ${t.relay.packetsOut} recv ${t.received} lost ${t.lost} cc-err ${t.ccErrors}`);
  const left = durationText(durationMs - p.elapsedMs);
  return `[${(p.elapsedMs / 1000).toFixed(0).padStart(3)}s] ${mbit(p.rateBps)} ${Math.round(p.packetsPerSecond)} pkt/s, ETA ${left} | ${parts.join(' | ')}`;
}

export async function runDemo(opts: DemoCliOptions): Promise<number> {
  // From the start: a Ctrl-C while the tiers are probed stops cleanly too.
  const stop = listenForStop();
  try {
    return await demo(opts, stop);
  } finally {
    stop.dispose();
  }
}

async function demo(opts: DemoCliOptions, stop: StopListener): Promise<number> {
  const tiers = await resolveTiers(opts.tiers);
  if (!opts.json) {
    const source =
      opts.bitrateBps === undefined
        ? 'a 10 s H.264/AAC MPEG-TS clip (media/demo-clip.m2t), looped and paced by its PCRs,'
        : `${mbit(opts.bitrateBps)} synthetic MPEG-TS (7 TS packets per datagram)`;
    process.stderr.write(
      `sluice demo: ${source} for ${opts.durationMs / 1000} s, origin -> replicate -> ${opts.subscribers} subscribers, tier(s): ${tiers.join(', ')}\n` +
        (opts.watch
          ? `sluice demo: also to ${opts.watch} — watch it: ffplay ${opts.watch.replace(/^udp:\/\/[^:]+:/, 'udp://127.0.0.1:')} (or VLC: Media > Open Network Stream)\n`
          : opts.bitrateBps === undefined
            ? 'sluice demo: to watch it, add --watch udp://127.0.0.1:5000 and run: ffplay udp://127.0.0.1:5000\n'
            : ''),
    );
  }
  // On a terminal the live line is redrawn in place (never wider than the terminal: a wrapped line cannot be).
  const tty = !opts.json && process.stderr.isTTY === true;
  let drawn = false;
  const live = (p: DemoProgress) => {
    if (opts.json) return emitJson('progress', { t: Date.now(), ...p });
    const line = liveLine(p, opts.durationMs);
    if (!tty) return void process.stderr.write(`${line}\n`);
    process.stderr.write(`\r\x1b[2K${line.slice(0, Math.max(1, process.stderr.columns - 1))}`);
    drawn = true;
  };
  let result: Awaited<ReturnType<typeof runStreamDemo>>;
  try {
    result = await runStreamDemo(
      {
        subscribers: opts.subscribers,
        ...(opts.bitrateBps !== undefined ? { bitrateBps: opts.bitrateBps } : {}),
        ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
        durationMs: opts.durationMs,
        tiers,
        stop: stop.signal,
      },
      live,
    );
  } finally {
    if (drawn) process.stderr.write('\r\x1b[2K');
  }
  const interrupted = result.interrupted ? stop.received : undefined;
  if (opts.json) {
    emitJson('summary', { ...result, ...(interrupted ? { interrupted } : {}) });
  } else {
    const rows = result.tiers.map((t) => [t.tier, t.subscribers, t.sent, t.sent * t.subscribers, t.received, t.lost, t.ccErrors, totalDrops(t.relay)]);
    process.stdout.write(
      `\n${table(['tier', 'subscribers', 'sent', 'expected', 'received', 'lost', 'cc errors', 'relay drops'], rows)}\n` +
        `origin: ${mbit(result.rateBps)}, ${Math.round(result.packetsPerSecond)} datagrams/s over ${(result.elapsedMs / 1000).toFixed(1)} s` +
        `${interrupted ? ` (interrupted by ${interrupted}; the stream was to last ${opts.durationMs / 1000} s)` : ''}\n` +
        `${result.ok ? 'PASS: every subscriber received every datagram, continuity intact' : 'FAIL: packets were lost or continuity broken'}\n`,
    );
  }
  return result.ok ? EXIT.OK : EXIT.FAILURE;
}
