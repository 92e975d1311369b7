/**
 * Scheduling of the calling thread: timer slack and nice value. Both are
 * per thread on Linux, so a worker can ask for them without touching the
 * application's threads. A refusal only costs timing precision: these never
 * throw (no FFI, not Linux, or not permitted all return false).
 */
import { libc } from './ffi.js';
import { PRIO_PROCESS, PR_SET_TIMERSLACK } from './constants.js';

/** Sets this thread's timer slack (how late the kernel may end its sleeps), in ns. */
export function setTimerSlack(ns: number): boolean {
  try {
    return libc().prctl(PR_SET_TIMERSLACK, ns) === 0;
  } catch {
    return false;
  }
}

/** Sets this thread's nice value (lower runs sooner; below 0 needs CAP_SYS_NICE or RLIMIT_NICE). */
export function setThreadNice(nice: number): boolean {
  try {
    const c = libc();
    return c.setpriority(PRIO_PROCESS, c.gettid(), nice) === 0;
  } catch {
    return false;
  }
}
