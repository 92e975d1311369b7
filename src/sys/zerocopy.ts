/**
 * MSG_ZEROCOPY completion tracking for one socket.
 *
 * A send with MSG_ZEROCOPY pins the caller's pages instead of copying
 * them, so the caller may not touch (or free) the buffer until the kernel
 * says it let go. It says so on the socket's error queue: each successful
 * zerocopy send call (for sendmmsg: each message, since every message is
 * its own sendmsg inside the kernel) takes the next value of a per-socket
 * u32 counter starting at 0, and recvmsg(MSG_ERRQUEUE) returns
 * notifications holding inclusive ranges [ee_info, ee_data] of completed
 * values (the kernel merges consecutive ones while they wait to be read).
 * See Documentation/networking/msg_zerocopy.rst.
 *
 * The parser is a pure function over a control buffer so that it can be
 * tested with hand-built input; the tracker does the syscalls.
 */
import { libc } from './ffi.js';
import { errnoName } from './errno.js';
import {
  IP_RECVERR,
  IPV6_RECVERR,
  MMSG,
  MSG_CTRUNC,
  SIZEOF_CMSGHDR,
  SIZEOF_MSGHDR,
  SIZEOF_SOCK_EXTENDED_ERR,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SO_EE_CODE_ZEROCOPY_COPIED,
  SO_EE_ORIGIN_ZEROCOPY,
  SO_ZEROCOPY,
} from './constants.js';
import { NativeRegion } from './memory.js';
import { ERRQUEUE_CONTROL_SPACE, recvErrorQueue } from './error-queue.js';
import { Poller } from './poller.js';

/** One notification: send-call counter values `first`..`last` (inclusive, may wrap past 2^32) completed. */
export interface ZeroCopyRange {
  readonly first: number;
  readonly last: number;
  /** How many send calls the range covers. */
  readonly count: number;
  /** The kernel copied the data after all (SO_EE_CODE_ZEROCOPY_COPIED): zerocopy bought nothing. */
  readonly copied: boolean;
}

export interface ParsedNotifications {
  readonly ranges: ZeroCopyRange[];
  /** Well-formed cmsgs that are not zerocopy completions (other levels, types or error origins). */
  readonly ignored: number;
  /** Truncated or inconsistent cmsgs; parsing stops at the first one. */
  readonly malformed: number;
}

/** CMSG_ALIGN on LP64: cmsgs start on 8-byte boundaries. */
const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Decodes the control data of one recvmsg(MSG_ERRQUEUE) (`length` =
 * msg_controllen after the call) into completion ranges. Never throws:
 * anything that does not fit is counted, not trusted.
 */
export function parseZeroCopyNotifications(control: Uint8Array, length = control.byteLength): ParsedNotifications {
  const ranges: ZeroCopyRange[] = [];
  let ignored = 0;
  let malformed = 0;
  const end = Math.min(Math.max(0, length), control.byteLength);
  const v = new DataView(control.buffer, control.byteOffset, end);
  let off = 0;
  while (off < end) {
    if (off + SIZEOF_CMSGHDR > end) {
      malformed++;
      break;
    }
    // cmsg_len is a size_t; a high half other than 0 is nonsense here.
    const len = v.getUint32(off, true);
    if (v.getUint32(off + 4, true) !== 0 || len < SIZEOF_CMSGHDR || off + len > end) {
      malformed++;
      break;
    }
    const level = v.getInt32(off + 8, true);
    const type = v.getInt32(off + 12, true);
    const isRecvErr = (level === SOL_IP && type === IP_RECVERR) || (level === SOL_IPV6 && type === IPV6_RECVERR);
    if (!isRecvErr) ignored++;
    else if (len - SIZEOF_CMSGHDR < SIZEOF_SOCK_EXTENDED_ERR) malformed++;
    else {
      const e = off + SIZEOF_CMSGHDR;
      const origin = v.getUint8(e + 4);
      const code = v.getUint8(e + 6);
      if (origin !== SO_EE_ORIGIN_ZEROCOPY) ignored++;
      else {
        const first = v.getUint32(e + 8, true);
        const last = v.getUint32(e + 12, true);
        // Unsigned distance: a range may straddle the counter's wrap.
        ranges.push({ first, last, count: ((last - first) >>> 0) + 1, copied: (code & SO_EE_CODE_ZEROCOPY_COPIED) !== 0 });
      }
    }
    off += align8(len);
  }
  return { ranges, ignored, malformed };
}

/** Longest single ppoll while waiting, so a wait never overshoots its deadline by much. */
const POLL_SLICE_MS = 50;

/**
 * Turns SO_ZEROCOPY on. Returns undefined on success, else why not
 * ("setsockopt(SO_ZEROCOPY): EOPNOTSUPP"): the kernel predates UDP
 * zerocopy (5.0) and the caller should copy instead.
 */
export function enableZeroCopy(fd: number): string | undefined {
  const c = libc();
  if (c.setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, new Int32Array([1]), 4) === 0) return undefined;
  return `setsockopt(SO_ZEROCOPY): ${errnoName(c.errno())}`;
}

/** Counts the zerocopy sends made on one socket and reads their completions. */
export class ZeroCopyCompletions {
  /** Send calls (sendmmsg messages) the kernel took with MSG_ZEROCOPY; the caller adds to it. */
  sends = 0;
  completed = 0;
  copied = 0;
  /** Notifications that could not be decoded (or whose control data was cut short). */
  malformed = 0;
  readonly #fd: number;
  /** msghdr at 0, control buffer after it. */
  readonly #msg = new NativeRegion(SIZEOF_MSGHDR + ERRQUEUE_CONTROL_SPACE);
  readonly #control: Uint8Array;
  #poller: Poller | undefined;

  constructor(fd: number) {
    this.#fd = fd;
    this.#control = new Uint8Array(this.#msg.buffer, SIZEOF_MSGHDR, ERRQUEUE_CONTROL_SPACE);
    // No name, no iovecs: a completion carries no payload, only the cmsg.
    this.#msg.setPointer(MMSG.name, 0);
    this.#msg.setPointer(MMSG.iov, 0);
    this.#msg.setSize(MMSG.iovlen, 0);
  }

  /** Zerocopy sends whose completion has not arrived yet. */
  get outstanding(): number {
    return Math.max(0, this.sends - this.completed);
  }

  /** Reads every notification queued now (never blocks). Returns how many send calls they completed. */
  drain(): number {
    const m = this.#msg;
    let done = 0;
    while (recvErrorQueue(this.#fd, m, 0)) {
      if (m.view.getInt32(MMSG.flags, true) & MSG_CTRUNC) this.malformed++;
      const p = parseZeroCopyNotifications(this.#control, m.view.getUint32(MMSG.controllen, true));
      this.malformed += p.malformed;
      for (const range of p.ranges) {
        done += range.count;
        this.completed += range.count;
        if (range.copied) this.copied += range.count;
      }
    }
    return done;
  }

  /**
   * Waits until every send counted in `sends` has completed, reading the
   * error queue whenever ppoll reports POLLERR (always reported, whatever
   * the events asked). Returns false if `timeoutMs` passed first.
   */
  waitAll(timeoutMs: number): boolean {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      this.drain();
      if (this.outstanding === 0) return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      this.#wait(Math.min(left, POLL_SLICE_MS));
    }
  }

  /** Blocks until the error queue has something or `ms` passes. */
  #wait(ms: number): void {
    if (!this.#poller) {
      this.#poller = new Poller();
      this.#poller.set([this.#fd], [0]);
    }
    this.#poller.wait(Math.ceil(ms * 1e6));
  }
}
