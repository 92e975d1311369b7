/**
 * The format check a flow's `payload` policy asks every tier to apply to
 * each datagram before relaying it: the same rule on every tier (bpf/sluice.c
 * has its C twin), so that each tier puts the same packets on the wire.
 * Only framing is checked here; what is inside (sequence numbers, tables,
 * clocks) is the stream monitor's business, which counts and never drops.
 */
import { isTsDatagramAt } from './mpegts/datagram.js';

/** A flow's payload policy: `any` relays every datagram that passes the other checks. */
export const PAYLOAD_FORMATS = ['any', 'mpegts', 'rtp', 'rtp-mpegts'] as const;
export type PayloadFormat = (typeof PAYLOAD_FORMATS)[number];

/** Bytes of the fixed RTP header (RFC 3550 §5.1). */
export const RTP_FIXED_HEADER = 12;

/**
 * Whether `length` bytes at `offset` start with an RTP version 2 fixed
 * header. CSRC, extension and padding lengths are not checked here: a
 * receiver decides what to do with those, the monitor counts them.
 */
export function isRtpDatagramAt(bytes: Uint8Array, offset: number, length: number): boolean {
  return length >= RTP_FIXED_HEADER && bytes[offset]! >> 6 === 2;
}

/** Whether the datagram at `offset` has the format `format` asks for (allocation-free). */
export function payloadFormatOk(format: PayloadFormat, bytes: Uint8Array, offset: number, length: number): boolean {
  switch (format) {
    case 'any':
      return true;
    case 'mpegts':
      return isTsDatagramAt(bytes, offset, length);
    case 'rtp':
    case 'rtp-mpegts':
      return isRtpDatagramAt(bytes, offset, length);
  }
}

/** The formats a stream monitor understands (all but `any`). */
export function isMediaFormat(format: PayloadFormat): format is Exclude<PayloadFormat, 'any'> {
  return format !== 'any';
}
