/**
 * MPEG-TS transport packets (ISO/IEC 13818-1, 2.4.3): the 188-byte packet,
 * its 4-byte header and the adaptation field with PCR and stuffing. No I/O.
 *
 * Conventions: decoders never throw on malformed input; they return
 * `{ ok: false, reason }`. Encoders throw RangeError (bad value) or TypeError
 * (bad type) on invalid arguments, because those are programming errors.
 * `writeTsHeader` does not allocate, so the synthetic stream can call it per
 * packet.
 */

import { checkInt } from './args.js';
import { PCR_MODULUS, readPcr, writePcr } from './pcr.js';

/** Bytes in one transport packet. */
export const TS_PACKET_SIZE = 188;
/** First byte of every transport packet. */
export const TS_SYNC_BYTE = 0x47;
/** Bytes after the 4-byte header: payload plus adaptation field. */
export const TS_MAX_PAYLOAD = 184;
/** PID of the Program Association Table. */
export const PID_PAT = 0x0000;
/** PID of null (stuffing) packets; they carry no continuity information. */
export const PID_NULL = 0x1fff;
/** Largest 13-bit PID. */
export const PID_MAX = 0x1fff;
/** Conventional TS-over-UDP packing: 7 packets, 1316 bytes, fits a 1500-byte MTU. */
export const TS_PACKETS_PER_DATAGRAM = 7;
/** Bytes in a conventional TS-over-UDP datagram (7 × 188). */
export const TS_DATAGRAM_SIZE = TS_PACKETS_PER_DATAGRAM * TS_PACKET_SIZE;

/** adaptation_field flag: discontinuity_indicator. */
export const AF_DISCONTINUITY = 0x80;
/** adaptation_field flag: random_access_indicator. */
export const AF_RANDOM_ACCESS = 0x40;
/** adaptation_field flag: PCR_flag. */
export const AF_PCR = 0x10;

/** What `encodeTsPacket` writes. */
export interface TsPacketSpec {
  /** 13-bit PID, 0..0x1FFF. */
  readonly pid: number;
  /** payload_unit_start_indicator: a PES packet or PSI section starts in this payload. */
  readonly payloadUnitStart: boolean;
  /** 4-bit continuity counter, 0..15. */
  readonly continuityCounter: number;
  /** Program clock reference in 27 MHz units, 0 ≤ pcr < PCR_MODULUS; puts 6 bytes in the adaptation field. */
  readonly pcr?: bigint;
  /** random_access_indicator in the adaptation field. */
  readonly randomAccess?: boolean;
  /** discontinuity_indicator in the adaptation field (receiver resets CC/PCR expectations). */
  readonly discontinuity?: boolean;
  /**
   * Payload bytes: at most 184, 182 with discontinuity/randomAccess, 176 with
   * a PCR. Shorter payloads are padded by adaptation-field stuffing; an empty
   * payload produces an adaptation-only packet (which does not advance the CC).
   */
  readonly payload: Uint8Array;
}

/** Largest payload `encodeTsPacket` accepts for the given adaptation-field needs. */
export function maxTsPayload(hasPcr: boolean, hasFlags = hasPcr): number {
  if (hasPcr) return TS_MAX_PAYLOAD - 8; // length byte + flags byte + 6-byte PCR
  if (hasFlags) return TS_MAX_PAYLOAD - 2; // length byte + flags byte
  return TS_MAX_PAYLOAD;
}

/**
 * Writes a full 188-byte packet header (4-byte header plus adaptation field
 * with stuffing) into `out[offset, offset+188)` for a packet that will carry
 * `payloadLength` payload bytes, and returns the absolute index where the
 * caller must write those bytes. Allocation-free low-level path used by
 * `encodeTsPacket` and the synthetic stream; it trusts its arguments (the
 * caller validates): `pcr` is a 27 MHz value in [0, PCR_MODULUS) as a plain
 * number (exact, since PCR_MODULUS < 2^53) or -1 for none, `afFlags` is any
 * combination of AF_DISCONTINUITY | AF_RANDOM_ACCESS (AF_PCR is implied by `pcr`).
 */
