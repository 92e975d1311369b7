/**
 * Transparent UDP sockets through FFI (node:dgram cannot set IP_TRANSPARENT
 * or read IP_ORIGDSTADDR):
 *
 * - the TPROXY listener: IP_TRANSPARENT (TPROXY only hands packets to
 *   transparent sockets) + IP_RECVORIGDSTADDR, bound to the entry's port;
 *   `DatagramReader` receives one datagram with recvmsg and decodes its
 *   source and its original destination from the cmsg;
 * - reply sockets: IP_TRANSPARENT lets them bind the original destination
 *   (an address that is not ours), so the client sees the reply come from
 *   the server it addressed. They are never connect()ed: TPROXY's socket
 *   lookup only prefers *connected* sockets over its listener, so an
 *   unconnected reply socket bound to server:port never steals the flow's
 *   datagrams from the listener.
 *
 * Every socket carries SO_MARK = the own mark, so Sluice's rules skip what
 * it sends. All sockets are non-blocking.
 */
import type { Endpoint } from '../wire/endpoint.js';
import { formatEndpoint } from '../wire/endpoint.js';
import { RawUdpSocket } from './udp-socket.js';
import { libc } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import { NativeRegion } from './memory.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';
import {
  IPV6_ORIGDSTADDR,
  IPV6_RECVORIGDSTADDR,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  IP_ORIGDSTADDR,
  IP_RECVORIGDSTADDR,
  IP_TRANSPARENT,
  MMSG,
  MSG_DONTWAIT,
  MSG_TRUNC,
  MSG_CTRUNC,
  SIZEOF_CMSGHDR,
  SIZEOF_MSGHDR,
  SOCKADDR_SPACE,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SO_MARK,
  SO_REUSEADDR,
} from './constants.js';
import { MAX_UDP_PAYLOAD } from '../wire/udp.js';

