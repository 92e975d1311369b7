/**
 * errno numbers to names, and the one way FFI failures become errors:
 * SyscallError naming the call and the symbolic errno.
 */
import { constants } from 'node:os';
import { SyscallError } from '../errors.js';

const names = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  // Several names can share a number (EAGAIN/EWOULDBLOCK): keep the first, the usual one.
  if (!names.has(value)) names.set(value, name);
}

export const EINTR = constants.errno.EINTR;
export const EAGAIN = constants.errno.EAGAIN;
export const ENOBUFS = constants.errno.ENOBUFS;
export const EINVAL = constants.errno.EINVAL;
export const EIO = constants.errno.EIO;
export const EMSGSIZE = constants.errno.EMSGSIZE;
export const ENOPROTOOPT = constants.errno.ENOPROTOOPT;
export const ENOSYS = constants.errno.ENOSYS;

/** `EHOSTUNREACH` for 113; `E<n>` for numbers Node does not name. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}

/** Builds the typed error for a failed call. */
export function syscallError(op: string, errno: number, detail?: string): SyscallError {
  return new SyscallError(op, errnoName(errno), detail);
}
