/**
 * The one sendmmsg loop: send a SendVector's messages, resuming after a
 * partial send, and decide per refused message. Its callers (the batched
 * tier's SendBatch, the send worker's aggregate and write jobs, the TPO
 * batched port) differ only in their policy:
 *
 * - r > 0: the kernel took r messages from `at` (onSent); go on after them.
 * - EAGAIN/ENOBUFS (socket buffer or device queue full): the drop-or-wait
 *   hook onFull() answers 'retry' (it waited: send `at` again), 'drop'
 *   (give `at` up, go on) or 'drop-rest' (give up `at` and every later one).
 * - An errno a pending ICMP error can carry: resent up to `staleResends`
 *   times first (the socket's pending error is reported by the next send,
 *   whatever its destination; see STALE_SOCKET_ERRNOS).
 * - EIO/EINVAL/EMSGSIZE: onGsoRefused() may resend a GSO message's
 *   datagrams one by one (the path cannot take the segments) and say so.
 * - Anything else: message `at` is refused (onRefused), go on after it.
 *
 * Allocation-free: policies are long-lived objects, not closures per call.
 */
import { EAGAIN, EINVAL, EIO, EMSGSIZE, ENOBUFS } from './errno.js';
import { STALE_SOCKET_ERRNOS } from './error-queue.js';
import type { SendVector } from './send-vector.js';

/** Largest GSO segment: one segment must fit a 1500-byte MTU, the common path (IPv4, IPv6). */
export const GSO_MAX_SEGMENT: Readonly<Record<4 | 6, number>> = { 4: 1500 - 20 - 8, 6: 1500 - 40 - 8 };
/** Bytes of UDP payload one GSO message may carry (the IP datagram limit, less headers). */
export const GSO_MAX_BYTES = 65_000;

/** Errnos with which the kernel refuses a GSO message the path cannot take (segment above the MTU, device without UDP GSO). */
export function isGsoRefusal(errno: number): boolean {
  return errno === EIO || errno === EINVAL || errno === EMSGSIZE;
}

/** What the drop-or-wait hook answers for a full socket buffer at message `at`. */
export type FullVerdict =
  /** It waited (writable, a sleep, zerocopy completions): send `at` again. */
  | 'retry'
  /** Give `at` up (onRefused(at, errno, 'full')) and go on with the next. */
  | 'drop'
  /** Give up `at` and every later message of the vector. */
  | 'drop-rest';

/** The messages of the next sendmmsg call: [at, until) with `flags` (set by planRun). */
export interface SendRun {
  flags: number;
  until: number;
}

export interface BatchSendPolicy {
  /** Once per sendAll, with the number of messages (per-batch deadlines start here). */
  begin?(messages: number): void;
  /** Before each call: the run from `at` to send and its flags (MSG_ZEROCOPY runs). Preset: flags 0, until `end`. */
  planRun?(at: number, end: number, run: SendRun): void;
  /** After each sendmmsg call, whatever it returned. */
  onCall?(): void;
  /** Messages [at, at + count) went. */
  onSent?(at: number, count: number): void;
  /** The drop-or-wait hook for EAGAIN/ENOBUFS; `attempt` counts the 'retry' answers already given for `at`. */
  onFull(at: number, errno: number, attempt: number): FullVerdict;
  /** Resends of a message refused with a STALE_SOCKET_ERRNOS errno before it is believed (default 0). */
  readonly staleResends?: number;
  /** Message `at` was refused with a GSO refusal errno: true if the policy resent it another way (it is then done). */
  onGsoRefused?(at: number, errno: number): boolean;
  /** Message `at` was given up: the socket was full ('full'), or the kernel refused it ('error'). */
  onRefused(at: number, errno: number, why: 'full' | 'error'): void;
}

/** Read only between planRun() and the send that follows it (a nested sendAll from a hook is harmless). */
const run: SendRun = { flags: 0, until: 0 };

/** Sends messages [0, end) of `vec` on `fd` (default: all queued), as `policy` decides for refusals. */
export function sendAll(vec: SendVector, fd: number, policy: BatchSendPolicy, end = vec.count): void {
  policy.begin?.(end);
  const staleResends = policy.staleResends ?? 0;
  let at = 0;
  let attempt = 0;
  let stale = 0;
  while (at < end) {
    run.flags = 0;
    run.until = end;
    policy.planRun?.(at, end, run);
    const r = vec.send(fd, at, run.flags, run.until);
    policy.onCall?.();
    if (r > 0) {
      policy.onSent?.(at, r);
      at += r;
      attempt = 0;
      stale = 0;
      continue;
    }
    const errno = -r;
    if (stale < staleResends && STALE_SOCKET_ERRNOS.has(errno)) {
      stale++;
      continue;
    }
    stale = 0;
    if (errno === EAGAIN || errno === ENOBUFS) {
      const verdict = policy.onFull(at, errno, attempt);
      if (verdict === 'retry') {
        attempt++;
        continue;
      }
      if (verdict === 'drop-rest') {
        for (let m = at; m < end; m++) policy.onRefused(m, errno, 'full');
        return;
      }
      policy.onRefused(at, errno, 'full');
    } else if (!(isGsoRefusal(errno) && policy.onGsoRefused?.(at, errno))) {
      policy.onRefused(at, errno, 'error');
    }
    at++;
    attempt = 0;
  }
}
