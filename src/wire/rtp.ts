/**
 * RTP data packets (RFC 3550 §5.1): the fixed header, CSRC list, header
 * extension (§5.3.1) and padding. No I/O.
 *
 * The parser runs once per datagram on a monitored flow, so it fills a
 * caller-owned `RtpHeader` and returns a reason string or null: nothing is
 * allocated, nothing is thrown, and no byte outside `buf` is read. Every
 * length the packet states (CSRC count, extension length, padding count) is
 * checked against what is really there; a packet that lies is rejected.
 * `parseRtpAt`, `isRtpAt` and `isRtpMpegtsAt` do the same on a datagram
 * inside a larger receive buffer (a relay tier's payload check).
 */

import { isTsDatagramAt } from './mpegts/datagram.js';

/** Bytes of the fixed header (V, P, X, CC, M, PT, sequence number, timestamp, SSRC). */
export const RTP_HEADER_SIZE = 12;
/** The only RTP version in use (RFC 3550). */
export const RTP_VERSION = 2;
/** Sequence numbers are 16 bits. */
export const RTP_SEQ_MOD = 0x10000;

/** Why a datagram is not a well-formed RTP packet. */
export type RtpReason =
  /** Fewer than 12 bytes. */
  | 'short'
  /** Version field is not 2. */
  | 'version'
  /** The CSRC count names more CSRCs than the packet holds. */
  | 'csrc'
  /** The extension header, or the length it states, runs past the packet. */
  | 'extension'
  /** Padding bit set with a padding count of 0 or larger than what follows the header. */
  | 'padding';

/** A parsed RTP header. Offsets are indices into the buffer that was parsed. */
export interface RtpHeader {
  version: number;
  padding: boolean;
  extension: boolean;
  csrcCount: number;
  marker: boolean;
  payloadType: number;
  /** 16-bit sequence number. */
  sequence: number;
  /** 32-bit RTP timestamp (unsigned). */
  timestamp: number;
  /** 32-bit synchronization source (unsigned). */
  ssrc: number;
  /** Offset of the first CSRC (12 from the packet's start); `csrcCount` of them, 4 bytes each. */
  csrcOffset: number;
  /** Header extension's 16-bit profile-defined field, or -1 without an extension. */
  extensionProfile: number;
  /** Offset of the extension's data (after its 4-byte header), or -1. */
  extensionOffset: number;
  /** Bytes of extension data (the stated length × 4), 0 without one. */
  extensionLength: number;
  /** Fixed header + CSRCs + extension (header and data), bytes. */
  headerLength: number;
  /** Where the payload starts (= headerLength). */
  payloadOffset: number;
  /** Payload bytes once padding is removed (may be 0). */
  payloadLength: number;
  /** Padding bytes at the end, including the count byte; 0 without padding. */
  paddingLength: number;
}

/** A blank header to reuse with `parseRtpInto`. */
export function newRtpHeader(): RtpHeader {
  return {
    version: 0,
    padding: false,
    extension: false,
    csrcCount: 0,
    marker: false,
    payloadType: 0,
    sequence: 0,
    timestamp: 0,
    ssrc: 0,
    csrcOffset: RTP_HEADER_SIZE,
    extensionProfile: -1,
    extensionOffset: -1,
    extensionLength: 0,
    headerLength: 0,
    payloadOffset: 0,
    payloadLength: 0,
    paddingLength: 0,
  };
}

/**
 * Parses `buf` as one RTP packet into `out` and returns null, or returns why
 * it is not one (then `out` holds partial values and must not be used).
 * Allocation-free; never throws; reads only `buf[0, buf.length)`.
 */
export function parseRtpInto(buf: Uint8Array, out: RtpHeader): RtpReason | null {
  return parseRtpAt(buf, 0, buf.length, out);
}

/**
 * `parseRtpInto` over `length` bytes at `offset` of a larger buffer (a
 * receive slot), without a view per datagram. Offsets in `out` are indices
 * into `bytes`. Reads only `bytes[offset, offset+length)`.
 */
