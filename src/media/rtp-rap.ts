/**
 * Random access points of an RTP stream: the RTP header (RFC 3550 5.1)
 * read only as far as finding the payload, and H.264 payloads (RFC 6184:
 * single NAL unit packets, STAP-A aggregates, FU-A/FU-B fragments) read for
 * their NAL unit types. A point starts at the packet carrying the first
 * parameter set after a picture, and is one when an IDR picture follows
 * with SPS and PPS before it. Never throws.
 */
import { NalUnitsSeen } from './nal-scan.js';
import type { TsRapEvents } from './ts-rap.js';

/** The payload of an RTP packet: offset and end in `bytes`, or undefined when it is no RTP version 2 packet. */
export function rtpPayload(bytes: Uint8Array, offset: number, length: number): { start: number; end: number } | undefined {
  const end0 = Math.min(bytes.length, offset + length);
  if (end0 - offset < 12 || bytes[offset]! >>> 6 !== 2) return undefined;
  const b0 = bytes[offset]!;
  let start = offset + 12 + 4 * (b0 & 0x0f);
  if (b0 & 0x10) {
    if (start + 4 > end0) return undefined;
    start += 4 + 4 * ((bytes[start + 2]! << 8) | bytes[start + 3]!);
  }
  let end = end0;
  if (b0 & 0x20) {
    const pad = bytes[end0 - 1]!;
    if (pad === 0) return undefined;
    end -= pad;
  }
  return start <= end ? { start, end } : undefined;
}

/** RFC 6184 5.2 packet types beyond the single NAL unit types 1..23. */
const STAP_A = 24;
const FU_A = 28;
const FU_B = 29;

export class RtpH264RapTracker {
  readonly #events: TsRapEvents;
  /** The NAL units of the unit being read (since the first parameter set); undefined when none is. */
  #units: NalUnitsSeen | undefined;

  constructor(events: TsRapEvents) {
    this.#events = events;
  }

  /** Reads one RTP datagram. */
  packet(bytes: Uint8Array): void {
    const at = rtpPayload(bytes, 0, bytes.length);
    if (!at || at.end <= at.start) return;
    const { start, end } = at;
    const type = bytes[start]! & 0x1f;
    if (type >= 1 && type <= 23) this.#nal(type);
    else if (type === STAP_A) {
      for (let p = start + 1; p + 2 < end;) {
        const size = (bytes[p]! << 8) | bytes[p + 1]!;
        if (size === 0 || p + 2 + size > end) break;
        this.#nal(bytes[p + 2]! & 0x1f);
        p += 2 + size;
      }
    } else if ((type === FU_A || type === FU_B) && start + 1 < end) {
      // Only the first fragment (S bit) starts a NAL unit.
      if (bytes[start + 1]! & 0x80) this.#nal(bytes[start + 1]! & 0x1f);
    }
  }

  #nal(type: number): void {
    const parameterSet = type === 7 || type === 8;
    if (parameterSet && this.#units === undefined) {
      this.#units = new NalUnitsSeen('h264');
      this.#events.onUnitStart(-1);
    }
    const units = this.#units;
    if (!units) return;
    const verdict = units.add(type);
    if (verdict === 'rap') this.#events.onRap();
    if (verdict !== 'pending') this.#units = undefined;
  }
}
