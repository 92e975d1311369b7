/**
 * The host's backlog queue drops (softnet drops), where the kernel tier's
 * fan-out meets its limit: every copy the program sends to a local (lo) or
 * veth subscriber waits in the sending CPU's backlog queue until the
 * datagram's copies are made, and a copy that finds the queue full
 * (`net.core.netdev_max_backlog` packets, 1000 by default) is dropped and
 * counted in /proc/net/softnet_stat, per CPU, not per flow or socket.
 *
 * /proc/net/softnet_stat: one line per online CPU, hexadecimal columns:
 * processed, dropped, time_squeeze, then fields that vary by kernel. The
 * counters are 32-bit and wrap. A file this module cannot make sense of
 * counts as unavailable: nothing is reported, nothing throws.
 *
 * BacklogWatch samples the dropped total (the plane's stats tick) and adds
 * what rose since the previous sample: the drops seen while it watched,
 * host-wide (the kernel cannot tell whose copies they were).
 */
import { readFileSync } from 'node:fs';

export const SOFTNET_STAT = '/proc/net/softnet_stat';
export const BACKLOG_SYSCTL = '/proc/sys/net/core/netdev_max_backlog';
/** What `--tune-host` sets and warnings suggest. */
export const SUGGESTED_BACKLOG = 10_000;

/** One CPU's row. */
export interface SoftnetCpu {
  readonly processed: number;
  readonly dropped: number;
  readonly timeSqueeze: number;
}

/** The rows of /proc/net/softnet_stat, and their sums. */
export interface SoftnetStat {
  readonly cpus: readonly SoftnetCpu[];
  readonly processed: number;
  readonly dropped: number;
  readonly timeSqueeze: number;
}

const HEX = /^[0-9a-f]{1,8}$/i;

/** Parses the file's text; undefined when any row is not at least three 32-bit hex columns (or there is no row). */
export function parseSoftnetStat(text: string): SoftnetStat | undefined {
  const cpus: SoftnetCpu[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const cols = line.trim().split(/\s+/);
    if (cols.length < 3 || !cols.every((c) => HEX.test(c))) return undefined;
    const [processed, dropped, timeSqueeze] = cols.map((c) => parseInt(c, 16)) as [number, number, number];
    cpus.push({ processed, dropped, timeSqueeze });
  }
  if (cpus.length === 0) return undefined;
  const sum = (pick: (c: SoftnetCpu) => number) => cpus.reduce((n, c) => n + pick(c), 0);
  return { cpus, processed: sum((c) => c.processed), dropped: sum((c) => c.dropped), timeSqueeze: sum((c) => c.timeSqueeze) };
}

/** Reads and parses /proc/net/softnet_stat; undefined when unreadable or malformed. */
export function readSoftnetStat(path = SOFTNET_STAT): SoftnetStat | undefined {
  try {
    return parseSoftnetStat(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** `net.core.netdev_max_backlog` now; undefined when unreadable. */
export function readBacklogSetting(path = BACKLOG_SYSCTL): number | undefined {
  try {
    const text = readFileSync(path, 'utf8').trim();
    const v = Number(text);
    return /^\d+$/.test(text) && Number.isSafeInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Rise of a 32-bit counter from `before` to `now` (one wrap at most between samples). */
function rise(before: number, now: number): number {
  return now >= before ? now - before : now + 2 ** 32 - before;
}

/** The warning the first drops raise, naming the setting, its value and what to set. */
export function backlogWarning(drops: number, setting: number | undefined): string {
  // The setting is global: a network namespace other than the host's does not show it.
  const now = setting === undefined ? ' (global; not shown in this network namespace)' : `=${setting}`;
  const to = Math.max(SUGGESTED_BACKLOG, (setting ?? 0) * 2);
  return (
    `the host dropped ${drops} packet(s) in its backlog queue while kernel-tier flows ran (softnet drops, /proc/net/softnet_stat; host-wide, ` +
    `not attributable to one flow): net.core.netdev_max_backlog${now} is too small for this fan-out; raise it (sysctl -w net.core.netdev_max_backlog=${to}, ` +
    `or run with --tune-host)`
  );
}

/**
 * Drops seen between samples, summed. `sample()` while flows run; `pause()`
 * when none does (the next sample starts from there, so drops in between
 * are not counted). `onWarning` is called once, at the first drops.
 */
export class BacklogWatch {
  #last: readonly SoftnetCpu[] | undefined;
  #total = 0;
  #warned = false;
  readonly #read: () => SoftnetStat | undefined;
  readonly #setting: () => number | undefined;
  /** Called once, at the first drops (settable after construction). */
  onWarning: ((message: string) => void) | undefined;

  constructor(
    onWarning?: (message: string) => void,
    read: () => SoftnetStat | undefined = readSoftnetStat,
    setting: () => number | undefined = readBacklogSetting,
  ) {
    this.onWarning = onWarning;
    this.#read = read;
    this.#setting = setting;
  }

  /** Drops counted so far (host-wide, while watched). */
  get total(): number {
    return this.#total;
  }

  /** Whether the file could be read at the last sample. */
  get available(): boolean {
    return this.#last !== undefined;
  }

  /** Reads the file and adds the drops since the previous sample; returns them (0 at the first, or when unavailable). */
  sample(): number {
    const now = this.#read();
    const before = this.#last;
    this.#last = now?.cpus;
    // CPUs coming online or going offline change the rows: start again from here.
    if (!now || !before || before.length !== now.cpus.length) return 0;
    let added = 0;
    for (let i = 0; i < now.cpus.length; i++) added += rise(before[i]!.dropped, now.cpus[i]!.dropped);
    this.#total += added;
    if (added > 0 && !this.#warned) {
      this.#warned = true;
      this.onWarning?.(backlogWarning(added, this.#setting()));
    }
    return added;
  }

  /** Stops counting until the next sample (which only sets the base). */
  pause(): void {
    this.#last = undefined;
  }
}
