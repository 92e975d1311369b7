/**
 * splice(2) and tee(2) through pipes: the TCP relay's in-kernel byte path
 * where sockmap is unavailable, and the live fan-out's shared pages (one
 * source pipe tee'd into a pipe per client, each spliced into its socket). Bytes go socket → pipe → socket as page
 * references; user space never sees the payload. Every call is
 * non-blocking (SPLICE_F_NONBLOCK, and the pipe is O_NONBLOCK); the caller
 * polls the sockets. Failures other than "try again" are SyscallErrors
 * naming the call and errno.
 */
import { libc, loadFfi } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import { MSG_DONTWAIT, SOL_SOCKET, SO_ERROR } from './constants.js';

const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const SHUT_WR = 1;
/** Returned by splice() when the call would block. */
export const WOULD_BLOCK = -1;

/** fcntl(2) commands on pipes, and ioctl FIONREAD (bytes queued in a pipe or socket). */
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const FIONREAD = 0x541b;

/**
 * A non-blocking pipe: the relay's buffer between two sockets (64 KiB by
 * default). With `size`, F_SETPIPE_SZ asks for that capacity; the kernel
 * rounds it up to a power-of-two number of pages, and an unprivileged
 * process is capped by /proc/sys/fs/pipe-max-size (EPERM: the pipe keeps
 * its default size; `size` then says what it has).
 */
export class SplicePipe {
  readonly readFd: number;
  readonly writeFd: number;
  /** Capacity in bytes (F_GETPIPE_SZ). */
  readonly size: number;
  #closed = false;

  constructor(size?: number) {
    const c = libc();
    const fds = new Int32Array(2);
    if (c.pipe2(fds, O_NONBLOCK | O_CLOEXEC) !== 0) throw syscallError('pipe2', c.errno());
    this.readFd = fds[0]!;
    this.writeFd = fds[1]!;
    if (size !== undefined && c.fcntlInt(this.writeFd, F_SETPIPE_SZ, size) < 0 && c.errno() !== EPERM) {
      const e = c.errno();
      this.close();
      throw syscallError('fcntl(F_SETPIPE_SZ)', e, `${size} bytes`);
    }
    const got = c.fcntlInt(this.writeFd, F_GETPIPE_SZ, 0);
    if (got < 0) {
      const e = c.errno();
      this.close();
      throw syscallError('fcntl(F_GETPIPE_SZ)', e);
    }
    this.size = got;
  }

  /** Bytes waiting in the pipe (ioctl FIONREAD). */
  queued(): number {
    return bytesQueued(this.readFd);
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
 * Runs one non-blocking call until it is not interrupted: its count, or
 * WOULD_BLOCK for EAGAIN; any other errno is a SyscallError naming `op`.
 */
function nonBlocking(call: () => number, op: string, detail: () => string): number {
  for (;;) {
    const r = call();
    if (r >= 0) return r;
    const e = libc().errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return WOULD_BLOCK;
    throw syscallError(op, e, detail());
  }
}

/**
 * Moves up to `len` bytes from `fdIn` to `fdOut` (one of them a pipe).
 * Returns the count moved (0: end of file on `fdIn`), or WOULD_BLOCK.
 * Throws SyscallError('splice', …) for anything else (ECONNRESET, EPIPE).
 */
export function splice(fdIn: number, fdOut: number, len: number): number {
  const c = libc();
  return nonBlocking(
    () => Number(c.splice(fdIn, 0, fdOut, 0, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)),
    'splice',
    () => `fd ${fdIn} -> fd ${fdOut}`,
  );
}

/**
 * tee(2): duplicates up to `len` bytes at the head of pipe `fdIn` into pipe
 * `fdOut` without consuming them; the pages are shared, not copied.
 * Returns the count duplicated (0: `fdIn` empty), or WOULD_BLOCK when
 * `fdOut` is full. Throws SyscallError('tee', …) otherwise.
 */
export function tee(fdIn: number, fdOut: number, len: number): number {
  const c = libc();
  return nonBlocking(
    () => Number(c.tee(fdIn, fdOut, len, SPLICE_F_NONBLOCK)),
    'tee',
    () => `fd ${fdIn} -> fd ${fdOut}`,
  );
}

/** Bytes queued for reading on `fd` (a pipe or socket): ioctl(FIONREAD). */
export function bytesQueued(fd: number): number {
  const c = libc();
  const v = new Int32Array(1);
  if (c.ioctlInt(fd, FIONREAD, v) < 0) throw syscallError('ioctl(FIONREAD)', c.errno(), `fd ${fd}`);
  return v[0]!;
}

/**
 * write(2) of `len` bytes of `buf` to a non-blocking descriptor. Returns
 * the count written, or WOULD_BLOCK. Throws SyscallError('write', …).
 */
export function writeSome(fd: number, buf: Uint8Array, len: number): number {
  const c = libc();
  return nonBlocking(
    () => Number(c.write(fd, buf, len)),
    'write',
    () => `fd ${fd}`,
  );
}

const MSG_PEEK = 0x2;

/**
 * recv(2) with MSG_PEEK: copies up to `buf.byteLength` bytes of what waits
 * in a stream socket's receive queue into `buf` without taking them (the
 * window does not open). Returns the count (0: end of file next), or
 * WOULD_BLOCK. Throws SyscallError('recv', …).
 */
export function peekSome(fd: number, buf: Uint8Array): number {
  return recvFlags(fd, buf, buf.byteLength, MSG_PEEK | MSG_DONTWAIT, 'recv(MSG_PEEK)');
}

/** recv(2) of up to `len` bytes into `buf` (taking them). Returns the count, or WOULD_BLOCK. Throws SyscallError('recv', …). */
export function takeSome(fd: number, buf: Uint8Array, len: number): number {
  return recvFlags(fd, buf, Math.min(len, buf.byteLength), MSG_DONTWAIT, 'recv');
}

function recvFlags(fd: number, buf: Uint8Array, len: number, flags: number, call: string): number {
  const c = libc();
  return nonBlocking(
    () => Number(c.recv(fd, buf, len, flags)),
    call,
    () => `fd ${fd}`,
  );
}

/**
 * read(2) of one datagram (or up to `buf.byteLength` bytes) from a
 * non-blocking descriptor into `buf`. Returns the count, or WOULD_BLOCK.
 * Throws SyscallError('read', …).
 */
export function readSome(fd: number, buf: Uint8Array): number {
  const c = libc();
  return nonBlocking(
    () => Number(c.read(fd, buf, buf.byteLength)),
    'read',
    () => `fd ${fd}`,
  );
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
const EPERM = 1;

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
