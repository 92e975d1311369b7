/**
 * Ethernet frames carrying IPv4/IPv6 UDP datagrams, built byte by byte for
 * raw-frame tests (injected with an AF_PACKET socket): every header field
 * can lie, so a test can feed a relay what no socket would ever send.
 * Pure functions, no I/O.
 */
import { ipv4ToInt, ipv6Bytes } from '../../src/wire/ip-address.js';

export interface UdpFrameSpec {
  readonly family: 4 | 6;
  readonly srcMac: Buffer;
  readonly dstMac: Buffer;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly payload: Buffer;
  /** Added to the IPv4 total length / IPv6 payload length field. */
  readonly ipLengthDelta?: number;
  /** Added to the UDP length field (the checksum covers min(stated, actual) bytes, as a receiver trims). */
  readonly udpLengthDelta?: number;
  /** Bytes after the datagram, beyond every length field (trailing garbage). */
  readonly trailing?: number;
  /** IPv4 options (a multiple of 4 bytes). */
  readonly ipOptions?: Buffer;
  readonly badIpChecksum?: boolean;
  /**
   * valid (default); zero (no checksum); bad (valid, then one payload bit
   * flipped: `badAt` picks the byte, default the last); seed (the
   * pseudo-header sum alone, as a sender with checksum offload leaves it
   * for the device: CHECKSUM_PARTIAL); or a fixed value.
   */
  readonly udpChecksum?: 'valid' | 'zero' | 'bad' | 'seed' | number;
  readonly badAt?: number;
  /** An 802.1Q tag with this VLAN id after the MAC addresses. */
  readonly vlan?: number;
}

