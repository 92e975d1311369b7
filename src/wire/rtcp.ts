/**
 * RTCP compound packets (RFC 3550 §6): SR, RR, SDES, BYE, APP, and any other
 * packet type in the RTCP range kept opaque (feedback, XR). No I/O.
 *
 * Every length is checked: each packet's length field against the buffer,
 * report and source counts against the packet, SDES items and BYE reasons
 * against their chunk, padding (last packet only, A.2) against the packet.
 * `checkRtcpCompound` validates without allocating (a monitor skipping RTCP
 * on a muxed port); `parseRtcp` also returns the packets. Neither throws nor
 * reads outside `buf`. Unlike A.2 neither insists that the first packet is an
 * SR or RR, since RFC 5506 allows reduced-size RTCP.
 */

import { RTP_VERSION, readU32 } from './rtp.js';

export const RTCP_SR = 200;
export const RTCP_RR = 201;
export const RTCP_SDES = 202;
export const RTCP_BYE = 203;
export const RTCP_APP = 204;
/** Bytes of a report block in an SR or RR. */
export const RTCP_REPORT_BLOCK_SIZE = 24;
/** Bytes of the SR's header up to its first report block (header, SSRC, sender info). */
export const RTCP_SR_PREFIX = 28;
/** Bytes of the RR's header up to its first report block (header, SSRC). */
export const RTCP_RR_PREFIX = 8;

/**
 * RFC 5761 §4: on a port RTP and RTCP share, a second byte in 192–223 is
 * RTCP (RTP payload types 64–95 with the marker bit are avoided for this).
 * The cheap test; `checkRtcpCompound` is the thorough one.
 */
export function looksLikeRtcp(buf: Uint8Array): boolean {
  return looksLikeRtcpAt(buf, 0, buf.length);
}

/** `looksLikeRtcp` over `length` bytes at `offset` of a larger buffer (a receive slot). */
export function looksLikeRtcpAt(bytes: Uint8Array, offset: number, length: number): boolean {
  if (length < 4) return false;
  const b1 = bytes[offset + 1]!;
  return b1 >= 192 && b1 <= 223;
}

/** Why a datagram is not a valid RTCP compound packet. */
export type RtcpReason =
  /** Empty, or a packet header cut short. */
  | 'short'
  | 'version'
  /** A packet type outside RTCP's 192–223 range. */
  | 'type'
  /** A packet's length field runs past the datagram. */
  | 'length'
  /** Padding on a packet that is not the last, or a count of 0 or larger than the packet. */
  | 'padding'
  /** An SR/RR report count, a BYE source count or an SDES chunk count that does not fit. */
  | 'count'
  /** An SDES item or a BYE reason running past its packet, or a chunk without its END item. */
  | 'item'
  /** An APP packet shorter than its 12-byte minimum. */
  | 'app';

/** One reception report block (RFC 3550 §6.4.1). */
export interface RtcpReportBlock {
  readonly ssrc: number;
  /** Fraction lost since the previous report, as the 8-bit fixed-point value (lost/256). */
  readonly fractionLost: number;
  /** Cumulative packets lost, a signed 24-bit value (duplicates can make it negative). */
  readonly cumulativeLost: number;
  /** Extended highest sequence number received. */
  readonly highestSeq: number;
  /** Interarrival jitter, RTP timestamp units. */
  readonly jitter: number;
  /** Middle 32 bits of the NTP timestamp of the last SR received, or 0. */
  readonly lsr: number;
  /** Delay since that SR, 1/65536 s. */
  readonly dlsr: number;
}

export interface RtcpSdesItem {
  readonly type: number;
  readonly value: string;
}

