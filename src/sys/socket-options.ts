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
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOCK_NONBLOCK, SOL_SOCKET, SO_MARK, SO_RCVBUFFORCE, SO_SNDBUFFORCE } from './constants.js';

const SOCK_STREAM = 1;

export function setSocketMark(fd: number, mark: number): void {
  const c = libc();
  if (c.setsockopt(fd, SOL_SOCKET, SO_MARK, new Uint32Array([mark >>> 0]), 4) < 0) throw syscallError('setsockopt(SO_MARK)', c.errno(), `fd ${fd}`);
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
