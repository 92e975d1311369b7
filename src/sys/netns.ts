/**
 * Identity of the calling thread's network namespace. Its nsfs inode is
 * what paths are keyed by (as `ip netns` and bpffs pins show it), but an
 * inode is reused once the namespace is gone; the netns cookie
 * (SO_NETNS_COOKIE) is unique for the boot, so state kept on disk for a
 * namespace is checked against it.
 */
import { statSync } from 'node:fs';
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import { AF_INET, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET, SO_NETNS_COOKIE } from './constants.js';

/** The nsfs inode of this process's network namespace. */
export function netnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

/** The namespace's cookie, as a decimal string (a socket's SO_NETNS_COOKIE). */
export function netnsCookie(): string {
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw syscallError('socket', c.errno());
  try {
    const v = new BigUint64Array(1);
    const len = new Uint32Array([8]);
    if (c.getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, v, len) < 0) throw syscallError('getsockopt(SO_NETNS_COOKIE)', c.errno());
    return v[0]!.toString();
  } finally {
    c.close(fd);
  }
}
