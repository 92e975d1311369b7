/**
 * sockaddr_in / sockaddr_in6 encoding and decoding. Pure functions over
 * byte arrays; the hot path (source checks) reads the raw bytes directly
 * and never decodes to strings.
 */
import { isIPv4 } from 'node:net';
import type { Endpoint } from '../wire/endpoint.js';
import { formatIpv6, ipv4ToInt, ipv6Bytes } from '../wire/ip-address.js';
import { AF_INET, AF_INET6, SIZEOF_SOCKADDR_IN, SIZEOF_SOCKADDR_IN6 } from './constants.js';

/**
 * Writes `address:port` of family `family` at `offset`; returns the length
 * to pass as socklen. An IPv4 address written for family 6 becomes the
 * IPv4-mapped IPv6 address (how a dual-stack socket reaches IPv4 peers).
 */
export function writeSockaddr(out: Uint8Array, offset: number, family: 4 | 6, address: string, port: number): number {
  const v = new DataView(out.buffer, out.byteOffset + offset, family === 4 ? SIZEOF_SOCKADDR_IN : SIZEOF_SOCKADDR_IN6);
  out.fill(0, offset, offset + v.byteLength);
  if (family === 4) {
    v.setUint16(0, AF_INET, true);
    v.setUint16(2, port, false);
    v.setUint32(4, ipv4ToInt(address), false);
    return SIZEOF_SOCKADDR_IN;
  }
  v.setUint16(0, AF_INET6, true);
  v.setUint16(2, port, false);
  const bytes = ipv6Bytes(isIPv4(address) ? `::ffff:${address}` : address);
  out.set(bytes, offset + 8);
  return SIZEOF_SOCKADDR_IN6;
}

/** Decodes a sockaddr written by the kernel. */
export function readSockaddr(buf: Uint8Array, offset: number): Endpoint {
  // The kernel wrote it, but a short or foreign buffer must give a typed
  // error, not a read past its end: family (2), port (2), then the address.
  if (!Number.isInteger(offset) || offset < 0 || offset + 4 > buf.length) throw new TypeError('sockaddr truncated');
  const v = new DataView(buf.buffer, buf.byteOffset + offset, buf.length - offset);
  const family = v.getUint16(0, true);
  const port = v.getUint16(2, false);
  if (family === AF_INET && offset + 8 > buf.length) throw new TypeError('sockaddr_in truncated');
  if (family === AF_INET6 && offset + 24 > buf.length) throw new TypeError('sockaddr_in6 truncated');
  if (family === AF_INET) return { family: 4, address: Array.from(buf.subarray(offset + 4, offset + 8)).join('.'), port };
  if (family === AF_INET6) return { family: 6, address: formatIpv6(buf.subarray(offset + 8, offset + 24)), port };
  throw new TypeError(`unexpected address family ${family}`);
}
