/**
 * SO_MARK on Sluice's own sockets, so transparent interception never
 * takes its own traffic (the rules accept packets with the own mark before
 * any entry; see nftables.ts). Which sockets must carry it: the UDP
 * transport to the peer gateway, every connection and socket the
 * destination gateway opens towards real servers, and the UDP reply
 * sockets (transparent-udp.ts marks those itself). Needs CAP_NET_ADMIN,
 * which transparent mode needs anyway.
 *
 * The mark must be on the socket before its first packet: for TCP the SYN
 * decides NAT for the whole connection, so `markedTcpSocket` creates the
 * descriptor itself, marks it, and hands it to node:net to connect; a
 * dgram socket is marked after bind and before its first send.
 */
import net from 'node:net';
import type dgram from 'node:dgram';
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import { AF_INET, AF_INET6, SOCKADDR_SPACE, SOCK_CLOEXEC, SOCK_NONBLOCK, SOL_SOCKET, SO_COOKIE, SO_MARK, SO_RCVBUFFORCE, SO_SNDBUFFORCE } from './constants.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';

const SOCK_STREAM = 1;

/** The socket's cookie (SO_COOKIE): the kernel's id for it, the key eBPF programs see (bpf_get_socket_cookie). */
export function socketCookie(fd: number): bigint {
  const c = libc();
  const v = new BigUint64Array(1);
  if (c.getsockopt(fd, SOL_SOCKET, SO_COOKIE, v, new Uint32Array([8])) < 0) throw syscallError('getsockopt(SO_COOKIE)', c.errno(), `fd ${fd}`);
  return v[0]!;
}

export function setSocketMark(fd: number, mark: number): void {
  const c = libc();
  if (c.setsockopt(fd, SOL_SOCKET, SO_MARK, new Uint32Array([mark >>> 0]), 4) < 0) throw syscallError('setsockopt(SO_MARK)', c.errno(), `fd ${fd}`);
}

/**
 * An unconnected node:net socket already bound to an ephemeral port of the
 * wildcard address, and that port: the sockmap path of tcp-redirect
 * registers the port so that its sock_ops program knows the connection as
 * Sluice's the moment it is established. Call `.connect(port, host)` on it.
 */
export function boundTcpSocket(family: 4 | 6, options: { allowHalfOpen?: boolean } = {}): { socket: net.Socket; port: number } {
  const c = libc();
  const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw syscallError('socket(SOCK_STREAM)', c.errno());
  let port: number;
  try {
    const addr = new Uint8Array(SOCKADDR_SPACE);
    const len = writeSockaddr(addr, 0, family, family === 4 ? '0.0.0.0' : '::', 0);
    if (c.bind(fd, addr, len) < 0) throw syscallError('bind', c.errno(), 'an ephemeral port');
    const lenOut = new Uint32Array([SOCKADDR_SPACE]);
    if (c.getsockname(fd, addr, lenOut) < 0) throw syscallError('getsockname', c.errno());
    port = readSockaddr(addr, 0).port;
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return { socket: new net.Socket({ fd, readable: true, writable: true, ...options }), port };
}

/** An unconnected node:net socket whose packets, SYN included, carry `mark`; call `.connect(port, host)` on it. */
export function markedTcpSocket(family: 4 | 6, mark: number): net.Socket {
  const c = libc();
  const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw syscallError('socket(SOCK_STREAM)', c.errno());
  try {
    setSocketMark(fd, mark);
  } catch (err) {
    c.close(fd);
    throw err;
  }
  // node:net adopts the descriptor (and closes it with the socket).
  return new net.Socket({ fd, readable: true, writable: true });
}

/**
 * Marks a *bound* dgram socket (before its first send). node:dgram keeps
 * its handle under an internal symbol; `_handle` would work too but is
 * deprecated (DEP0112) and warns.
 */
export function markDgramSocket(sock: dgram.Socket, mark: number): void {
  setSocketMark(dgramSocketFd(sock), mark);
}

/** The descriptor of a bound node:dgram socket (Node keeps it on an internal handle). */
export function dgramSocketFd(sock: dgram.Socket): number {
  const sym = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'state symbol');
  const state = sym ? (sock as unknown as Record<symbol, { handle?: { fd?: unknown } }>)[sym] : undefined;
  const fd = state?.handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('dgramSocketFd: the socket is not bound (no descriptor yet), or this Node keeps it elsewhere');
  return fd;
}

/**
 * Socket buffers beyond net.core.rmem_max/wmem_max (SO_RCVBUFFORCE and
 * SO_SNDBUFFORCE, which need CAP_NET_ADMIN): node:dgram's setRecvBufferSize
 * is capped, and a stock host's 208 KiB is 30 ms of a 50 Mbit/s link. False
 * when not allowed (the capped size stays).
 */
export function forceDgramBuffers(sock: dgram.Socket, bytes: number): boolean {
  const c = libc();
  const fd = dgramSocketFd(sock);
  const v = new Int32Array([bytes]);
  return c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, v, 4) === 0 && c.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, v, 4) === 0;
}
