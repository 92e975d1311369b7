/**
 * Makes an MPEG-TS clip loopable: a copy whose first packet on each PID
 * carries discontinuity_indicator (ISO/IEC 13818-1, 2.4.3.5). Played in
 * a loop, the jump at each loop point — continuity counters, PCR, PTS and
 * DTS all starting over — is then announced, so receivers reset their
 * expectations instead of counting continuity or PCR errors (ffmpeg's
 * demuxer, VLC and the demo's checker honour the flag; on the PCR PID it
 * marks a new time base). The first pass carries the flags too: at a
 * PID's first packet they change nothing.
 *
 * A packet with an adaptation field gets the flag set in place. A PSI
 * packet without one (PAT, PMT, SDT as muxers write them: a section, then
 * 0xFF fill) gets a 2-byte adaptation field in place of 2 fill bytes.
 * Any other first packet without room for the flag (a full PES payload)
 * cannot be marked without re-muxing: an error saying which PID.
 */
import { InvalidArgumentError } from '../errors.js';
import { AF_DISCONTINUITY, PID_NULL, TS_PACKET_SIZE, TS_SYNC_BYTE } from '../wire/mpegts/packet.js';

/** Bytes a section's end must leave free in a PSI payload for the adaptation field we insert (its length byte and flags). */
const AF_BYTES = 2;

/** Returns a copy of `ts` (whole 188-byte packets) with each PID's first packet marked discontinuous. Throws InvalidArgumentError when one cannot be. */
export function markLoopStart(ts: Uint8Array): Uint8Array {
  if (ts.byteLength % TS_PACKET_SIZE !== 0) throw new InvalidArgumentError(`loop: ${ts.byteLength} bytes is not whole 188-byte TS packets`);
  const out = Uint8Array.from(ts);
  // 1: the PID's first packet is marked; 2: so is its first packet with payload. A packet
  // with no payload (adaptation field only, such as a CBR mux's PCR-only packets) does not
  // take part in the continuity count, so a checker does not look at its flag: the first
  // payload packet after the loop must say it too.
  const seen = new Uint8Array(PID_NULL + 1);
  for (let o = 0; o < out.byteLength; o += TS_PACKET_SIZE) {
    if (out[o] !== TS_SYNC_BYTE) throw new InvalidArgumentError(`loop: no sync byte at byte ${o}`);
    const pid = ((out[o + 1]! & 0x1f) << 8) | out[o + 2]!;
    if (pid === PID_NULL || seen[pid] === 2) continue;
    const hasPayload = ((out[o + 3]! >>> 4) & 1) === 1;
    if (seen[pid] === 0 || hasPayload) markPacket(out, o, pid);
    seen[pid] = hasPayload ? 2 : 1;
  }
  return out;
}

function markPacket(b: Uint8Array, o: number, pid: number): void {
  const afc = (b[o + 3]! >>> 4) & 3;
  if (afc & 2 && b[o + 4]! > 0) {
    b[o + 5] = b[o + 5]! | AF_DISCONTINUITY;
    return;
  }
  if (afc === 1 && b[o + 1]! & 0x40 && psiFillAtEnd(b, o + 4)) {
    // Payload-only PSI: shift the payload 2 bytes on, dropping 2 fill bytes; the field goes before it.
    b.copyWithin(o + 4 + AF_BYTES, o + 4, o + TS_PACKET_SIZE - AF_BYTES);
    b[o + 3] = (b[o + 3]! & 0xcf) | 0x30;
    b[o + 4] = 1;
    b[o + 5] = AF_DISCONTINUITY;
    return;
  }
  throw new InvalidArgumentError(`loop: PID ${pid}'s first packet (byte ${o}) has no adaptation field and no fill to make room for one`);
}

/** Whether the PSI payload at `p` (to the packet's end) holds one section followed by at least AF_BYTES of 0xFF fill. */
function psiFillAtEnd(b: Uint8Array, p: number): boolean {
  const end = p - 4 + TS_PACKET_SIZE;
  const start = p + 1 + b[p]!;
  if (start + 3 > end) return false;
  const sectionEnd = start + 3 + (((b[start + 1]! & 0x0f) << 8) | b[start + 2]!);
  if (sectionEnd > end - AF_BYTES) return false;
  for (let i = sectionEnd; i < end; i++) if (b[i] !== 0xff) return false;
  return true;
}