export function writeTsHeader(
  out: Uint8Array,
  offset: number,
  pid: number,
  payloadUnitStart: boolean,
  continuityCounter: number,
  payloadLength: number,
  afFlags = 0,
  pcr = -1,
): number {
  const hasPcr = pcr >= 0;
  const flags = (afFlags & (AF_DISCONTINUITY | AF_RANDOM_ACCESS)) | (hasPcr ? AF_PCR : 0);
  const needAf = flags !== 0 || payloadLength < TS_MAX_PAYLOAD;
  // adaptation_field_control: 01 payload only, 10 adaptation only, 11 both.
  const afc = needAf ? (payloadLength > 0 ? 3 : 2) : 1;
  out[offset] = TS_SYNC_BYTE;
  out[offset + 1] = (payloadUnitStart ? 0x40 : 0) | ((pid >>> 8) & 0x1f);
  out[offset + 2] = pid & 0xff;
  out[offset + 3] = (afc << 4) | (continuityCounter & 0x0f);
  if (!needAf) return offset + 4;
  // The adaptation field absorbs every byte the payload does not use, so the
  // packet is always exactly 188 bytes (this is how TS pads short payloads).
  const afTotal = TS_MAX_PAYLOAD - payloadLength; // includes its length byte
  const afLen = afTotal - 1;
  out[offset + 4] = afLen;
  const end = offset + 5 + afLen;
  if (afLen > 0) {
    out[offset + 5] = flags;
    let p = offset + 6;
    if (hasPcr) {
      writePcr(out, p, pcr);
      p += 6;
    }
    out.fill(0xff, p, end); // stuffing bytes
  }
  return end;
}

function checkOut(out: Uint8Array, offset: number, size: number): void {
  if (!(out instanceof Uint8Array)) throw new TypeError('out must be a Uint8Array');
  if (!Number.isInteger(offset) || offset < 0 || offset + size > out.length) {
    throw new RangeError(`out has no room for ${size} bytes at offset ${offset} (length ${out.length})`);
  }
}

/**
 * Encodes one 188-byte transport packet. Writes into `out` at `offset` when
 * given (throws RangeError when it does not fit), otherwise into a new
 * buffer; returns the 188-byte view of the packet. Throws on invalid specs
 * (PID/CC out of range, PCR not a bigint in [0, PCR_MODULUS), payload too
 * long for the adaptation field it needs).
 */
export function encodeTsPacket(spec: TsPacketSpec, out?: Uint8Array, offset = 0): Uint8Array {
  checkInt('pid', spec.pid, 0, PID_MAX);
  checkInt('continuityCounter', spec.continuityCounter, 0, 15);
  if (!(spec.payload instanceof Uint8Array)) throw new TypeError('payload must be a Uint8Array');
  let pcr = -1;
  if (spec.pcr !== undefined) {
    if (typeof spec.pcr !== 'bigint') throw new TypeError('pcr must be a bigint (27 MHz units)');
    if (spec.pcr < 0n || spec.pcr >= PCR_MODULUS) throw new RangeError(`pcr must be in [0, ${PCR_MODULUS})`);
    pcr = Number(spec.pcr);
  }
  const afFlags = (spec.discontinuity === true ? AF_DISCONTINUITY : 0) | (spec.randomAccess === true ? AF_RANDOM_ACCESS : 0);
  const max = maxTsPayload(pcr >= 0, afFlags !== 0);
  if (spec.payload.length > max) throw new RangeError(`payload of ${spec.payload.length} bytes exceeds ${max} for this packet`);
  let buf: Uint8Array;
  if (out === undefined) {
    buf = new Uint8Array(TS_PACKET_SIZE);
    offset = 0;
  } else {
    checkOut(out, offset, TS_PACKET_SIZE);
    buf = out;
  }
  const p = writeTsHeader(buf, offset, spec.pid, spec.payloadUnitStart === true, spec.continuityCounter, spec.payload.length, afFlags, pcr);
  buf.set(spec.payload, p);
  return buf.subarray(offset, offset + TS_PACKET_SIZE);
}