export type RtcpPacket =
  | {
      readonly type: 'sr';
      readonly ssrc: number;
      readonly ntpSeconds: number;
      readonly ntpFraction: number;
      readonly rtpTimestamp: number;
      readonly packetCount: number;
      readonly octetCount: number;
      readonly reports: readonly RtcpReportBlock[];
    }
  | { readonly type: 'rr'; readonly ssrc: number; readonly reports: readonly RtcpReportBlock[] }
  | { readonly type: 'sdes'; readonly chunks: readonly { readonly ssrc: number; readonly items: readonly RtcpSdesItem[] }[] }
  | { readonly type: 'bye'; readonly ssrcs: readonly number[]; readonly reason?: string }
  | { readonly type: 'app'; readonly subtype: number; readonly ssrc: number; readonly name: string; readonly data: Uint8Array }
  /** A packet type Sluice does not decode (e.g. 205/206 feedback, 207 XR): its header fields and body. */
  | { readonly type: 'other'; readonly packetType: number; readonly count: number; readonly body: Uint8Array };

export type RtcpParseResult =
  { readonly ok: true; readonly packets: readonly RtcpPacket[] } | { readonly ok: false; readonly reason: RtcpReason; readonly index: number };

/** Validates `buf` as an RTCP compound packet; null when valid. Allocation-free. */
export function checkRtcpCompound(buf: Uint8Array): RtcpReason | null {
  const r = walk(buf, null);
  return r < 0 ? null : REASONS[r & 0xff]!;
}

/** Parses `buf` as an RTCP compound packet. */
export function parseRtcp(buf: Uint8Array): RtcpParseResult {
  const packets: RtcpPacket[] = [];
  const r = walk(buf, packets);
  if (r < 0) return { ok: true, packets };
  return { ok: false, reason: REASONS[r & 0xff]!, index: r >>> 8 };
}

const REASONS: readonly RtcpReason[] = ['short', 'version', 'type', 'length', 'padding', 'count', 'item', 'app'];
const SHORT = 0;
const VERSION = 1;
const TYPE = 2;
const LENGTH = 3;
const PADDING = 4;
const COUNT = 5;
const ITEM = 6;
const APP = 7;

const utf8 = new TextDecoder('utf-8');

/**
 * Walks the compound packet; pushes decoded packets when `out` is given.
 * Returns -1 when valid, else (index of the bad packet << 8) | reason code.
 */
function walk(buf: Uint8Array, out: RtcpPacket[] | null): number {
  const len = buf.length;
  if (len === 0) return SHORT;
  let at = 0;
  for (let index = 0; at < len; index++) {
    if (at + 4 > len) return (index << 8) | SHORT;
    const b0 = buf[at]!;
    if (b0 >>> 6 !== RTP_VERSION) return (index << 8) | VERSION;
    const type = buf[at + 1]!;
    if (type < 192 || type > 223) return (index << 8) | TYPE;
    const size = 4 * (((buf[at + 2]! << 8) | buf[at + 3]!) + 1);
    if (at + size > len) return (index << 8) | LENGTH;
    let end = at + size;
    if ((b0 & 0x20) !== 0) {
      // Only the last packet of a compound may be padded (RFC 3550 A.2).
      if (end !== len) return (index << 8) | PADDING;
      const pad = buf[end - 1]!;
      if (pad === 0 || pad > size - 4) return (index << 8) | PADDING;
      end -= pad;
    }
    const count = b0 & 0x1f;
    const code = body(buf, at, end, type, count, out);
    if (code >= 0) return (index << 8) | code;
    at += size;
  }
  return -1;
}