/** Opens a non-blocking transparent UDP socket bound to `at`, marked `mark`. */
export function openTransparentUdp(at: Endpoint, mark: number, opts: { recvOrigDst: boolean }): RawUdpSocket {
  const s = RawUdpSocket.open(at.family);
  try {
    s.setInt(SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt(SO_REUSEADDR)');
    s.setInt(SOL_SOCKET, SO_MARK, mark, 'setsockopt(SO_MARK)');
    // Bursts from many clients must not overflow the default ~200 KiB while the gateway's loop is busy
    // (seen: 4 of 100 datagrams per client lost at a burst of new TCP flows).
    s.setBuffers(4 << 20);
    if (at.family === 4) {
      s.setInt(SOL_IP, IP_TRANSPARENT, 1, 'setsockopt(IP_TRANSPARENT)');
      if (opts.recvOrigDst) s.setInt(SOL_IP, IP_RECVORIGDSTADDR, 1, 'setsockopt(IP_RECVORIGDSTADDR)');
    } else {
      // Separate v4 and v6 sockets: each family's cmsg arrives on its own socket, no v4-mapped cases.
      s.setInt(SOL_IPV6, IPV6_V6ONLY, 1, 'setsockopt(IPV6_V6ONLY)');
      s.setInt(SOL_IPV6, IPV6_TRANSPARENT, 1, 'setsockopt(IPV6_TRANSPARENT)');
      if (opts.recvOrigDst) s.setInt(SOL_IPV6, IPV6_RECVORIGDSTADDR, 1, 'setsockopt(IPV6_RECVORIGDSTADDR)');
    }
    s.bind(at);
    return s;
  } catch (err) {
    s.close();
    throw err;
  }
}

/** Largest UDP payload; longer datagrams cannot exist. */
const MAX_DATAGRAM = 65535;
const CONTROL_SPACE = 128;

export interface ReceivedDatagram {
  readonly src: Endpoint;
  /** The destination the client addressed (before TPROXY). */
  readonly dst: Endpoint;
  readonly data: Uint8Array;
}

/**
 * One msghdr with its buffers, reused for every receive (so the loop
 * allocates only the copy of each payload it hands on).
 */
export class DatagramReader {
  readonly #r: NativeRegion;
  readonly #nameOff = SIZEOF_MSGHDR; // sockaddr
  readonly #iovOff = SIZEOF_MSGHDR + SOCKADDR_SPACE;
  readonly #ctlOff = SIZEOF_MSGHDR + SOCKADDR_SPACE + 16;
  readonly #dataOff = SIZEOF_MSGHDR + SOCKADDR_SPACE + 16 + CONTROL_SPACE;

  constructor() {
    this.#r = new NativeRegion(this.#dataOff + MAX_DATAGRAM);
    this.#r.setPointer(this.#iovOff, this.#r.address + this.#dataOff);
    this.#r.setSize(this.#iovOff + 8, MAX_DATAGRAM);
  }

  /**
   * recvmsg(MSG_DONTWAIT) one datagram; null when none is queued. A
   * datagram without an original-destination cmsg (a socket without
   * IP_RECVORIGDSTADDR) gets `fallbackDst`.
   */
  receive(fd: number, fallbackDst: Endpoint): ReceivedDatagram | null {
    const c = libc();
    const r = this.#r;
    // msghdr fields the kernel rewrites are reset each call.
    r.setPointer(MMSG.name, r.address + this.#nameOff);
    r.view.setUint32(MMSG.namelen, SOCKADDR_SPACE, true);
    r.setPointer(MMSG.iov, r.address + this.#iovOff);
    r.setSize(MMSG.iovlen, 1);
    r.setPointer(MMSG.control, r.address + this.#ctlOff);
    r.setSize(MMSG.controllen, CONTROL_SPACE);
    r.view.setInt32(MMSG.flags, 0, true);
    // Bounded: EINTR retries at most a few times.
    for (let attempt = 0; attempt < 4; attempt++) {
      const n = Number(c.recvmsg(fd, r.address, MSG_DONTWAIT));
      if (n < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        if (e === EAGAIN) return null;
        throw syscallError('recvmsg(transparent UDP)', e);
      }
      const flags = r.view.getInt32(MMSG.flags, true);
      if (flags & MSG_TRUNC) continue; // cannot happen with a 64 KiB buffer; drop rather than deliver a cut datagram
      const src = readSockaddr(r.bytes, this.#nameOff);
      const dst = flags & MSG_CTRUNC ? fallbackDst : (this.#origDst() ?? fallbackDst);
      return { src, dst, data: r.bytes.slice(this.#dataOff, this.#dataOff + n) };
    }
    return null;
  }

  /** Walks the cmsgs for IP_ORIGDSTADDR / IPV6_ORIGDSTADDR (bounded by the control length). */
  #origDst(): Endpoint | undefined {
    const r = this.#r;
    const len = Number(r.view.getBigUint64(MMSG.controllen, true));
    let off = 0;
    while (off + SIZEOF_CMSGHDR <= len) {
      const cmsgLen = Number(r.view.getBigUint64(this.#ctlOff + off, true));
      const level = r.view.getInt32(this.#ctlOff + off + 8, true);
      const type = r.view.getInt32(this.#ctlOff + off + 12, true);
      if (cmsgLen < SIZEOF_CMSGHDR || off + cmsgLen > len) return undefined;
      if ((level === SOL_IP && type === IP_ORIGDSTADDR) || (level === SOL_IPV6 && type === IPV6_ORIGDSTADDR)) {
        return readSockaddr(r.bytes, this.#ctlOff + off + SIZEOF_CMSGHDR);
      }
      off += (cmsgLen + 7) & ~7;
    }
    return undefined;
  }
}

/** sendto() from a reply socket; false when the send buffer is full (the datagram is dropped, as UDP may). */
export class DatagramWriter {
  readonly #r = new NativeRegion(SOCKADDR_SPACE + MAX_DATAGRAM);

  send(sock: RawUdpSocket, to: Endpoint, data: Uint8Array): boolean {
    if (data.byteLength > MAX_UDP_PAYLOAD) throw new RangeError(`datagram of ${data.byteLength} bytes is too large for UDP`);
    const c = libc();
    const alen = writeSockaddr(this.#r.bytes, 0, sock.family, to.address, to.port);
    this.#r.bytes.set(data, SOCKADDR_SPACE);
    for (let attempt = 0; attempt < 4; attempt++) {
      const n = Number(c.sendto(sock.fd, this.#r.address + SOCKADDR_SPACE, data.byteLength, MSG_DONTWAIT, this.#r.address, alen));
      if (n >= 0) return true;
      const e = c.errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      throw syscallError('sendto(transparent UDP)', e, formatEndpoint(to));
    }
    return false;
  }
}
