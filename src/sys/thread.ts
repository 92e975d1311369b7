/**
 * The calling thread's scheduling (timer slack and nice value) and signal
 * mask. All are per thread on Linux, so a worker can ask for them without
 * touching the application's threads. A scheduling refusal only costs
 * timing precision: those never throw (no FFI, not Linux, or not permitted
 * all return false).
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

/** glibc's sigset_t: 1024 bits. */
const SIGSET_BYTES = 128;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;

/**
 * Runs `fn` with every signal blocked in this thread. The verifier gives up
 * with EAGAIN when a signal is pending for the loading thread, and a process
 * that gets signals often (a profiler's SIGPROF every millisecond) would never
 * load the program; a blocked signal is delivered to another thread, or after.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const c = libc();
  const all = new Uint8Array(SIGSET_BYTES).fill(0xff);
  const old = new Uint8Array(SIGSET_BYTES);
  const blocked = c.pthread_sigmask(SIG_BLOCK, all, old) === 0;
  try {
    return fn();
  } finally {
    if (blocked) c.pthread_sigmask(SIG_SETMASK, old, null);
  }
}
