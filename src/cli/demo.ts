/** `sluice demo`: runs the stream demo and prints live lines and a summary. */
import { probeTiers } from '../dataplane/tiers.js';
import { Sluice } from '../control/sluice.js';
import { NotSupportedError } from '../errors.js';
import { TIER_NAMES, type TierName } from '../policy/schema.js';
import { runStreamDemo, type DemoProgress } from './demo-run.js';
import { EXIT, emitJson, table, totalDrops } from './output.js';

export interface DemoCliOptions {
  subscribers: number;
  bitrateBps: number;
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

function liveLine(p: DemoProgress): string {
  const parts = p.tiers.map((t) => `${t.tier}: in ${t.relay.packetsIn} out ${t.relay.packetsOut} recv ${t.received} lost ${t.lost} cc-err ${t.ccErrors}`);
  return `[${(p.elapsedMs / 1000).toFixed(0).padStart(3)}s] ${mbit(p.rateBps)} ${Math.round(p.packetsPerSecond)} pkt/s | ${parts.join(' | ')}`;
}

export async function runDemo(opts: DemoCliOptions): Promise<number> {
  const tiers = await resolveTiers(opts.tiers);
  if (!opts.json) {
    process.stderr.write(
      `sluice demo: ${mbit(opts.bitrateBps)} synthetic MPEG-TS (7 TS packets per datagram) for ${opts.durationMs / 1000} s, ` +
        `origin -> replicate -> ${opts.subscribers} subscribers, tier(s): ${tiers.join(', ')}\n`,
    );
  }
  const result = await runStreamDemo({ subscribers: opts.subscribers, bitrateBps: opts.bitrateBps, durationMs: opts.durationMs, tiers }, (p) =>
    opts.json ? emitJson('progress', { ...p }) : process.stderr.write(`${liveLine(p)}\n`),
  );
  if (opts.json) {
    emitJson('summary', { ...result });
  } else {
    const rows = result.tiers.map((t) => [t.tier, t.subscribers, t.sent, t.sent * t.subscribers, t.received, t.lost, t.ccErrors, totalDrops(t.relay)]);
    process.stdout.write(
      `\n${table(['tier', 'subscribers', 'sent', 'expected', 'received', 'lost', 'cc errors', 'relay drops'], rows)}\n` +
        `origin: ${mbit(result.rateBps)}, ${Math.round(result.packetsPerSecond)} datagrams/s over ${(result.elapsedMs / 1000).toFixed(1)} s\n` +
        `${result.ok ? 'PASS: every subscriber received every datagram, continuity intact' : 'FAIL: packets were lost or continuity broken'}\n`,
    );
  }
  return result.ok ? EXIT.OK : EXIT.FAILURE;
}
