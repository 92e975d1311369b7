/**
 * The one way Sluice's long-running commands log: pino, JSON lines with a
 * level, an ISO timestamp and the component's bindings (a child logger per
 * flow, gateway or peer), or the same records made readable when the
 * destination is a terminal. Nothing logs per packet: callers log changes,
 * failures and periodic summaries.
 *
 * Logs go to stderr by default, so a command's stdout stays its result
 * (tables, `--json` lines) for pipes.
 */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies readonly LevelWithSilent[];
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogOptions {
  /** Least severe level written (default info). */
  readonly level?: LogLevel;
  /** Readable lines instead of JSON (default: when the destination is a terminal). */
  readonly pretty?: boolean;
  /** Where records go (default: stderr, fd 2). */
  readonly destination?: DestinationStream & { isTTY?: boolean };
  /** Bindings on every record (e.g. `{ service: 'sluice' }`). */
  readonly base?: Record<string, unknown>;
}

/** A root logger; children (`log.child({ flow })`) share its level and destination. */
export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? 'info';
  const usePretty = options.pretty ?? (options.destination ? Boolean(options.destination.isTTY) : process.stderr.isTTY === true);
  const base = options.base ?? {};
  if (usePretty) {
    // Synchronous, in this thread: no transport worker for a few lines a second.
    const stream = pretty({
      sync: true,
      colorize: true,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
      ignore: 'pid,hostname',
      destination: options.destination ?? 2,
    });
    return pino(recordOptions(level, base), stream);
  }
  return pino(recordOptions(level, base), options.destination ?? pino.destination({ dest: 2, sync: true }));
}

/** Records carry the level's name ("level":"warn"), not pino's number, and an ISO time. */
function recordOptions(level: LogLevel, base: Record<string, unknown>) {
  return { level, base, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label: string) => ({ level: label }) } };
}

/** A logger that writes nothing (library callers that did not ask for logs; tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