/** Checks (and decodes into `out`) one packet's body, `buf[at, end)`; -1 or a reason code. */
function body(buf: Uint8Array, at: number, end: number, type: number, count: number, out: RtcpPacket[] | null): number {
  switch (type) {
    case RTCP_SR: {
      if (at + RTCP_SR_PREFIX + RTCP_REPORT_BLOCK_SIZE * count > end) return COUNT;
      if (out)
        out.push({
          type: 'sr',
          ssrc: readU32(buf, at + 4),
          ntpSeconds: readU32(buf, at + 8),
          ntpFraction: readU32(buf, at + 12),
          rtpTimestamp: readU32(buf, at + 16),
          packetCount: readU32(buf, at + 20),
          octetCount: readU32(buf, at + 24),
          reports: reports(buf, at + RTCP_SR_PREFIX, count),
        });
      return -1;
    }
    case RTCP_RR: {
      if (at + RTCP_RR_PREFIX + RTCP_REPORT_BLOCK_SIZE * count > end) return COUNT;
      if (out) out.push({ type: 'rr', ssrc: readU32(buf, at + 4), reports: reports(buf, at + RTCP_RR_PREFIX, count) });
      return -1;
    }
    case RTCP_SDES:
      return sdes(buf, at, end, count, out);
    case RTCP_BYE: {
      let p = at + 4 + 4 * count;
      if (p > end) return COUNT;
      let reason: string | undefined;
      if (p < end) {
        const n = buf[p]!;
        if (p + 1 + n > end) return ITEM;
        if (out) reason = utf8.decode(buf.subarray(p + 1, p + 1 + n));
        p += 1 + n;
      }
      if (out) {
        const ssrcs: number[] = [];
        for (let i = 0; i < count; i++) ssrcs.push(readU32(buf, at + 4 + 4 * i));
        out.push(reason === undefined ? { type: 'bye', ssrcs } : { type: 'bye', ssrcs, reason });
      }
      return -1;
    }
    case RTCP_APP: {
      if (at + 12 > end) return APP;
      if (out)
        out.push({
          type: 'app',
          subtype: count,
          ssrc: readU32(buf, at + 4),
          name: String.fromCharCode(buf[at + 8]!, buf[at + 9]!, buf[at + 10]!, buf[at + 11]!),
          data: buf.subarray(at + 12, end),
        });
      return -1;
    }
    default:
      if (out) out.push({ type: 'other', packetType: type, count, body: buf.subarray(at + 4, end) });
      return -1;
  }
}

function reports(buf: Uint8Array, at: number, count: number): RtcpReportBlock[] {
  const blocks: RtcpReportBlock[] = [];
  for (let i = 0; i < count; i++, at += RTCP_REPORT_BLOCK_SIZE) {
    const lost = (buf[at + 5]! << 16) | (buf[at + 6]! << 8) | buf[at + 7]!;
    blocks.push({
      ssrc: readU32(buf, at),
      fractionLost: buf[at + 4]!,
      cumulativeLost: lost & 0x800000 ? lost - 0x1000000 : lost,
      highestSeq: readU32(buf, at + 8),
      jitter: readU32(buf, at + 12),
      lsr: readU32(buf, at + 16),
      dlsr: readU32(buf, at + 20),
    });
  }
  return blocks;
}

/**
 * SDES (§6.5): `count` chunks, each an SSRC then items (type, length, text)
 * ended by a zero type and padded to a 32-bit boundary.
 */
function sdes(buf: Uint8Array, at: number, end: number, count: number, out: RtcpPacket[] | null): number {
  const chunks: { ssrc: number; items: RtcpSdesItem[] }[] = [];
  let p = at + 4;
  for (let c = 0; c < count; c++) {
    if (p + 4 > end) return COUNT;
    const chunk = { ssrc: readU32(buf, p), items: [] as RtcpSdesItem[] };
    p += 4;
    for (;;) {
      if (p >= end) return ITEM;
      const itemType = buf[p]!;
      if (itemType === 0) {
        // END, then null octets up to the next 32-bit boundary (of the packet, which starts aligned).
        p += 1;
        p += (4 - ((p - at) & 3)) & 3;
        if (p > end) return ITEM;
        break;
      }
      if (p + 2 > end) return ITEM;
      const n = buf[p + 1]!;
      if (p + 2 + n > end) return ITEM;
      if (out) chunk.items.push({ type: itemType, value: utf8.decode(buf.subarray(p + 2, p + 2 + n)) });
      p += 2 + n;
    }
    if (out) chunks.push(chunk);
  }
  if (out) out.push({ type: 'sdes', chunks });
  return -1;
}
