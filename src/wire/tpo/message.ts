/**
 * The TPO message header (docs/WIRE.md, "Message header"): one per carried
 * packet or data chunk inside a driver buffer. It names the flow by its
 * 5-tuple (as the source gateway intercepted it), what the message does
 * (data, open, close, ...), its place in the flow and the data that
 * follows it. Pure codec.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIpv6, ipv4ToInt, ipv6Bytes } from '../ip-address.js';
import { WireError } from './errors.js';
import type { Reader, Writer } from './cursor.js';

export const MESSAGE_VERSION = 1;
/** Header bytes: 20 fixed + two IPv4 (8) or two IPv6 (32) addresses. */
export const MESSAGE_HEADER_V4 = 28;
export const MESSAGE_HEADER_V6 = 52;

/** Function codes (docs/WIRE.md). */
export const MESSAGE_FUNCTIONS = ['data', 'open', 'open-ok', 'close', 'half-close', 'reset', 'keepalive', 'window'] as const;
export type MessageFunction = (typeof MESSAGE_FUNCTIONS)[number];
const FUNCTION_CODE: Record<MessageFunction, number> = { data: 1, open: 2, 'open-ok': 3, close: 4, 'half-close': 5, reset: 6, keepalive: 7, window: 8 };

/** IP protocol numbers carried (IANA). */
export const MESSAGE_PROTOCOLS = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 } as const;
export type MessageProtocol = keyof typeof MESSAGE_PROTOCOLS;

/** Flag bits: the addresses are IPv6 (else IPv4). Other bits are reserved (zero in version 1). */
export const FLAG_IPV6 = 0x01;
/** The flow is latency-sensitive: its thin messages are sent redundantly both ways (docs/WIRE.md 1). */
export const FLAG_LATENCY_SENSITIVE = 0x02;
const KNOWN_FLAGS = FLAG_IPV6 | FLAG_LATENCY_SENSITIVE;

export interface MessageHeader {
  readonly function: MessageFunction;
  readonly protocol: MessageProtocol;
  /** Per flow and direction: 0, 1, 2, ... (u32, wraps). */
  readonly sequence: number;
  readonly src: { readonly address: string; readonly port: number };
  readonly dst: { readonly address: string; readonly port: number };
  /** 0 = ok; for open-ok/reset/close, why (docs/WIRE.md, status codes). */
  readonly status: number;
  /** Bytes of data after the header (u32). */
  readonly dataLength: number;
  /** The flow was marked latency-sensitive in the source gateway's table (flags bit 1). */
  readonly latencySensitive?: boolean;
}

export function messageHeaderLength(h: Pick<MessageHeader, 'src'>): number {
  return isIPv4(h.src.address) ? MESSAGE_HEADER_V4 : MESSAGE_HEADER_V6;
}

/**
 * Throws a WireError naming the field unless `h` can be written: a known
 * function and protocol, two addresses of one family, every number an
 * integer in its field's range. Checked where a message is queued (the
 * packet driver encodes later, from a timer, where a throw would end the
 * process), and again by writeMessageHeader.
 */
