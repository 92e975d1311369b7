/**
 * Relay CPU time from /proc: utime + stime of a process and all its
 * descendants (nginx master + workers; a Node process's threads, including
 * worker threads, are already summed in its own line). Resolution is one
 * clock tick (normally 10 ms), so trials are made long enough that a busy
 * relay accumulates many ticks.
 *
 * Not included: softirq work done on the relay's CPU outside the relay's
 * syscalls (see bench/README.md, caveats).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let ticksPerSecond: number | undefined;

export function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface StatLine {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): StatLine | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

/** `pid` and every live descendant. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(name));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Run time in seconds of every thread of `pid` from schedstat (ns resolution), or undefined. */
function schedRunSeconds(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* thread exited, or no schedstat in this kernel */
      return undefined;
    }
  }
  return ns / 1e9;
}

export interface CpuSample {
  /** utime + stime of the processes, seconds (clock-tick resolution). */
  statS: number;
  /** Sum of the threads' on-CPU time from schedstat, seconds (ns resolution); undefined if unreadable. */
  schedS: number | undefined;
}

/** CPU used so far by the given processes (and their threads). */
export function sampleCpu(pids: readonly number[]): CpuSample {
  let ticks = 0;
  let sched: number | undefined = 0;
  for (const pid of pids) {
    ticks += readStat(pid)?.ticks ?? 0;
    const s = schedRunSeconds(pid);
    sched = s === undefined || sched === undefined ? undefined : sched + s;
  }
  return { statS: ticks / clockTicks(), schedS: sched };
}

/** utime + stime of one process (all its threads) so far, seconds; NaN once it is gone. */
export function processSeconds(pid: number | undefined): number {
  const st = pid === undefined ? undefined : readStat(pid);
  return st ? st.ticks / clockTicks() : NaN;
}

/**
 * utime + stime of every thread of `pid` so far, seconds, keyed `name/tid`
 * (Node names its own threads, e.g. "node" or a worker's title), so that a
 * busy process can be seen to be bound by one thread or not.
 */
export function threadSeconds(pid: number | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[`${name}/${tid}`] = (Number(f[11]) + Number(f[12])) / clockTicks();
    } catch {
      /* the thread exited */
    }
  }
  return out;
}

/** What each thread used between two threadSeconds() readings (threads that used nothing left out). */
export function threadDiff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, +(v - (before[k] ?? 0)).toFixed(2)] as const)
      .filter(([, v]) => v > 0),
  );
}

/** Busy and total jiffies of the whole machine (/proc/stat, all CPUs): the host's busy share between two readings. */
export function hostJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

/**
 * Busy time of one CPU core so far, seconds, as a running total whose
 * differences are meaningful (not since boot). An estimate, and the bench's
 * fallback only: it uses the exact clock of irq-clock.ts where it can load
 * it. Where cpuidle is present this is wall time minus the core's idle-state
 * residency, else /proc/stat. Both miss the softirq work that an idle core
 * does when an interrupt wakes it, on kernels with tick accounting and NO_HZ
 * idle (no CONFIG_IRQ_TIME_ACCOUNTING): the handler runs inside the halt and
 * while the tick is stopped (measured for the kernel tier at 1->100:
 * /proc/stat 0.1, cpuidle 0.3, the exact clock 1.3 µs per copy).
 * `softirqS` is /proc/stat's softirq figure, for reference.
 */
export function coreBusy(cpu: number): { busyS: number; softirqS: number; source: 'cpuidle' | 'stat' } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
  const hz = clockTicks();
  const idleUs = cpuidleResidencyUs(cpu);
  if (idleUs !== undefined) return { busyS: Number(process.hrtime.bigint()) / 1e9 - idleUs / 1e6, softirqS: softirq / hz, source: 'cpuidle' };
  return { busyS: (user + nice + system + irq + softirq) / hz, softirqS: softirq / hz, source: 'stat' };
}

/** Total µs `cpu` has spent in cpuidle states, or undefined without cpuidle. */
function cpuidleResidencyUs(cpu: number): number | undefined {
  const dir = `/sys/devices/system/cpu/cpu${cpu}/cpuidle`;
  let states: string[];
  try {
    states = readdirSync(dir).filter((n) => n.startsWith('state'));
  } catch {
    return undefined;
  }
  if (states.length === 0) return undefined;
  let us = 0;
  for (const st of states) us += Number(readFileSync(`${dir}/${st}/time`, 'utf8'));
  return us;
}

/**
 * Host-wide /proc/net/softnet_stat totals: packets dropped because a CPU's
 * backlog queue was full (veth delivers through it), and times the receive
 * softirq ran out of budget. A diagnostic: other host traffic counts too.
 */
export function softnet(): { dropped: number; squeezed: number; droppedByCpu: number[] } {
  let dropped = 0;
  let squeezed = 0;
  const droppedByCpu: number[] = [];
  for (const line of readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n')) {
    const f = line
      .trim()
      .split(/\s+/)
      .map((x) => parseInt(x, 16));
    dropped += f[1] ?? 0;
    squeezed += f[2] ?? 0;
    droppedByCpu.push(f[1] ?? 0);
  }
  return { dropped, squeezed, droppedByCpu };
}

/**
 * Samples the relay's CPU time every `intervalMs` so that the CPU used
 * during the generator's sending window can be read off afterwards (by
 * linear interpolation), excluding the generator's start-up and the drain.
 * That matters for relays that use CPU while idle (e.g. polling).
 */
export class CpuSampler {
  readonly #samples: { t: number; s: number }[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #pids: readonly number[];
  readonly #intervalMs: number;

  constructor(pids: readonly number[], intervalMs = 25) {
    this.#pids = pids;
    this.#intervalMs = intervalMs;
  }

  #take(): void {
    const c = sampleCpu(this.#pids);
    this.#samples.push({ t: performance.now(), s: c.schedS ?? c.statS });
  }

  start(): void {
    this.#take();
    this.#timer = setInterval(() => this.#take(), this.#intervalMs);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#take();
  }

  /** CPU seconds used between two performance.now() times, or undefined if not covered by samples. */
  between(t0: number, t1: number): number | undefined {
    const a = this.#at(t0);
    const b = this.#at(t1);
    return a === undefined || b === undefined ? undefined : b - a;
  }

  #at(t: number): number | undefined {
    const s = this.#samples;
    if (s.length < 2 || t < s[0]!.t || t > s[s.length - 1]!.t) return undefined;
    let i = 1;
    while (s[i]!.t < t) i++;
    const p = s[i - 1]!;
    const q = s[i]!;
    return q.t === p.t ? q.s : p.s + ((q.s - p.s) * (t - p.t)) / (q.t - p.t);
  }
}
