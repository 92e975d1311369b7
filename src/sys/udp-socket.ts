/**
 * A UDP socket owned through its file descriptor, for the batched tier's
 * worker. Non-blocking from the start; every failing call throws a
 * SyscallError that names the call and errno.
 */
import type { Endpoint } from '../wire/endpoint.js';
import { formatEndpoint } from '../wire/endpoint.js';
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
  SO_ATTACH_FILTER,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_REUSEPORT,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
} from './constants.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';
import { NativeRegion } from './memory.js';

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

  /** SO_REUSEPORT: other sockets of this user may bind the same address and share its datagrams (call before bind). */
  setReusePort(): void {
    this.setInt(SOL_SOCKET, SO_REUSEPORT, 1, 'setsockopt(SO_REUSEPORT)');
  }

  /**
   * Lets in only datagrams whose skb->mark is `mark` (a classic BPF socket
   * filter: load the mark, compare, keep or drop). Only a privileged
   * process (CAP_NET_ADMIN: SO_MARK, or an eBPF program) can mark packets,
   * so a socket that must hear from one program only cannot be fed by
   * anyone else. Call before bind, so nothing unfiltered is ever queued.
   */
  acceptOnlyMark(mark: number): void {
    const insns = [
      [0x20, 0, 0, 0xfffff000 + 20], // ld [SKF_AD_OFF + SKF_AD_MARK]
      [0x15, 0, 1, mark >>> 0], // jeq #mark, keep, drop
      [0x06, 0, 0, 0xffffffff], // keep: ret #-1 (the whole datagram)
      [0x06, 0, 0, 0], // drop: ret #0
    ] as const;
    const prog = new NativeRegion(insns.length * 8);
    insns.forEach(([code, jt, jf, k], i) => {
      prog.view.setUint16(i * 8, code, true);
      prog.view.setUint8(i * 8 + 2, jt);
      prog.view.setUint8(i * 8 + 3, jf);
      prog.view.setUint32(i * 8 + 4, k, true);
    });
    const fprog = new NativeRegion(16);
    fprog.view.setUint16(0, insns.length, true);
    fprog.setPointer(8, prog.address);
    const c = libc();
    if (c.setsockopt(this.fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog.bytes.subarray(0, 16), 16) < 0) throw syscallError('setsockopt(SO_ATTACH_FILTER)', c.errno());
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

/** Closes a socket fd this process owns but holds no RawUdpSocket for (one a dead worker opened). Never throws. */
export function closeFd(fd: number): void {
  try {
    libc().close(fd);
  } catch {
    /* no FFI: nothing could have opened it */
  }
}