export function checkMessageHeader(h: MessageHeader): void {
  if (!Object.hasOwn(FUNCTION_CODE, h.function)) throw new WireError('type', `message header: unknown function ${String(h.function)}`, 'function');
  if (!Object.hasOwn(MESSAGE_PROTOCOLS, h.protocol)) throw new WireError('type', `message header: unknown protocol ${String(h.protocol)}`, 'protocol');
  const v4 = isIPv4(h.src.address);
  if (v4 !== isIPv4(h.dst.address) || (!v4 && !(isIPv6(h.src.address) && isIPv6(h.dst.address)))) {
    throw new WireError('value', `message header: source ${h.src.address} and destination ${h.dst.address} must be addresses of one family`, 'address');
  }
  for (const [name, v, max] of [
    ['sequence', h.sequence, 0xffffffff],
    ['dataLength', h.dataLength, 0xffffffff],
    ['status', h.status, 0xff],
    ['src.port', h.src.port, 0xffff],
    ['dst.port', h.dst.port, 0xffff],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new WireError('value', `message header: ${name} ${v} is not an integer in 0..${max}`, name);
  }
}

/** Writes `h` at `w` (checked first: nothing is written for a header checkMessageHeader refuses). */
export function writeMessageHeader(w: Writer, h: MessageHeader): void {
  checkMessageHeader(h);
  const v4 = isIPv4(h.src.address);
  w.u8(MESSAGE_VERSION)
    .u8(v4 ? MESSAGE_HEADER_V4 : MESSAGE_HEADER_V6)
    .u8(FUNCTION_CODE[h.function])
    .u8((v4 ? 0 : FLAG_IPV6) | (h.latencySensitive ? FLAG_LATENCY_SENSITIVE : 0))
    .u8(MESSAGE_PROTOCOLS[h.protocol])
    .u8(h.status)
    .u16(0)
    .u32(h.sequence)
    .u32(h.dataLength)
    .u16(h.src.port)
    .u16(h.dst.port);
  if (v4) {
    w.u32(ipv4ToInt(h.src.address)).u32(ipv4ToInt(h.dst.address));
  } else {
    w.bytesOf(ipv6Bytes(h.src.address)).bytesOf(ipv6Bytes(h.dst.address));
  }
}

const FUNCTION_BY_CODE = new Map<number, MessageFunction>(Object.entries(FUNCTION_CODE).map(([k, v]) => [v, k as MessageFunction]));
const PROTOCOL_BY_NUMBER = new Map<number, MessageProtocol>(Object.entries(MESSAGE_PROTOCOLS).map(([k, v]) => [v, k as MessageProtocol]));

/** Reads one header at `r` (the data that follows is the caller's). */
export function readMessageHeader(r: Reader): MessageHeader {
  const version = r.u8('version');
  if (version !== MESSAGE_VERSION) throw new WireError('version', `message header: version ${version}, this code speaks ${MESSAGE_VERSION}`, 'version');
  const headerLength = r.u8('headerLength');
  const fn = r.u8('function');
  const flags = r.u8('flags');
  const protocol = r.u8('protocol');
  const status = r.u8('status');
  const reserved = r.u16('reserved');
  if (flags & ~KNOWN_FLAGS || reserved !== 0) throw new WireError('value', 'message header: reserved bits set', 'flags');
  const v6 = (flags & FLAG_IPV6) !== 0;
  if (headerLength !== (v6 ? MESSAGE_HEADER_V6 : MESSAGE_HEADER_V4))
    throw new WireError('length', `message header: header length ${headerLength} for ${v6 ? 'IPv6' : 'IPv4'}`, 'headerLength');
  const func = FUNCTION_BY_CODE.get(fn);
  if (!func) throw new WireError('type', `message header: unknown function ${fn}`, 'function');
  const proto = PROTOCOL_BY_NUMBER.get(protocol);
  if (!proto) throw new WireError('type', `message header: unknown protocol ${protocol}`, 'protocol');
  const sequence = r.u32('sequence');
  const dataLength = r.u32('dataLength');
  const srcPort = r.u16('src.port');
  const dstPort = r.u16('dst.port');
  let src: string;
  let dst: string;
  if (v6) {
    src = formatIpv6(r.bytesOf(16, 'src.address'));
    dst = formatIpv6(r.bytesOf(16, 'dst.address'));
  } else {
    src = formatIpv4(r.u32('src.address'));
    dst = formatIpv4(r.u32('dst.address'));
  }
  return {
    function: func,
    protocol: proto,
    sequence,
    src: { address: src, port: srcPort },
    dst: { address: dst, port: dstPort },
    status,
    dataLength,
    ...(flags & FLAG_LATENCY_SENSITIVE ? { latencySensitive: true } : {}),
  };
}

function formatIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}
