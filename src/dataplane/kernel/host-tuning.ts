/**
 * `--tune-host`: raises `net.core.netdev_max_backlog` (softnet.ts says why
 * the kernel tier's fan-out needs it) while a command runs, and puts the
 * old value back when it stops.
 *
 * - only raised, never lowered: a host already above the target keeps its value;
 * - restored only if it still holds what Sluice wrote (someone who changed
 *   it since keeps their value);
 * - the original is recorded in /run/sluice/host-tuning.json, so that after
 *   a crash (which leaves the value set) `sluice doctor` says what it was
 *   and `sluice detach` puts it back;
 * - the setting is global (the initial network namespace's /proc/sys only);
 *   writing it needs root (CAP_NET_ADMIN over the initial namespace).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError, NotSupportedError, SyscallError } from '../../errors.js';
import { BACKLOG_SYSCTL, SUGGESTED_BACKLOG, readBacklogSetting } from './softnet.js';

export const TUNING_RECORD = '/run/sluice/host-tuning.json';
const NAME = 'net.core.netdev_max_backlog';
/** The kernel takes any int; past this a queue would hold more memory than any host should give it. */
const MAX_BACKLOG = 10_000_000;

export interface TuneHostRequest {
  readonly backlog: number;
}

/** Parses `--tune-host` (no value) or `--tune-host backlog=N`. */
export function parseTuneHost(value: string | true): TuneHostRequest {
  if (value === true || value === '') return { backlog: SUGGESTED_BACKLOG };
  const m = /^backlog=(\d+)$/.exec(value.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_BACKLOG) {
    throw new InvalidArgumentError(`--tune-host: expected nothing or backlog=N (N from 1 to ${MAX_BACKLOG}), got '${value}'`);
  }
  return { backlog: n };
}

interface TuningRecord {
  readonly setting: string;
  readonly original: number;
  readonly written: number;
  readonly pid: number;
  readonly start: string | undefined;
}

function readRecord(path: string): TuningRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<TuningRecord>;
    return typeof r.original === 'number' && typeof r.written === 'number' && typeof r.pid === 'number' ? (r as TuningRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** The process's start time (field 22 of /proc/PID/stat): with the pid, it names one process (a pid alone is reused). */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function alive(r: TuningRecord): boolean {
  const now = startTime(r.pid);
  return now !== undefined && now === r.start;
}

export interface HostTuning {
  /** What was changed, as `net.core.netdev_max_backlog: 1000 -> 10000`, or what was left and why. */
  readonly message: string;
  /** Whether a value was written (and restore() will put the old one back). */
  readonly changed: boolean;
  /** Puts the old value back if it still holds Sluice's; returns what it did (undefined: nothing). Idempotent. */
  restore(): string | undefined;
}

/** Raises the backlog to `req.backlog` unless it is already that high. Throws NotSupportedError when not root. */
export function tuneHost(req: TuneHostRequest, sysctl = BACKLOG_SYSCTL, record = TUNING_RECORD): HostTuning {
  if (process.getuid?.() !== 0) throw new NotSupportedError(`--tune-host: setting ${NAME} needs root`, 'not root');
  const before = readBacklogSetting(sysctl);
  if (before === undefined) {
    throw new NotSupportedError(`--tune-host: cannot read ${sysctl} (a network namespace other than the host's does not show it)`, 'no sysctl');
  }
  if (before >= req.backlog) return { message: `${NAME}=${before} already at least ${req.backlog}: left as it is`, changed: false, restore: () => undefined };
  // A record left by a crashed run holds the host's own value: keep it as the original.
  const stale = readRecord(record);
  const original = stale && !alive(stale) && stale.written === before ? stale.original : before;
  try {
    writeFileSync(sysctl, String(req.backlog));
  } catch (err) {
    throw new SyscallError(`write ${sysctl}`, (err as NodeJS.ErrnoException).code ?? 'EIO', `--tune-host: setting ${NAME}=${req.backlog}`, { cause: err });
  }
  try {
    mkdirSync(dirname(record), { recursive: true, mode: 0o755 });
    writeFileSync(
      record,
      JSON.stringify({ setting: NAME, original, written: req.backlog, pid: process.pid, start: startTime(process.pid) } satisfies TuningRecord),
    );
  } catch {
    // No /run: restoring at exit still works; only a crash's leftover goes unexplained.
  }
  let done = false;
  return {
    message: `set ${NAME}: ${before} -> ${req.backlog} (restored to ${original} when this process stops)`,
    changed: true,
    restore: () => {
      if (done) return undefined;
      done = true;
      return restoreValue(sysctl, record, req.backlog, original);
    },
  };
}

function restoreValue(sysctl: string, record: string, written: number, original: number): string {
  rmSync(record, { force: true });
  const now = readBacklogSetting(sysctl);
  if (now !== written) return `${NAME}=${now ?? '?'} changed by someone else since: left as it is (it was ${original})`;
  try {
    writeFileSync(sysctl, String(original));
    return `restored ${NAME}=${original}`;
  } catch (err) {
    return `could not restore ${NAME}=${original}: ${(err as Error).message}`;
  }
}

/**
 * What a `--tune-host` process that did not stop cleanly left: a line for
 * `sluice doctor`, undefined when there is nothing to say.
 */
export function leftoverTuning(sysctl = BACKLOG_SYSCTL, record = TUNING_RECORD): string | undefined {
  const r = readRecord(record);
  if (!r) return undefined;
  if (alive(r)) return `${NAME} raised to ${r.written} by --tune-host (pid ${r.pid}, running); it restores ${r.original} when it stops`;
  if (readBacklogSetting(sysctl) !== r.written) return undefined;
  return `${NAME}=${r.written} was left by a --tune-host process that did not stop cleanly (pid ${r.pid}); the host had ${r.original}: \`sluice detach\` or \`sysctl -w ${NAME}=${r.original}\` restores it`;
}

/** For `sluice detach`: restores what a crashed --tune-host process left; returns what it did. */
export function restoreLeftoverTuning(sysctl = BACKLOG_SYSCTL, record = TUNING_RECORD): string | undefined {
  const r = readRecord(record);
  if (!r || alive(r)) return undefined;
  return restoreValue(sysctl, record, r.written, r.original);
}
