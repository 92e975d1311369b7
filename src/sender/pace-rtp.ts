/**
 * Playout by the stream's own clock, RTP: when each RTP packet of a
 * buffer is due, from its RTP timestamp (RFC 3550, 5.1).
 *
 * The buffer holds RTP packets framed as on a stream transport (RFC 4571:
 * each packet preceded by its length, 16 bits big-endian), since a UDP
 * datagram's bounds are not in its bytes. Packet k is due (ts_k − ts_0) /
 * clockRate after the first, with the 32-bit timestamp unwrapped (a step
 * is the signed 32-bit difference). Timestamps may go back a little (video
 * with B-frames stamps presentation order): a packet is never due before
 * the one ahead of it. A step of more than MAX_RTP_STEP_MS either way, or
 * an SSRC change, starts a new time base at the previous packet's time
 * (re-anchoring); one-pass `passMs` adds the median step after the last
 * packet, so a loop's next pass follows at the stream's own pace.
 *
 * Pure: no I/O, no clock; computed once per stream.
 */
import { InvalidArgumentError } from '../errors.js';
import type { ClockSchedule } from './pace-types.js';

/** RTP clock of video payloads (RFC 3551), the default clock rate. */
export const DEFAULT_RTP_CLOCK_RATE = 90_000;
/** A timestamp step longer than this (either way) is a jump: re-anchor. */
export const MAX_RTP_STEP_MS = 1000;
/** Fixed RTP header bytes. */
const RTP_HEADER_BYTES = 12;

/** The RTP packets of an RFC 4571-framed buffer: where each starts and its length. Throws on bad framing or a packet that is not RTP version 2. */
export function rtpFraming(data: Uint8Array, maxPacket: number): { offsets: Uint32Array; lengths: Uint16Array } {
  const offsets: number[] = [];
  const lengths: number[] = [];
  for (let o = 0; o < data.byteLength;) {
    if (o + 2 > data.byteLength)
      throw new InvalidArgumentError(
        `pace 'rtp': a length prefix is cut off at byte ${o} (the data must be RTP packets, each after a 16-bit length, RFC 4571)`,
      );
    const len = (data[o]! << 8) | data[o + 1]!;
    const at = o + 2;
    if (len < RTP_HEADER_BYTES || at + len > data.byteLength) {
      throw new InvalidArgumentError(
        `pace 'rtp': the packet at byte ${o} claims ${len} bytes, ${data.byteLength - at} are left (RFC 4571 framing: 16-bit length, then an RTP packet of ≥ 12 bytes)`,
      );
    }
    if (data[at]! >>> 6 !== 2) throw new InvalidArgumentError(`pace 'rtp': the packet at byte ${o} is not RTP version 2`);
    if (len > maxPacket) throw new InvalidArgumentError(`pace 'rtp': the packet at byte ${o} has ${len} bytes, more than the packet size ${maxPacket}`);
    offsets.push(at);
    lengths.push(len);
    o = at + len;
  }
  if (offsets.length === 0) throw new InvalidArgumentError("pace 'rtp': no RTP packet in the data");
  return { offsets: Uint32Array.from(offsets), lengths: Uint16Array.from(lengths) };
}

/**
 * When each RTP packet of `data` (RFC 4571 framing, see the file comment)
 * is due by its timestamps at `clockRate` Hz; every packet at most
 * `packetSize` bytes. Throws InvalidArgumentError on bad framing, a
 * packet that is not RTP, or a bad clock rate.
 */
export function rtpSchedule(data: Uint8Array, packetSize: number, clockRate = DEFAULT_RTP_CLOCK_RATE): ClockSchedule {
  if (!(Number.isInteger(clockRate) && clockRate >= 1 && clockRate <= 10_000_000)) {
    throw new InvalidArgumentError(
      `pace 'rtp': the clock rate must be an integer of Hz from 1 to 10000000 (e.g. 90000 for video, 48000 for audio), got ${String(clockRate)}`,
    );
  }
  const framed = rtpFraming(data, packetSize);
  const n = framed.offsets.length;
  const dueMs = new Float64Array(n);
  const ticksPerMs = clockRate / 1000;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let prevTs = view.getUint32(framed.offsets[0]! + 4);
  let prevSsrc = view.getUint32(framed.offsets[0]! + 8);
  /** The time base: packet times are anchorMs + (unwrapped ts − anchorTs) / rate. */
  let anchorMs = 0;
  let unwrapped = 0;
  const steps: number[] = [];
  for (let k = 1; k < n; k++) {
    const ts = view.getUint32(framed.offsets[k]! + 4);
    const ssrc = view.getUint32(framed.offsets[k]! + 8);
    const stepMs = ((ts - prevTs) | 0) / ticksPerMs; // signed 32-bit step: wraps handled
    if (ssrc !== prevSsrc || Math.abs(stepMs) > MAX_RTP_STEP_MS) {
      // A new time base: this packet goes with the one before it.
      anchorMs = dueMs[k - 1]!;
      unwrapped = 0;
    } else {
      unwrapped += stepMs;
      if (stepMs > 0) steps.push(stepMs);
    }
    dueMs[k] = Math.max(dueMs[k - 1]!, anchorMs + unwrapped);
    prevTs = ts;
    prevSsrc = ssrc;
  }
  steps.sort((a, b) => a - b);
  const tail = steps.length ? steps[steps.length >> 1]! : 0;
  return { dueMs, passMs: dueMs[n - 1]! + tail, framed };
}
