/**
 * splice(2) through a pipe: the TCP relay's in-kernel byte path where
 * sockmap is unavailable. Bytes go socket → pipe → socket as page
 * references; user space never sees the payload. Every call is
 * non-blocking (SPLICE_F_NONBLOCK, and the pipe is O_NONBLOCK); the caller
 * polls the sockets. Failures other than "try again" are SyscallErrors
 * naming the call and errno.
 */
import { libc, loadFfi } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import { SOL_SOCKET, SO_ERROR } from './constants.js';

const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const SHUT_WR = 1;
/** Returned by splice() when the call would block. */
export const WOULD_BLOCK = -1;

/** A non-blocking pipe: the relay's buffer between two sockets (64 KiB by default). */
export class SplicePipe {
  readonly readFd: number;
  readonly writeFd: number;
  #closed = false;

  constructor() {
    const c = libc();
    const fds = new Int32Array(2);
    if (c.pipe2(fds, O_NONBLOCK | O_CLOEXEC) !== 0) throw syscallError('pipe2', c.errno());
    this.readFd = fds[0]!;
    this.writeFd = fds[1]!;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const c = libc();
    c.close(this.readFd);
    c.close(this.writeFd);
  }
}

/**
 * Moves up to `len` bytes from `fdIn` to `fdOut` (one of them a pipe).
 * Returns the count moved (0: end of file on `fdIn`), or WOULD_BLOCK.
 * Throws SyscallError('splice', …) for anything else (ECONNRESET, EPIPE).
 */
export function splice(fdIn: number, fdOut: number, len: number): number {
  const c = libc();
  for (;;) {
    const r = Number(c.splice(fdIn, 0, fdOut, 0, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
    if (r >= 0) return r;
    const e = c.errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return WOULD_BLOCK;
    throw syscallError('splice', e, `fd ${fdIn} -> fd ${fdOut}`);
  }
}

/** shutdown(fd, SHUT_WR): the half-close's FIN. A socket already closed by its peer is not an error (ENOTCONN). */
export function shutdownWrite(fd: number): void {
  const c = libc();
  if (c.shutdown(fd, SHUT_WR) === 0) return;
  const e = c.errno();
  if (e === ENOTCONN) return;
  throw syscallError('shutdown', e, `fd ${fd}`);
}

const ENOTCONN = 107;

/** The socket's pending error (SO_ERROR, which also clears it): 0 if none. */
export function socketError(fd: number): number {
  const c = libc();
  const value = new Int32Array(1);
  const len = new Uint32Array([4]);
  if (c.getsockopt(fd, SOL_SOCKET, SO_ERROR, value, len) !== 0) throw syscallError('getsockopt(SO_ERROR)', c.errno(), `fd ${fd}`);
  return value[0]!;
}

/** Why splice(2) cannot be used here (no FFI), or undefined when it can. */
export function spliceUnavailable(): string | undefined {
  const ffi = loadFfi();
  return ffi.ok ? undefined : ffi.reason;
}