/** 16-bit ones-complement sum of `parts` (big-endian words), not complemented. */
export function onesSum(...parts: Buffer[]): number {
  let sum = 0;
  const all = Buffer.concat(parts);
  for (let i = 0; i < all.length; i += 2) sum += (all[i]! << 8) | (i + 1 < all.length ? all[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function addrBytes(family: 4 | 6, address: string): Buffer {
  if (family === 6) return Buffer.from(ipv6Bytes(address));
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipv4ToInt(address));
  return b;
}

function pseudoHeader(family: 4 | 6, src: Buffer, dst: Buffer, udpLength: number): Buffer {
  if (family === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = 17;
    p.writeUInt16BE(udpLength, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(udpLength, 32);
  p[39] = 17;
  return p;
}

/** The UDP header and payload, with the checksum as the spec asks. */
export function udpDatagram(spec: UdpFrameSpec): Buffer {
  const actual = 8 + spec.payload.length;
  const stated = actual + (spec.udpLengthDelta ?? 0);
  const udp = Buffer.alloc(actual);
  udp.writeUInt16BE(spec.sport, 0);
  udp.writeUInt16BE(spec.dport, 2);
  udp.writeUInt16BE(stated & 0xffff, 4);
  spec.payload.copy(udp, 8);
  const src = addrBytes(spec.family, spec.src);
  const dst = addrBytes(spec.family, spec.dst);
  const covered = Math.max(8, Math.min(stated, actual));
  const pseudo = pseudoHeader(spec.family, src, dst, covered);
  const mode = spec.udpChecksum ?? 'valid';
  let check: number;
  if (mode === 'zero') check = 0;
  else if (mode === 'seed') check = onesSum(pseudo);
  else if (typeof mode === 'number') check = mode;
  else {
    check = 0xffff - onesSum(pseudo, udp.subarray(0, covered));
    if (check === 0) check = 0xffff; // 0 means "no checksum" (IPv4)
  }
  udp.writeUInt16BE(check, 6);
  if (mode === 'bad') {
    const at = 8 + (spec.badAt ?? spec.payload.length - 1);
    udp[at] = udp[at]! ^ 0x01;
  }
  return udp;
}

function ethernet(spec: UdpFrameSpec, type: number): Buffer {
  const tag = spec.vlan === undefined ? 0 : 4;
  const eth = Buffer.alloc(14 + tag);
  spec.dstMac.copy(eth, 0);
  spec.srcMac.copy(eth, 6);
  if (tag) {
    eth.writeUInt16BE(0x8100, 12);
    eth.writeUInt16BE(spec.vlan! & 0xfff, 14);
  }
  eth.writeUInt16BE(type, 12 + tag);
  return eth;
}

function ipv4Header(spec: UdpFrameSpec, payloadLength: number, fragment?: { offset: number; more: boolean; id: number }): Buffer {
  const opts = spec.ipOptions ?? Buffer.alloc(0);
  if (opts.length % 4) throw new Error('IPv4 options must be a multiple of 4 bytes');
  const ip = Buffer.alloc(20 + opts.length);
  ip[0] = 0x40 | ((20 + opts.length) / 4);
  ip.writeUInt16BE((ip.length + payloadLength + (spec.ipLengthDelta ?? 0)) & 0xffff, 2);
  ip.writeUInt16BE(fragment?.id ?? 0x5151, 4);
  if (fragment) ip.writeUInt16BE((fragment.more ? 0x2000 : 0) | (fragment.offset / 8), 6);
  ip[8] = 64;
  ip[9] = 17;
  addrBytes(4, spec.src).copy(ip, 12);
  addrBytes(4, spec.dst).copy(ip, 16);
  opts.copy(ip, 20);
  let check = 0xffff - onesSum(ip);
  if (spec.badIpChecksum) check ^= 0x0101;
  ip.writeUInt16BE(check, 10);
  return ip;
}

function ipv6Header(spec: UdpFrameSpec, payloadLength: number, nextHeader = 17): Buffer {
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE((payloadLength + (spec.ipLengthDelta ?? 0)) & 0xffff, 4);
  ip[6] = nextHeader;
  ip[7] = 64;
  addrBytes(6, spec.src).copy(ip, 8);
  addrBytes(6, spec.dst).copy(ip, 24);
  return ip;
}

/** One frame: Ethernet, IP, UDP, payload, then `trailing` bytes of 0xee. */
export function udpFrame(spec: UdpFrameSpec): Buffer {
  const udp = udpDatagram(spec);
  const tail = Buffer.alloc(spec.trailing ?? 0, 0xee);
  if (spec.family === 4) return Buffer.concat([ethernet(spec, 0x0800), ipv4Header(spec, udp.length), udp, tail]);
  return Buffer.concat([ethernet(spec, 0x86dd), ipv6Header(spec, udp.length), udp, tail]);
}

/**
 * The datagram of `spec` as IP fragments, the first carrying `firstBytes`
 * of UDP header and payload (a multiple of 8).
 */
export function udpFragments(spec: UdpFrameSpec, firstBytes: number, id = 0x7777): Buffer[] {
  if (firstBytes % 8) throw new Error('fragment boundary must be a multiple of 8');
  const udp = udpDatagram(spec);
  const parts = [udp.subarray(0, firstBytes), udp.subarray(firstBytes)];
  return parts.map((part, i) => {
    const offset = i === 0 ? 0 : firstBytes;
    const more = i === 0;
    if (spec.family === 4) return Buffer.concat([ethernet(spec, 0x0800), ipv4Header(spec, part.length, { offset, more, id }), part]);
    const frag = Buffer.alloc(8);
    frag[0] = 17;
    frag.writeUInt16BE(offset | (more ? 1 : 0), 2);
    frag.writeUInt32BE(id, 4);
    return Buffer.concat([ethernet(spec, 0x86dd), ipv6Header(spec, 8 + part.length, 44), frag, part]);
  });
}

/**
 * The virtio_net_hdr an AF_PACKET socket with PACKET_VNET_HDR takes before
 * a frame: NEEDS_CSUM makes the kernel build a CHECKSUM_PARTIAL skb (the
 * checksum "still to be filled in", as from a local sender or a VM guest).
 */
export function vnetNeedsCsum(family: 4 | 6, ipOptionsBytes = 0): Buffer {
  const h = Buffer.alloc(10);
  h[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  h.writeUInt16LE(14 + (family === 4 ? 20 + ipOptionsBytes : 40), 6); // csum_start: the UDP header
  h.writeUInt16LE(6, 8); // csum_offset: its checksum field
  return h;
}

export function vnetNone(): Buffer {
  return Buffer.alloc(10);
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((x) => parseInt(x, 16)));
}
