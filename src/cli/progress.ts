/**
 * Live progress of long one-shot work (`sluice write`, `sluice send`): on
 * a terminal, one line on stderr redrawn a few times a second; otherwise a
 * timestamped line on stderr every few seconds (a log or a pipe gets no
 * carriage returns); with `--json`, `progress` events on stdout at the
 * same pace. The work is read, never driven: `read()` returns counters the
 * command keeps anyway.
 */
import { Option, InvalidArgumentError } from 'commander';
import { localTimestamp } from './log-lines.js';
import { emitJson } from './output.js';
import { mbitText, perSecondText } from './flow-rates.js';

export interface ProgressSnapshot {
  /** Units handed to the kernel so far (sent, or dropped as too late: no longer pending). */
  readonly sent: number;
  readonly total: number;
  readonly unit: 'packets' | 'messages';
  /** Payload bytes sent so far. */
  readonly bytes: number;
  readonly totalBytes?: number;
  /** Time left when the work knows it (a schedule, a bitrate); otherwise estimated from the average rate. */
  readonly etaMs?: number;
}

/** Redraws per second on a terminal: 4. */
export const TTY_REDRAW_MS = 250;
/** Default period of plain lines and JSON events, seconds. */
export const DEFAULT_PROGRESS_INTERVAL_S = 2;
/** Rates on a terminal are over about this long (a quarter-second's rate jitters). */
const RATE_WINDOW_MS = 2000;

/** `--progress-interval`, shared by the one-shot commands. */
export function progressIntervalOption(): Option {
  return new Option(
    '--progress-interval <seconds>',
    `seconds between progress lines when stderr is not a terminal, or progress events with --json (default ${DEFAULT_PROGRESS_INTERVAL_S}; 0: none; at most 3600)`,
  ).argParser((v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 3600) throw new InvalidArgumentError('expected a number from 0 to 3600');
    return n;
  });
}

/** `0:07`, `12:34`, `1:02:03`. */
export function durationText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Bytes in decimal units: `512 B`, `1.80 MB`. */
export function bytesText(n: number): string {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(2)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

interface Sample {
  readonly at: number;
  readonly sent: number;
  readonly bytes: number;
}

export interface ProgressOptions {
  /** What the line starts with, e.g. `sluice write`. */
  readonly label: string;
  readonly json: boolean;
  /** Seconds between plain lines or JSON events (0: none); the terminal line is redrawn regardless. */
  readonly intervalS?: number;
  readonly read: () => ProgressSnapshot;
  /** Where lines go (default stderr). */
  readonly out?: NodeJS.WriteStream;
}

export class Progress {
  readonly #opts: ProgressOptions;
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #start = performance.now();
  #samples: Sample[] = [];
  #timer: NodeJS.Timeout | undefined;
  #drawn = false;

  constructor(opts: ProgressOptions) {
    this.#opts = opts;
    this.#out = opts.out ?? process.stderr;
    this.#tty = !opts.json && this.#out.isTTY === true;
    this.#samples.push({ at: this.#start, sent: 0, bytes: 0 });
    const period = this.#tty ? TTY_REDRAW_MS : (opts.intervalS ?? DEFAULT_PROGRESS_INTERVAL_S) * 1000;
    if (period > 0) {
      this.#timer = setInterval(() => this.#tick(), period);
      // Progress never keeps the process alive: the work does.
      this.#timer.unref();
    }
  }

  /** Stops; on a terminal, erases the line so that the report starts on a clean one. Idempotent. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#drawn) this.#out.write('\r\x1b[2K');
    this.#drawn = false;
  }

  #tick(): void {
    const snap = this.#opts.read();
    const now = performance.now();
    const elapsedMs = now - this.#start;
    // The rate over the last samples: on a terminal about RATE_WINDOW_MS, otherwise since the previous line.
    this.#samples.push({ at: now, sent: snap.sent, bytes: snap.bytes });
    while (this.#samples.length > 2 && now - this.#samples[1]!.at >= (this.#tty ? RATE_WINDOW_MS : 0)) this.#samples.shift();
    const from = this.#samples[0]!;
    const dt = (now - from.at) / 1000;
    const perSecond = dt > 0 ? (snap.sent - from.sent) / dt : 0;
    const bitsPerSecond = dt > 0 ? ((snap.bytes - from.bytes) * 8) / dt : 0;
    const left = snap.total - snap.sent;
    const etaMs = snap.etaMs ?? (snap.sent > 0 && left > 0 ? (left * elapsedMs) / snap.sent : undefined);
    if (this.#opts.json) {
      emitJson('progress', {
        t: Date.now(),
        unit: snap.unit,
        sent: snap.sent,
        total: snap.total,
        bytes: snap.bytes,
        ...(snap.totalBytes !== undefined ? { totalBytes: snap.totalBytes } : {}),
        elapsedMs: Math.round(elapsedMs),
        perSecond,
        bitsPerSecond,
        ...(etaMs !== undefined ? { etaMs: Math.round(etaMs) } : {}),
      });
      return;
    }
    const pct = snap.total > 0 ? ` (${((100 * snap.sent) / snap.total).toFixed(1)}%)` : '';
    const bytes = snap.totalBytes !== undefined ? `${bytesText(snap.bytes)} of ${bytesText(snap.totalBytes)}` : bytesText(snap.bytes);
    const unitRate = `${perSecondText(perSecond)} ${snap.unit === 'packets' ? 'pkt' : 'msg'}/s`;
    const eta = etaMs !== undefined ? `, ETA ${durationText(etaMs)}` : '';
    const text =
      `${this.#opts.label}: ${snap.sent} of ${snap.total} ${snap.unit}${pct}, ${bytes}, ` +
      `${mbitText(bitsPerSecond)}, ${unitRate}, elapsed ${durationText(elapsedMs)}${eta}`;
    if (this.#tty) {
      // Never wider than the terminal: a wrapped line cannot be redrawn in place.
      const width = this.#out.columns > 1 ? this.#out.columns - 1 : text.length;
      this.#out.write(`\r\x1b[2K${text.slice(0, width)}`);
      this.#drawn = true;
    } else this.#out.write(`${localTimestamp()} ${text}\n`);
  }
}
