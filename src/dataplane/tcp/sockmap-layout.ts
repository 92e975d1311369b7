import { isIPv4 } from 'node:net';
import { ipv4ToInt, ipv6Bytes } from '../../wire/ip-address.js';

const AF_INET = 2;
const AF_INET6 = 10;

/**
 * The map values of bpf/tcp_redirect.c, mirrored (keep in step with the C
 * structs; test/tcp/sockmap-layout.test.ts checks the sizes against the
 * object). All little-endian, as the kernel writes them on the hosts Sluice
 * runs on.
 */

/** struct tcp_dir: written by the programs, read (and deleted) by user space. */
export interface TcpDir {
  /** Bytes passed to the socket: user space reads them. */
  readonly passed: bigint;
  /** Bytes redirected to the peer inside the kernel. */
  readonly redirected: bigint;
  readonly armedGen: number;
  readonly throttledGen: number;
  /** Times the peer's backlog hit the limit. */
  readonly throttles: number;
}
export const TCP_DIR_SIZE = 32;

export function decodeTcpDir(b: Uint8Array): TcpDir {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    passed: v.getBigUint64(0, true),
    redirected: v.getBigUint64(8, true),
    armedGen: v.getUint32(16, true),
    throttledGen: v.getUint32(20, true),
    throttles: v.getUint32(24, true),
  };
}

/** struct tcp_ctl: written whole by user space, read by the verdict. */
export interface TcpCtl {
  /** The peer socket's cookie. */
  readonly peer: bigint;
  /** Bytes user space read from this socket and wrote to the peer. */
  readonly forwarded: bigint;
  readonly armGen: number;
  /** Backlog at the peer (bytes) past which the direction is throttled. */
  readonly limit: number;
}
export const TCP_CTL_SIZE = 24;

export function encodeTcpCtl(c: TcpCtl): Uint8Array {
  const b = new Uint8Array(TCP_CTL_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, c.peer, true);
  v.setBigUint64(8, c.forwarded, true);
  v.setUint32(16, c.armGen >>> 0, true);
  v.setUint32(20, c.limit >>> 0, true);
  return b;
}

/** A u64 map key (a socket cookie). */
export function cookieKey(cookie: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, cookie, true);
  return b;
}

/** A u32 map key or value. */
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

/** tcp_ports kinds (TCP_PORT_* in the C). */
export const TCP_PORT_LISTEN = 1;
export const TCP_PORT_UPSTREAM = 2;
export const TCP_PORT_SIZE = 24;

/**
 * struct tcp_port: the kind, and the local address a listen port is
 * bound to (the sock_ops program then takes only sockets on it); a
 * wildcard (or no address) takes the port on every address.
 */
export function encodeTcpPort(kind: number, address?: string): Uint8Array {
  const b = new Uint8Array(TCP_PORT_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, kind, true);
  if (address && address !== '0.0.0.0' && address !== '::') {
    if (isIPv4(address)) {
      v.setUint32(4, AF_INET, true);
      // Network order in memory: the bytes as written.
      v.setUint32(8, ipv4ToInt(address), false);
    } else {
      v.setUint32(4, AF_INET6, true);
      b.set(ipv6Bytes(address), 8);
    }
  }
  return b;
}

/** The placeholder offsets in the object's tcp_sock loads and the members they stand for. */
export const TCP_SOCK_PLACEHOLDERS: Readonly<Record<number, string>> = {
  0x7e01: 'write_seq',
  0x7e02: 'snd_una',
  0x7e03: 'bytes_acked',
};