/** A decoded transport packet header. Offsets index the buffer passed to `decodeTsPacket`. */
export interface TsPacketInfo {
  readonly ok: true;
  readonly pid: number;
  readonly payloadUnitStart: boolean;
  readonly transportError: boolean;
  readonly transportPriority: boolean;
  /** transport_scrambling_control, 0 = not scrambled. */
  readonly scrambling: number;
  readonly hasAdaptation: boolean;
  readonly hasPayload: boolean;
  readonly continuityCounter: number;
  readonly discontinuity: boolean;
  readonly randomAccess: boolean;
  /** PCR in 27 MHz units when the adaptation field carries one. */
  readonly pcr?: bigint;
  /** Absolute index in the buffer of the first payload byte. */
  readonly payloadOffset: number;
  /** Payload bytes (0 for adaptation-only packets). */
  readonly payloadLength: number;
}

/** Why a transport packet could not be decoded. */
export type TsDecodeReason =
  /** Fewer than 188 bytes from offset, or an invalid offset. */
  | 'truncated'
  /** First byte is not 0x47. */
  | 'sync'
  /** adaptation_field_control is the reserved value 00. */
  | 'afc'
  /** adaptation_field_length runs past the end of the packet. */
  | 'adaptation-overflow'
  /** Adaptation flags announce fields (PCR) that do not fit its length. */
  | 'adaptation-fields'
  /** program_clock_reference_extension above 299 (it counts 0..299 per base tick). */
  | 'pcr-extension';

export type TsDecodeResult = TsPacketInfo | { readonly ok: false; readonly reason: TsDecodeReason };

/** Decodes the transport packet at `buf[offset, offset+188)`. Never throws. */
export function decodeTsPacket(buf: Uint8Array, offset = 0): TsDecodeResult {
  if (!(buf instanceof Uint8Array) || !Number.isInteger(offset) || offset < 0 || offset + TS_PACKET_SIZE > buf.length) {
    return { ok: false, reason: 'truncated' };
  }
  const o = offset;
  if (buf[o] !== TS_SYNC_BYTE) return { ok: false, reason: 'sync' };
  const b1 = buf[o + 1]!;
  const b3 = buf[o + 3]!;
  const afc = (b3 >>> 4) & 3;
  if (afc === 0) return { ok: false, reason: 'afc' };
  const hasAdaptation = (afc & 2) !== 0;
  const hasPayload = (afc & 1) !== 0;
  let payloadOffset = o + 4;
  let discontinuity = false;
  let randomAccess = false;
  let pcr: bigint | undefined;
  if (hasAdaptation) {
    const afLen = buf[o + 4]!;
    if (afLen > TS_MAX_PAYLOAD - 1) return { ok: false, reason: 'adaptation-overflow' };
    if (afLen > 0) {
      const flags = buf[o + 5]!;
      discontinuity = (flags & AF_DISCONTINUITY) !== 0;
      randomAccess = (flags & AF_RANDOM_ACCESS) !== 0;
      if (flags & AF_PCR) {
        if (afLen < 7) return { ok: false, reason: 'adaptation-fields' };
        // The extension counts 0..299; more would put the PCR past its modulus.
        if ((((buf[o + 10]! & 1) << 8) | buf[o + 11]!) > 299) return { ok: false, reason: 'pcr-extension' };
        pcr = BigInt(readPcr(buf, o + 6));
      }
    }
    payloadOffset = o + 5 + afLen;
  }
  const info: TsPacketInfo = {
    ok: true,
    pid: ((b1 & 0x1f) << 8) | buf[o + 2]!,
    payloadUnitStart: (b1 & 0x40) !== 0,
    transportError: (b1 & 0x80) !== 0,
    transportPriority: (b1 & 0x20) !== 0,
    scrambling: b3 >>> 6,
    hasAdaptation,
    hasPayload,
    continuityCounter: b3 & 0x0f,
    discontinuity,
    randomAccess,
    payloadOffset,
    payloadLength: hasPayload ? o + TS_PACKET_SIZE - payloadOffset : 0,
  };
  return pcr === undefined ? info : { ...info, pcr };
}
