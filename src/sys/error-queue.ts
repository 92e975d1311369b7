/**
 * ICMP errors about datagrams a UDP socket sent, read from the socket's
 * error queue.
 *
 * An unconnected UDP socket hears nothing of ICMP errors unless
 * IP_RECVERR (IPv4) / IPV6_RECVERR is on. With it, each ICMP error about a
 * datagram the socket sent (port/host/network unreachable, fragmentation
 * needed, ...) is queued on the socket's error queue, where
 * recvmsg(MSG_ERRQUEUE) returns it with `msg_name` = the address and port
 * the refused datagram was sent to, and an IP(V6)_RECVERR cmsg holding a
 * `struct sock_extended_err` (errno, origin, ICMP type and code) followed by
 * the address of the host that sent the ICMP message. See ip(7), ipv6(7).
 *
 * Two side effects a reader must handle (RecvErrSocket callers do):
 * - the kernel also sets the socket's pending error (sk_err), which the
 *   *next* recv or send on the socket returns instead of doing its job
 *   (once): a send that fails with one of STALE_SOCKET_ERRNOS may be
 *   reporting an earlier ICMP error for another destination and is
 *   retried; a receive that fails with one is simply called again;
 * - poll reports POLLERR for as long as the error queue is not empty, so
 *   it must be drained whenever POLLERR is seen or a poller busy-loops.
 *
 * The parser is a pure function over a control buffer (tested with
 * hand-built input); the reader does the syscalls and never blocks.
 */
import { constants } from 'node:os';
import { libc } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import {
  IP_RECVERR,
  IPV6_RECVERR,
  MMSG,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  SIZEOF_CMSGHDR,
  SIZEOF_MSGHDR,
  SIZEOF_SOCK_EXTENDED_ERR,
  SOCKADDR_SPACE,
  SO_EE_ORIGIN_ICMP,
  SO_EE_ORIGIN_ICMP6,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SO_ERROR,
} from './constants.js';
import { NativeRegion } from './memory.js';

const E = constants.errno;
/** Linux numbers for the two Node's typings leave out. */
const EHOSTDOWN = (E as Record<string, number>).EHOSTDOWN ?? 112;
const ENONET = (E as Record<string, number>).ENONET ?? 64;

/**
 * errnos a pending socket error set by an ICMP message can carry (the
 * kernel's icmp_err_convert and its ICMPv6 counterpart): a send or receive
 * failing with one of them may be reporting an earlier error, not its own.
 */
export const STALE_SOCKET_ERRNOS: ReadonlySet<number> = new Set(
  [E.ECONNREFUSED, E.EHOSTUNREACH, E.ENETUNREACH, EHOSTDOWN, ENONET, E.EPROTO, E.ENOPROTOOPT, E.EMSGSIZE, E.EOPNOTSUPP, E.EACCES].filter(
    (x): x is number => typeof x === 'number',
  ),
);

/** The first sock_extended_err of one error-queue message. */
export interface ExtendedError {
  readonly errno: number;
  /** SO_EE_ORIGIN_*: 2 ICMP, 3 ICMPv6; 1 is a local error the send already returned. */
  readonly origin: number;
  readonly type: number;
  readonly code: number;
}

/** CMSG_ALIGN on LP64. */
const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Finds the IP_RECVERR / IPV6_RECVERR cmsg in the control data of one
 * recvmsg(MSG_ERRQUEUE) (`length` = msg_controllen after the call).
 * Never throws: anything truncated or inconsistent yields undefined.
 */
export function parseExtendedError(control: Uint8Array, length = control.byteLength): ExtendedError | undefined {
  const end = Math.min(Math.max(0, length), control.byteLength);
  const v = new DataView(control.buffer, control.byteOffset, end);
  for (let off = 0; off + SIZEOF_CMSGHDR <= end;) {
    const len = v.getUint32(off, true);
    if (v.getUint32(off + 4, true) !== 0 || len < SIZEOF_CMSGHDR || off + len > end) return undefined;
    const level = v.getInt32(off + 8, true);
    const type = v.getInt32(off + 12, true);
    if ((level === SOL_IP && type === IP_RECVERR) || (level === SOL_IPV6 && type === IPV6_RECVERR)) {
      if (len - SIZEOF_CMSGHDR < SIZEOF_SOCK_EXTENDED_ERR) return undefined;
      const e = off + SIZEOF_CMSGHDR;
      return { errno: v.getUint32(e, true), origin: v.getUint8(e + 4), type: v.getUint8(e + 5), code: v.getUint8(e + 6) };
    }
    off += align8(len);
  }
  return undefined;
}

/**
 * Turns on the error queue for ICMP errors. An IPv6 socket gets both
 * options: on a dual-stack (`::`) socket the IPv4 one covers datagrams sent
 * to IPv4-mapped addresses. Throws SyscallError if the kernel refuses.
 */
