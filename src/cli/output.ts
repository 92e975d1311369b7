/** Human and machine output for the CLI. Human text goes to stderr except final reports. */
import type { FlowStats } from '../dataplane/common/counters.js';
import { parseBitRateText } from '../policy/units.js';

/** Exit codes scripts can rely on (documented in README). */
export const EXIT = {
  OK: 0,
  /** Runtime failure: bind error, lost packets in the demo, an engine that died, ... */
  FAILURE: 1,
  /** Bad usage, invalid policy or config. */
  USAGE: 2,
  /** The requested tier is not available on this host. */
  UNAVAILABLE: 3,
} as const;

/** Plain-text table: numeric columns right-aligned, others left-aligned; no colours. */
export function table(header: string[], rows: (string | number)[][]): string {
  const body = rows.map((r) => r.map(String));
  const cells = [header, ...body];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => body.length > 0 && body.every((r) => /^-?[\d.,]*$/.test(r[i] ?? '')));
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** `batched engine` or, when the tier has no engine of its own, `batched engine (tier kernel)`: output names what ran. */
export function engineText(r: { engine: string; tier: string }): string {
  return r.engine === r.tier ? `${r.engine} engine` : `${r.engine} engine (tier ${r.tier})`;
}

/** Drops summed over every reason. */
export function totalDrops(s: FlowStats): number {
  return Object.values(s.drops).reduce((a, b) => a + b, 0);
}

/** `reason=n` for each non-zero drop reason, or `0`. */
function formatDrops(drops: Readonly<Record<string, number>>): string {
  return (
    Object.entries(drops)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || '0'
  );
}

/** Final or periodic counters of a set of flows, one row per flow and destination. */
export function statsTable(stats: readonly FlowStats[]): string {
  const rows: (string | number)[][] = [];
  for (const s of stats) {
    // Kernel tier: the host's backlog queue drops while the flow ran (host-wide, not this flow's alone).
    const host = s.hostDrops?.hostBacklog ? `hostBacklog=${s.hostDrops.hostBacklog} (host-wide)` : '';
    const drops = host ? [formatDrops(s.drops), host].filter((x) => x !== '0').join(' ') : formatDrops(s.drops);
    rows.push([`${s.name} (${s.type}, ${s.tier})`, s.listen, s.packetsIn, s.bytesIn, s.packetsOut, s.bytesOut, drops]);
    for (const d of s.destinations) {
      const suspended = d.suspendedUntil ? ` suspended until ${new Date(d.suspendedUntil).toISOString().slice(11, 19)}Z` : '';
      rows.push([`  -> ${d.to}`, '', '', '', d.packetsOut, d.bytesOut, formatDrops(d.drops) + (d.lastError ? ` (${d.lastError})` : '') + suspended]);
    }
  }
  return table(['flow', 'listen', 'pkts in', 'bytes in', 'pkts out', 'bytes out', 'drops'], rows);
}

/**
 * Resolves once everything written to `stream` so far has been handed to
 * the OS, or the stream has failed (a reader that went away). Writes are
 * queued in order, so an empty write's callback comes after them all.
 */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableFinished || stream.writableLength === 0) return resolve();
    const done = () => {
      stream.off('error', done);
      resolve();
    };
    // EPIPE (`sluice status --json | head -c 1`) is the reader's choice, not a crash.
    stream.on('error', done);
    stream.write('', done);
  });
}

/**
 * Ends the process with `code` once stdout and stderr have drained. Output
 * to a pipe or socket is asynchronous: the OS takes at most a pipe's
 * buffer (64 KiB) at once and Node queues the rest, which `process.exit`
 * would throw away (a `sluice status --json` piped to another program was
 * cut at 64 KiB). Every command ends through here (main.ts, bin/sluice.js).
 */
export async function exitAfterOutput(code: number): Promise<never> {
  process.exitCode = code;
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

/** Writes one JSON event line to stdout (the --json contract). */
export function emitJson(event: string, body: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ event, ...body })}\n`);
}

/** Parses `20M`, `2.5m`, `500k`, `1000000` (bits per second). */
export function parseBitrate(text: string): number | undefined {
  const v = parseBitRateText(text);
  if (v === undefined) return undefined;
  // 400 digits read as Infinity: not a rate; below 1 bit/s would round to 0.
  const bits = Math.round(v);
  return bits >= 1 && Number.isFinite(bits) ? bits : undefined;
}

/** Parses `10`, `10s`, `1.5s`, `500ms`, `2m` into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text.trim());
  if (!m) return undefined;
  const v = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  // At most a day: longer overflows Node's timers (which then fire at once).
  return v > 0 && v <= 86_400_000 ? v : undefined;
}