export function parseRtpAt(bytes: Uint8Array, offset: number, length: number, out: RtpHeader): RtpReason | null {
  const len = length;
  const o = offset;
  if (len < RTP_HEADER_SIZE) return 'short';
  const b0 = bytes[o]!;
  const b1 = bytes[o + 1]!;
  const version = b0 >>> 6;
  if (version !== RTP_VERSION) return 'version';
  const csrcCount = b0 & 0x0f;
  let header = RTP_HEADER_SIZE + 4 * csrcCount;
  if (header > len) return 'csrc';
  out.version = version;
  out.padding = (b0 & 0x20) !== 0;
  out.extension = (b0 & 0x10) !== 0;
  out.csrcCount = csrcCount;
  out.marker = (b1 & 0x80) !== 0;
  out.payloadType = b1 & 0x7f;
  out.sequence = (bytes[o + 2]! << 8) | bytes[o + 3]!;
  out.timestamp = readU32(bytes, o + 4);
  out.ssrc = readU32(bytes, o + 8);
  out.csrcOffset = o + RTP_HEADER_SIZE;
  if (out.extension) {
    if (header + 4 > len) return 'extension';
    const extBytes = 4 * ((bytes[o + header + 2]! << 8) | bytes[o + header + 3]!);
    out.extensionProfile = (bytes[o + header]! << 8) | bytes[o + header + 1]!;
    out.extensionOffset = o + header + 4;
    out.extensionLength = extBytes;
    header += 4 + extBytes;
    if (header > len) return 'extension';
  } else {
    out.extensionProfile = -1;
    out.extensionOffset = -1;
    out.extensionLength = 0;
  }
  let pad = 0;
  if (out.padding) {
    // The count includes itself, so 0 is a lie too (RFC 3550 §5.1, P).
    pad = bytes[o + len - 1]!;
    if (pad === 0 || pad > len - header) return 'padding';
  }
  out.headerLength = header;
  out.payloadOffset = o + header;
  out.paddingLength = pad;
  out.payloadLength = len - header - pad;
  return null;
}

// Scratch header of the boolean checks below (single-threaded, not re-entered).
const scratch = newRtpHeader();

/** Whether `length` bytes at `offset` are a well-formed RTP packet (a relay's payload check). Allocation-free. */
export function isRtpAt(bytes: Uint8Array, offset: number, length: number): boolean {
  return parseRtpAt(bytes, offset, length, scratch) === null;
}

/**
 * Whether `length` bytes at `offset` are a well-formed RTP packet whose
 * payload is a whole, non-zero number of 188-byte TS packets, each starting
 * with the sync byte (MPEG-TS over RTP, RFC 2250). Allocation-free.
 */
export function isRtpMpegtsAt(bytes: Uint8Array, offset: number, length: number): boolean {
  return parseRtpAt(bytes, offset, length, scratch) === null && isTsDatagramAt(bytes, scratch.payloadOffset, scratch.payloadLength);
}

/** Outcome of `parseRtp`. */
export type RtpParseResult = { readonly ok: true; readonly header: Readonly<RtpHeader> } | { readonly ok: false; readonly reason: RtpReason };

/** `parseRtpInto` into a fresh header, for callers off the hot path. */
export function parseRtp(buf: Uint8Array): RtpParseResult {
  const header = newRtpHeader();
  const reason = parseRtpInto(buf, header);
  return reason === null ? { ok: true, header } : { ok: false, reason };
}

/** The `i`th CSRC of a parsed packet (0 ≤ i < csrcCount). */
export function rtpCsrc(buf: Uint8Array, header: Readonly<RtpHeader>, i: number): number {
  return readU32(buf, header.csrcOffset + 4 * i);
}

/** Big-endian unsigned 32 bits at `at` (the caller has checked the bounds). */
export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
