/**
 * MSG_ZEROCOPY for one write job (send-write.ts): which messages go with
 * it, per address family whether the socket may (SO_ZEROCOPY refused,
 * zerocopy's own ENOBUFS, or a recent write whose every send the kernel
 * copied anyway all make the family copy), the completions to wait for
 * before the caller may reuse its buffers, and the report.
 */
import { enableZeroCopy, ZeroCopyCompletions } from '../sys/zerocopy.js';
import type { WriteZeroCopy } from './send-protocol.js';

/**
 * Smallest sendmmsg message (bytes) sent with MSG_ZEROCOPY. Pinning pages
 * and reading a completion cost more than copying small sends: the kernel
 * docs (networking/msg_zerocopy.rst) put the break-even at writes of
 * around 10 KB per send call, and for sendmmsg each message is a send call.
 * In practice: GSO runs (burst ≥ 7 of 1472-byte packets) qualify, single
 * MTU-sized datagrams do not.
 */
const ZEROCOPY_MIN_BYTES = 10 * 1024;
/**
 * How long a write waits, after its last send, for the kernel to release
 * the caller's pages. Completions normally arrive within a transmit
 * (microseconds to milliseconds); this bounds a wedged device queue.
 */
const ZEROCOPY_WAIT_MS = 5000;
/**
 * When every completion of a write came back flagged "copied" (the path
 * delivers locally or crosses a veth into another namespace, where the
 * kernel copies the pinned pages anyway), zerocopy only adds pinning and
 * notifications: later writes copy for this long, then try again (the
 * kernel docs advise exactly this). Per family, for this worker.
 */
const ZEROCOPY_COPIED_BACKOFF_MS = 10_000;
const zeroCopyCopiedUntil = new Map<4 | 6, number>();

export class ZeroCopyPolicy {
  /** The job asked for zerocopy ('auto'). */
  readonly #enabled: boolean;
  readonly #fdOf: (family: 4 | 6) => number;
  /** Per family: its completion tracker once SO_ZEROCOPY is on. */
  readonly #trackers = new Map<4 | 6, ZeroCopyCompletions>();
  /** Families whose socket copies whatever the size (option refused, zerocopy gave up). */
  readonly #copyOnly = new Set<4 | 6>();
  /** Why the write copied where it wanted zerocopy, if it did. */
  #fallback: string | undefined;

  constructor(enabled: boolean, fdOf: (family: 4 | 6) => number) {
    this.#enabled = enabled;
    this.#fdOf = fdOf;
  }

  /** A message of `bytes` should go with MSG_ZEROCOPY (if its family may). */
  wants(bytes: number): boolean {
    return this.#enabled && bytes >= ZEROCOPY_MIN_BYTES;
  }

  /** The family's completion tracker, turning SO_ZEROCOPY on first; undefined: this family copies. */
  trackerFor(family: 4 | 6): ZeroCopyCompletions | undefined {
    if (this.#copyOnly.has(family)) return undefined;
    if (performance.now() < (zeroCopyCopiedUntil.get(family) ?? 0)) {
      this.#fallback ??= `the kernel copied every zerocopy send of a recent write on this path (local or veth delivery): copying for up to ${ZEROCOPY_COPIED_BACKOFF_MS / 1000} s`;
      this.#copyOnly.add(family);
      return undefined;
    }
    let t = this.#trackers.get(family);
    if (!t) {
      const fd = this.#fdOf(family);
      const refused = enableZeroCopy(fd);
      if (refused) {
        this.#fallback ??= `${refused}: copying instead`;
        this.#copyOnly.add(family);
        return undefined;
      }
      this.#trackers.set(family, (t = new ZeroCopyCompletions(fd)));
    }
    return t;
  }

  /**
   * A zerocopy send got ENOBUFS: zerocopy's own limits (notifications
   * pending past the socket's optmem, or pinned pages past
   * RLIMIT_MEMLOCK). Waiting for completions frees both; with none
   * outstanding it will not pass, so the family copies from here on.
   * Throws once past `stallAt` (no progress for too long).
   */
  onNoBuffers(family: 4 | 6, tracker: ZeroCopyCompletions, stallAt: number): void {
    tracker.drain();
    if (tracker.outstanding > 0) {
      if (performance.now() > stallAt) throw new Error('sendmmsg(MSG_ZEROCOPY): ENOBUFS for 10 s, zerocopy completions never freed room');
      tracker.waitAll(1);
    } else {
      this.#copyOnly.add(family);
      this.#fallback ??= 'sendmmsg(MSG_ZEROCOPY): ENOBUFS with no completion pending (locked-page or optmem limit): copying instead';
    }
  }

  /**
   * Holds the write until the kernel has released every page it pinned:
   * only then may the main thread let the caller reuse the buffers.
   * Returns what went wrong, if anything.
   */
  awaitCompletions(): string | undefined {
    const problems: string[] = [];
    for (const [family, t] of this.#trackers) {
      try {
        if (!t.waitAll(ZEROCOPY_WAIT_MS))
          problems.push(
            `IPv${family}: ${t.outstanding} of ${t.sends} zerocopy sends not completed after ${ZEROCOPY_WAIT_MS} ms (the kernel may still read the buffers)`,
          );
      } catch (err) {
        problems.push(`IPv${family}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (t.malformed) problems.push(`IPv${family}: ${t.malformed} undecodable error-queue notifications`);
      if (t.completed > 0 && t.copied === t.completed) zeroCopyCopiedUntil.set(family, performance.now() + ZEROCOPY_COPIED_BACKOFF_MS);
    }
    return problems.length ? problems.join('; ') : undefined;
  }

  /** The outcome's zerocopy report (only when the job asked for zerocopy). */
  report(error: string | undefined): WriteZeroCopy | undefined {
    if (!this.#enabled) return undefined;
    let sends = 0;
    let completed = 0;
    let copied = 0;
    for (const t of this.#trackers.values()) {
      sends += t.sends;
      completed += t.completed;
      copied += t.copied;
    }
    return { sends, completed, copied, ...(this.#fallback ? { fallback: this.#fallback } : {}), ...(error ? { error } : {}) };
  }
}