export function enableRecvErr(fd: number, family: 4 | 6): void {
  const c = libc();
  const one = new Int32Array([1]);
  const opts: [number, number, string][] =
    family === 4
      ? [[SOL_IP, IP_RECVERR, 'IP_RECVERR']]
      : [
          [SOL_IPV6, IPV6_RECVERR, 'IPV6_RECVERR'],
          [SOL_IP, IP_RECVERR, 'IP_RECVERR'],
        ];
  for (const [level, name, text] of opts) {
    if (c.setsockopt(fd, level, name, one, 4) < 0) throw syscallError(`setsockopt(${text})`, c.errno());
  }
}

/** Room for one IP(V6)_RECVERR cmsg: header + sock_extended_err + offender sockaddr_in6, with slack. */
export const ERRQUEUE_CONTROL_SPACE = 128;

/**
 * One non-blocking recvmsg(MSG_ERRQUEUE) into the msghdr at the start of
 * `m`, laid out as msghdr, then a name buffer of `nameSpace` bytes (0: no
 * name wanted), then ERRQUEUE_CONTROL_SPACE bytes of control. Resets the
 * fields the kernel rewrites on every call; retries after a signal.
 * Returns true when a message was read, false when the queue is empty;
 * any other failure throws SyscallError('recvmsg(MSG_ERRQUEUE)').
 */
export function recvErrorQueue(fd: number, m: NativeRegion, nameSpace: number): boolean {
  const c = libc();
  for (;;) {
    if (nameSpace > 0) m.setPointer(MMSG.name, m.address + SIZEOF_MSGHDR);
    m.view.setUint32(MMSG.namelen, nameSpace, true);
    m.setPointer(MMSG.control, m.address + SIZEOF_MSGHDR + nameSpace);
    m.setSize(MMSG.controllen, ERRQUEUE_CONTROL_SPACE);
    m.view.setInt32(MMSG.flags, 0, true);
    if (c.recvmsg(fd, m.address, MSG_ERRQUEUE | MSG_DONTWAIT) >= 0) return true;
    const e = c.errno();
    if (e === EAGAIN) return false;
    if (e !== EINTR) throw syscallError('recvmsg(MSG_ERRQUEUE)', e);
  }
}

/**
 * Reads one socket's error queue. `drain` hands each ICMP error to the
 * callback with the destination's raw sockaddr (in `nameBytes` at offset
 * 0, valid during the call only); local errors and errors without a
 * destination are counted in `ignored`.
 */
export class ErrorQueueReader {
  readonly #fd: number;
  /** msghdr, then the name buffer, then the control buffer. */
  readonly #msg = new NativeRegion(SIZEOF_MSGHDR + SOCKADDR_SPACE + ERRQUEUE_CONTROL_SPACE);
  readonly nameBytes: Uint8Array;
  readonly #control: Uint8Array;
  /** Messages read that were not ICMP errors about a destination (local errors, zerocopy, truncated). */
  ignored = 0;

  constructor(fd: number) {
    this.#fd = fd;
    this.nameBytes = new Uint8Array(this.#msg.buffer, SIZEOF_MSGHDR, SOCKADDR_SPACE);
    this.#control = new Uint8Array(this.#msg.buffer, SIZEOF_MSGHDR + SOCKADDR_SPACE, ERRQUEUE_CONTROL_SPACE);
    // No iovecs: the quoted payload is not wanted (MSG_TRUNC is set, harmless).
    this.#msg.setPointer(MMSG.iov, 0);
    this.#msg.setSize(MMSG.iovlen, 0);
  }

  /**
   * Clears the socket's pending error (getsockopt SO_ERROR reads and
   * resets it). Reading the queue clears it too, but an ICMP error that
   * found the queue full (it is charged to the receive buffer) leaves
   * the pending error alone, and poll would report POLLERR until a
   * receive or a send took it. Returns the errno it held, 0 if none.
   */
  clearPendingError(): number {
    const c = libc();
    const v = new Int32Array(1);
    const len = new Uint32Array([4]);
    if (c.getsockopt(this.#fd, SOL_SOCKET, SO_ERROR, v, len) < 0) return 0;
    return v[0]!;
  }

  /**
   * Reads up to `max` queued messages without blocking; returns how many
   * were read (fewer than `max` means the queue is empty now).
   */
  drain(onError: (name: Uint8Array, error: ExtendedError) => void, max = 256): number {
    const m = this.#msg;
    let n = 0;
    while (n < max) {
      if (!recvErrorQueue(this.#fd, m, SOCKADDR_SPACE)) return n;
      n++;
      const err = parseExtendedError(this.#control, m.view.getUint32(MMSG.controllen, true));
      // ICMP errors name the refused datagram's destination; local ones have no name.
      const named = m.view.getUint32(MMSG.namelen, true) >= 8;
      if (err && named && (err.origin === SO_EE_ORIGIN_ICMP || err.origin === SO_EE_ORIGIN_ICMP6)) onError(this.nameBytes, err);
      else this.ignored++;
    }
    return n;
  }
}
