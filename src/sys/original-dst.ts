/**
 * The destination a redirected TCP connection was really for. REDIRECT
 * rewrites the destination to our listener; conntrack remembers the
 * original, and getsockopt(SO_ORIGINAL_DST) on the accepted socket reads it
 * back (SOL_IP for IPv4, SOL_IPV6 / IP6T_SO_ORIGINAL_DST for IPv6).
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../wire/endpoint.js';
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import { IP6T_SO_ORIGINAL_DST, SOCKADDR_SPACE, SOL_IP, SOL_IPV6, SO_ORIGINAL_DST } from './constants.js';
import { readSockaddr } from './sockaddr.js';

/**
 * The file descriptor under a node:net socket. Node has no public API for
 * it; on Linux a connected TCP socket's handle (TCPWrap) exposes `fd`
 * (libuv's uv_fileno). The fd stays owned by Node: use it only for
 * getsockopt/setsockopt, never close or read it. Throws if there is none
 * (not yet connected, already destroyed, or a platform without `fd`).
 */
export function socketFd(sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the socket has no file descriptor (not connected, destroyed, or not Linux)');
  return fd;
}

/**
 * SO_ORIGINAL_DST of an accepted, redirected connection. `family` is the
 * connection's (a v4 client on a v4 listener: 4). Throws SyscallError
 * (ENOENT: the connection was not NATed, i.e. it came to the listener
 * directly).
 */
export function originalDst(sock: Socket, family: 4 | 6): Endpoint {
  const c = libc();
  const addr = new Uint8Array(SOCKADDR_SPACE);
  const len = new Uint32Array([SOCKADDR_SPACE]);
  const [level, name, op] =
    family === 4 ? [SOL_IP, SO_ORIGINAL_DST, 'getsockopt(SO_ORIGINAL_DST)'] : [SOL_IPV6, IP6T_SO_ORIGINAL_DST, 'getsockopt(IP6T_SO_ORIGINAL_DST)'];
  if (c.getsockopt(socketFd(sock), level, name, addr, len) < 0) throw syscallError(op, c.errno(), `${sock.remoteAddress}:${sock.remotePort}`);
  return readSockaddr(addr, 0);
}
