/**
 * A UDP socket owned through its file descriptor, for the batched tier's
 * worker. Non-blocking from the start; every failing call throws a
 * SyscallError that names the call and errno.
 */
import type { Endpoint } from '../policy/endpoint.js';
import { formatEndpoint } from '../policy/endpoint.js';
import { libc } from './ffi.js';
import { syscallError } from './errno.js';
import {
  AF_INET,
  AF_INET6,
  IPPROTO_UDP,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCKADDR_SPACE,
  SOL_SOCKET,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
} from './constants.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';

export class RawUdpSocket {
  readonly family: 4 | 6;
  #fd: number;

  private constructor(fd: number, family: 4 | 6) {
    this.#fd = fd;
    this.family = family;
  }

  /** socket(AF_INET[6], SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP). */
  static open(family: 4 | 6): RawUdpSocket {
    const c = libc();
    const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) throw syscallError('socket', c.errno());
    return new RawUdpSocket(fd, family);
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error('socket is closed');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  bind(ep: Endpoint): void {
    const c = libc();
    const addr = new Uint8Array(SOCKADDR_SPACE);
    const len = writeSockaddr(addr, 0, this.family, ep.address, ep.port);
    if (c.bind(this.fd, addr, len) < 0) throw syscallError('bind', c.errno(), formatEndpoint(ep));
  }

  /** getsockname(): the bound address, with the port the kernel chose for port 0. */
  localEndpoint(): Endpoint {
    const c = libc();
    const addr = new Uint8Array(SOCKADDR_SPACE);
    const len = new Uint32Array([SOCKADDR_SPACE]);
    if (c.getsockname(this.fd, addr, len) < 0) throw syscallError('getsockname', c.errno());
    return readSockaddr(addr, 0);
  }

  setInt(level: number, name: number, value: number, op = 'setsockopt'): void {
    const c = libc();
    if (c.setsockopt(this.fd, level, name, new Int32Array([value]), 4) < 0) throw syscallError(op, c.errno());
  }

  getInt(level: number, name: number, op = 'getsockopt'): number {
    const c = libc();
    const v = new Int32Array(1);
    const len = new Uint32Array([4]);
    if (c.getsockopt(this.fd, level, name, v, len) < 0) throw syscallError(op, c.errno());
    return v[0]!;
  }

  /**
   * Asks for `bytes` of receive and send buffer. With CAP_NET_ADMIN the
   * *FORCE options exceed net.core.rmem_max/wmem_max (a relay's bursts need
   * room); without it the kernel caps the plain request. Returns what the
   * kernel granted (it reports double the usable size).
   */
  setBuffers(bytes: number): { receive: number; send: number } {
    for (const [force, plain] of [
      [SO_RCVBUFFORCE, SO_RCVBUF],
      [SO_SNDBUFFORCE, SO_SNDBUF],
    ] as const) {
      try {
        this.setInt(SOL_SOCKET, force, bytes);
      } catch {
        this.setInt(SOL_SOCKET, plain, bytes);
      }
    }
    return { receive: this.getInt(SOL_SOCKET, SO_RCVBUF), send: this.getInt(SOL_SOCKET, SO_SNDBUF) };
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
