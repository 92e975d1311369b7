/**
 * The log of the foreground commands (`relay`, `run`): pino records
 * (src/server/log.ts: levels, `--log-level`, child loggers) written to
 * stderr as one human line each, `2026-12-03 16:30:05.123 sluice: …`, so
 * that a terminal, a pipe and `journalctl` all read the same thing and
 * every line says when. Warnings and errors carry their level before
 * `sluice:`; fields other than the message follow as `key=value`.
 */
import { Option } from 'commander';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../server/log.js';

export { LOG_LEVELS, type Logger, type LogLevel };

const LOG_LEVEL_NAMES: string[] = [...LOG_LEVELS];

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Local time as `YYYY-MM-DD HH:MM:SS.mmm`: the timestamp of every human log and periodic line. */
export function localTimestamp(ms: number = Date.now()): string {
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** Record fields that are the line's frame, not its content. */
const FRAME = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

function fieldText(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v !== null && typeof v === 'object' && 'message' in v && typeof (v as { message: unknown }).message === 'string')
    return (v as { message: string }).message;
  return JSON.stringify(v);
}

/** One pino record (a JSON line) as a human line. */
export function humanLine(record: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(record) as Record<string, unknown>;
  } catch {
    return record.endsWith('\n') ? record : `${record}\n`;
  }
  const t = typeof r.time === 'string' || typeof r.time === 'number' ? new Date(r.time).getTime() : Date.now();
  const level = typeof r.level === 'string' && r.level !== 'info' ? `${r.level.toUpperCase()} ` : '';
  const fields = Object.entries(r)
    .filter(([k]) => !FRAME.has(k))
    .map(([k, v]) => ` ${k}=${fieldText(v)}`)
    .join('');
  return `${localTimestamp(Number.isFinite(t) ? t : Date.now())} ${level}sluice: ${String(r.msg ?? '')}${fields}\n`;
}

/** A pino destination writing human lines to `out` (default stderr). */
export function humanDestination(out: { write(s: string): unknown } = process.stderr): { write(s: string): void } {
  return { write: (s: string) => void out.write(humanLine(s)) };
}

/** The logger of a foreground command: human lines on stderr at `level` and above. */
export function createCliLogger(level: LogLevel = 'info', out?: { write(s: string): unknown }): Logger {
  return createLogger({ level, pretty: false, destination: humanDestination(out) });
}

/** `--log-level`, shared by the commands that log (help and choices in one place). */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'least severe message logged on stderr (default info; with --json: warn)').choices(LOG_LEVEL_NAMES);
}
