/**
 * Pure MPEG-TS wire codec (ISO/IEC 13818-1): 188-byte transport packets,
 * adaptation fields with PCR, and the two PSI tables a minimal stream needs
 * (PAT, PMT). No I/O.
 *
 * Conventions: decoders never throw on malformed input; they return
 * `{ ok: false, reason }`. Encoders throw RangeError (bad value) or TypeError
 * (bad type) on invalid arguments, because those are programming errors.
 * The hot-path helpers (`checkTsDatagram`, `writeTsHeader`, `readPcr`,
 * `checkPsiSection`) do not allocate, so a relay or checker can call them
 * per packet.
 */

import { crc32Mpeg } from './crc32-mpeg.js';

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
/** PCR (system clock) frequency in Hz. */
export const PCR_CLOCK_HZ = 27_000_000;
/**
 * PCR values wrap here: 2^33 base ticks × 300 extension ticks (27 MHz units,
 * about 26.5 hours). Valid PCRs are 0 ≤ pcr < PCR_MODULUS.
 */
export const PCR_MODULUS: bigint = (1n << 33n) * 300n;
/** Table id of a PAT section. */
export const TABLE_ID_PAT = 0x00;
/** Table id of a PMT section. */
export const TABLE_ID_PMT = 0x02;

/** adaptation_field flag: discontinuity_indicator. */
export const AF_DISCONTINUITY = 0x80;
/** adaptation_field flag: random_access_indicator. */
export const AF_RANDOM_ACCESS = 0x40;
/** adaptation_field flag: PCR_flag. */
export const AF_PCR = 0x10;

const PCR_MODULUS_NUM = Number(PCR_MODULUS);
/** Largest section_length allowed for PAT/PMT (so a section is ≤ 1024 bytes). */
const MAX_SECTION_LENGTH = 1021;

// ---------------------------------------------------------------------------
// Transport packets
// ---------------------------------------------------------------------------

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

/** Writes the 6-byte PCR field (33-bit base, 6 reserved 1-bits, 9-bit extension) at `p`. */
function writePcr(out: Uint8Array, p: number, pcr: number): void {
  const base = Math.floor(pcr / 300);
  const ext = pcr - base * 300;
  // base needs 33 bits, more than JS bit operators handle: split off bit 0.
  const hi = Math.floor(base / 2); // base bits 32..1
  out[p] = (hi >>> 24) & 0xff;
  out[p + 1] = (hi >>> 16) & 0xff;
  out[p + 2] = (hi >>> 8) & 0xff;
  out[p + 3] = hi & 0xff;
  out[p + 4] = ((base % 2) << 7) | 0x7e | ((ext >>> 8) & 1);
  out[p + 5] = ext & 0xff;
}

/**
 * Reads the 6-byte PCR field at `p` and returns it in 27 MHz units as a plain
 * number (exact: the maximum is below 2^53). Allocation-free; does not check
 * bounds, the caller has already checked the adaptation field length.
 */
export function readPcr(buf: Uint8Array, p: number): number {
  const hi = ((buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) >>> 0;
  const b4 = buf[p + 4]!;
  const base = hi * 2 + (b4 >>> 7);
  const ext = ((b4 & 1) << 8) | buf[p + 5]!;
  // An invalid extension (300..511) is read modulo the PCR's range, so the
  // result stays a PCR (decodeTsPacket refuses such a packet outright).
  const pcr = base * 300 + ext;
  return pcr < PCR_MODULUS_NUM ? pcr : pcr - PCR_MODULUS_NUM;
}

function checkInt(name: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${v}`);
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

// ---------------------------------------------------------------------------
// Datagram framing check (relay hot path)
// ---------------------------------------------------------------------------

/** Why a UDP payload is not a whole number of TS packets. */
export type TsDatagramReason = 'empty' | 'length' | 'sync';
export type TsDatagramResult = { readonly ok: true; readonly packets: number } | { readonly ok: false; readonly reason: TsDatagramReason };

// Results are shared frozen objects so the per-datagram check never allocates
// (a UDP payload holds at most 348 packets; larger inputs are rare enough to allocate).
const MAX_CACHED_PACKETS = Math.floor(65_535 / TS_PACKET_SIZE);
const OK_RESULTS: TsDatagramResult[] = [];
for (let n = 0; n <= MAX_CACHED_PACKETS; n++) OK_RESULTS.push(Object.freeze({ ok: true, packets: n }));
const EMPTY: TsDatagramResult = Object.freeze({ ok: false, reason: 'empty' });
const BAD_LENGTH: TsDatagramResult = Object.freeze({ ok: false, reason: 'length' });
const BAD_SYNC: TsDatagramResult = Object.freeze({ ok: false, reason: 'sync' });

/**
 * Whether a UDP payload is a whole, non-zero number of 188-byte TS packets,
 * each starting with 0x47. Returns `{ ok: true, packets }` or
 * `{ ok: false, reason }`; the result objects are shared and frozen, so the
 * check allocates nothing. Only framing is checked, not header contents.
 */
export function checkTsDatagram(buf: Uint8Array): TsDatagramResult {
  const len = buf.length;
  if (len === 0) return EMPTY;
  if (len % TS_PACKET_SIZE !== 0) return BAD_LENGTH;
  for (let i = 0; i < len; i += TS_PACKET_SIZE) if (buf[i] !== TS_SYNC_BYTE) return BAD_SYNC;
  const n = len / TS_PACKET_SIZE;
  return n <= MAX_CACHED_PACKETS ? OK_RESULTS[n]! : { ok: true, packets: n };
}

/**
 * The same check as `checkTsDatagram` over `length` bytes at `offset` of a
 * larger buffer (a receive slot), without creating a view per datagram.
 */
export function isTsDatagramAt(bytes: Uint8Array, offset: number, length: number): boolean {
  if (length === 0 || length % TS_PACKET_SIZE !== 0) return false;
  for (let i = offset; i < offset + length; i += TS_PACKET_SIZE) if (bytes[i] !== TS_SYNC_BYTE) return false;
  return true;
}

// ---------------------------------------------------------------------------
// PSI sections (PAT, PMT)
// ---------------------------------------------------------------------------

/** Why a PSI section could not be decoded. */
export type PsiDecodeReason =
  /** Section runs past the end of the input (or the input/offset is invalid). */
  | 'truncated'
  /** table_id is not the expected table. */
  | 'table-id'
  /** section_syntax_indicator is 0 (PAT/PMT always use the long syntax). */
  | 'syntax'
  /** section_length is impossible for the table (too short, too long, ragged loop). */
  | 'section-length'
  /** CRC_32 does not match. */
  | 'crc'
  /** A descriptor loop length runs past the section. */
  | 'descriptor-overflow';

/**
 * Checks the generic long-form section at `buf[offset, end)`: table id,
 * syntax indicator, section_length bounds and CRC. Returns null when valid,
 * otherwise the reason. Allocation-free (for per-packet use).
 */
export function checkPsiSection(buf: Uint8Array, offset: number, end: number, tableId: number): PsiDecodeReason | null {
  if (!(buf instanceof Uint8Array) || !Number.isInteger(offset) || !Number.isInteger(end) || offset < 0 || end > buf.length || offset + 3 > end) {
    return 'truncated';
  }
  if (buf[offset] !== tableId) return 'table-id';
  const b1 = buf[offset + 1]!;
  if ((b1 & 0x80) === 0) return 'syntax';
  const sectionLength = ((b1 & 0x0f) << 8) | buf[offset + 2]!;
  // 5 bytes of extended header + 4 of CRC is the minimum long-form section.
  if (sectionLength < 9 || sectionLength > MAX_SECTION_LENGTH) return 'section-length';
  const sectionEnd = offset + 3 + sectionLength;
  if (sectionEnd > end) return 'truncated';
  // Over data + big-endian CRC the MPEG CRC is 0 when intact.
  if (crc32Mpeg(buf, offset, sectionEnd) !== 0) return 'crc';
  return null;
}

/** Total bytes of the section at `offset` (3 + section_length); assumes ≥ 3 readable bytes. */
function sectionSize(buf: Uint8Array, offset: number): number {
  return 3 + (((buf[offset + 1]! & 0x0f) << 8) | buf[offset + 2]!);
}

/** Writes the 8-byte common long-form header (single section, current_next=1). */
function writeSectionHeader(out: Uint8Array, tableId: number, sectionLength: number, idExt: number, version: number): void {
  out[0] = tableId;
  // section_syntax_indicator=1, '0', two reserved 1-bits, then 12-bit length.
  out[1] = 0xb0 | ((sectionLength >>> 8) & 0x0f);
  out[2] = sectionLength & 0xff;
  out[3] = (idExt >>> 8) & 0xff;
  out[4] = idExt & 0xff;
  out[5] = 0xc0 | ((version & 0x1f) << 1) | 1; // reserved bits, version, current_next_indicator=1
  out[6] = 0; // section_number
  out[7] = 0; // last_section_number
}

/** Appends the big-endian CRC over everything before the last 4 bytes. */
function writeCrc(out: Uint8Array): void {
  const n = out.length - 4;
  const crc = crc32Mpeg(out, 0, n);
  out[n] = crc >>> 24;
  out[n + 1] = (crc >>> 16) & 0xff;
  out[n + 2] = (crc >>> 8) & 0xff;
  out[n + 3] = crc & 0xff;
}

/** One PAT entry: program_number → PID of its PMT. */
export interface PatProgram {
  /** 0..65535; 0 conventionally points at the network PID instead of a PMT. */
  readonly programNumber: number;
  /** PMT PID, 0x0010..0x1FFE. */
  readonly pmtPid: number;
}

export interface PatSpec {
  /** transport_stream_id, 0..65535. */
  readonly transportStreamId: number;
  readonly programs: readonly PatProgram[];
  /** version_number 0..31 (default 0); bump it when the table changes. */
  readonly version?: number;
}

export interface PatInfo {
  readonly ok: true;
  readonly transportStreamId: number;
  readonly version: number;
  readonly currentNext: boolean;
  readonly sectionNumber: number;
  readonly lastSectionNumber: number;
  readonly programs: PatProgram[];
  /** Bytes the section occupies (3 + section_length). */
  readonly sectionSize: number;
}

export type PatDecodeResult = PatInfo | { readonly ok: false; readonly reason: PsiDecodeReason };

function checkPid(name: string, v: unknown, min = 0x10, max = 0x1ffe): void {
  checkInt(name, v, min, max);
}

/** Encodes a single-section PAT (table_id 0, CRC included). Returns the section bytes. */
export function encodePatSection(spec: PatSpec): Uint8Array {
  checkInt('transportStreamId', spec.transportStreamId, 0, 0xffff);
  const version = spec.version ?? 0;
  checkInt('version', version, 0, 31);
  if (!Array.isArray(spec.programs)) throw new TypeError('programs must be an array');
  const n = spec.programs.length;
  const sectionLength = 5 + 4 * n + 4;
  if (sectionLength > MAX_SECTION_LENGTH) throw new RangeError(`too many programs for one PAT section: ${n}`);
  const out = new Uint8Array(3 + sectionLength);
  writeSectionHeader(out, TABLE_ID_PAT, sectionLength, spec.transportStreamId, version);
  let p = 8;
  for (const [i, prog] of spec.programs.entries()) {
    checkInt(`programs[${i}].programNumber`, prog.programNumber, 0, 0xffff);
    checkPid(`programs[${i}].pmtPid`, prog.pmtPid);
    out[p] = prog.programNumber >>> 8;
    out[p + 1] = prog.programNumber & 0xff;
    out[p + 2] = 0xe0 | (prog.pmtPid >>> 8); // 3 reserved bits + PID high bits
    out[p + 3] = prog.pmtPid & 0xff;
    p += 4;
  }
  writeCrc(out);
  return out;
}

/** Decodes a PAT section starting at `bytes[offset]` (trailing bytes, e.g. 0xFF fill, are ignored). Never throws. */
export function decodePatSection(bytes: Uint8Array, offset = 0): PatDecodeResult {
  const err = checkPsiSection(bytes, offset, bytes instanceof Uint8Array ? bytes.length : 0, TABLE_ID_PAT);
  if (err !== null) return { ok: false, reason: err };
  const size = sectionSize(bytes, offset);
  const loopBytes = size - 12; // 8 header bytes + 4 CRC
  if (loopBytes % 4 !== 0) return { ok: false, reason: 'section-length' };
  const programs: PatProgram[] = [];
  for (let p = offset + 8; p < offset + 8 + loopBytes; p += 4) {
    programs.push({ programNumber: (bytes[p]! << 8) | bytes[p + 1]!, pmtPid: ((bytes[p + 2]! & 0x1f) << 8) | bytes[p + 3]! });
  }
  const b5 = bytes[offset + 5]!;
  return {
    ok: true,
    transportStreamId: (bytes[offset + 3]! << 8) | bytes[offset + 4]!,
    version: (b5 >>> 1) & 0x1f,
    currentNext: (b5 & 1) !== 0,
    sectionNumber: bytes[offset + 6]!,
    lastSectionNumber: bytes[offset + 7]!,
    programs,
    sectionSize: size,
  };
}

/** One PMT elementary stream entry. */
export interface PmtStream {
  /** stream_type, 0..255 (e.g. 0x1B H.264, 0x24 HEVC, 0x0F AAC, 0x06 private PES). */
  readonly streamType: number;
  /** Elementary stream PID, 0x0010..0x1FFE. */
  readonly elementaryPid: number;
}

export interface PmtSpec {
  /** program_number, 0..65535 (matches the PAT entry). */
  readonly programNumber: number;
  /** PID carrying this program's PCR, 0x0010..0x1FFF (0x1FFF = no PCR). */
  readonly pcrPid: number;
  readonly streams: readonly PmtStream[];
  /** version_number 0..31 (default 0). */
  readonly version?: number;
}

export interface PmtInfo {
  readonly ok: true;
  readonly programNumber: number;
  readonly version: number;
  readonly currentNext: boolean;
  readonly pcrPid: number;
  /** Streams in table order; descriptors are skipped. */
  readonly streams: PmtStream[];
  /** Bytes the section occupies (3 + section_length). */
  readonly sectionSize: number;
}

export type PmtDecodeResult = PmtInfo | { readonly ok: false; readonly reason: PsiDecodeReason };

/** Encodes a single-section PMT (table_id 2, no descriptors, CRC included). Returns the section bytes. */
export function encodePmtSection(spec: PmtSpec): Uint8Array {
  checkInt('programNumber', spec.programNumber, 0, 0xffff);
  checkPid('pcrPid', spec.pcrPid, 0x10, PID_NULL);
  const version = spec.version ?? 0;
  checkInt('version', version, 0, 31);
  if (!Array.isArray(spec.streams)) throw new TypeError('streams must be an array');
  const n = spec.streams.length;
  const sectionLength = 9 + 5 * n + 4;
  if (sectionLength > MAX_SECTION_LENGTH) throw new RangeError(`too many streams for one PMT section: ${n}`);
  const out = new Uint8Array(3 + sectionLength);
  writeSectionHeader(out, TABLE_ID_PMT, sectionLength, spec.programNumber, version);
  out[8] = 0xe0 | (spec.pcrPid >>> 8);
  out[9] = spec.pcrPid & 0xff;
  out[10] = 0xf0; // 4 reserved bits, program_info_length = 0
  out[11] = 0;
  let p = 12;
  for (const [i, s] of spec.streams.entries()) {
    checkInt(`streams[${i}].streamType`, s.streamType, 0, 0xff);
    checkPid(`streams[${i}].elementaryPid`, s.elementaryPid);
    out[p] = s.streamType;
    out[p + 1] = 0xe0 | (s.elementaryPid >>> 8);
    out[p + 2] = s.elementaryPid & 0xff;
    out[p + 3] = 0xf0; // ES_info_length = 0
    out[p + 4] = 0;
    p += 5;
  }
  writeCrc(out);
  return out;
}

/** Decodes a PMT section starting at `bytes[offset]`; skips descriptors. Never throws. */
export function decodePmtSection(bytes: Uint8Array, offset = 0): PmtDecodeResult {
  const err = checkPsiSection(bytes, offset, bytes instanceof Uint8Array ? bytes.length : 0, TABLE_ID_PMT);
  if (err !== null) return { ok: false, reason: err };
  const size = sectionSize(bytes, offset);
  if (size < 16) return { ok: false, reason: 'section-length' }; // 12 fixed bytes + CRC
  const loopEnd = offset + size - 4;
  const programInfoLength = ((bytes[offset + 10]! & 0x0f) << 8) | bytes[offset + 11]!;
  let p = offset + 12 + programInfoLength;
  if (p > loopEnd) return { ok: false, reason: 'descriptor-overflow' };
  const streams: PmtStream[] = [];
  while (p < loopEnd) {
    if (p + 5 > loopEnd) return { ok: false, reason: 'section-length' };
    const esInfoLength = ((bytes[p + 3]! & 0x0f) << 8) | bytes[p + 4]!;
    if (p + 5 + esInfoLength > loopEnd) return { ok: false, reason: 'descriptor-overflow' };
    streams.push({ streamType: bytes[p]!, elementaryPid: ((bytes[p + 1]! & 0x1f) << 8) | bytes[p + 2]! });
    p += 5 + esInfoLength;
  }
  const b5 = bytes[offset + 5]!;
  return {
    ok: true,
    programNumber: (bytes[offset + 3]! << 8) | bytes[offset + 4]!,
    version: (b5 >>> 1) & 0x1f,
    currentNext: (b5 & 1) !== 0,
    pcrPid: ((bytes[offset + 8]! & 0x1f) << 8) | bytes[offset + 9]!,
    streams,
    sectionSize: size,
  };
}

/**
 * Wraps one section into a full 184-byte TS payload: pointer_field 0, the
 * section, then 0xFF fill (what a single-packet PAT/PMT carries). Throws
 * RangeError when the section does not fit one packet (> 183 bytes).
 */
export function encodePsiPayload(section: Uint8Array): Uint8Array {
  if (!(section instanceof Uint8Array)) throw new TypeError('section must be a Uint8Array');
  if (section.length > TS_MAX_PAYLOAD - 1) throw new RangeError(`section of ${section.length} bytes does not fit one TS packet`);
  const out = new Uint8Array(TS_MAX_PAYLOAD).fill(0xff);
  out[0] = 0; // pointer_field: section starts right after it
  out.set(section, 1);
  return out;
}

/**
 * Encodes a PSI packet (payload_unit_start set, payload from
 * `encodePsiPayload`) on `pid` with `continuityCounter`; same `out`/`offset`
 * contract as `encodeTsPacket`.
 */
export function encodePsiPacket(pid: number, continuityCounter: number, section: Uint8Array, out?: Uint8Array, offset = 0): Uint8Array {
  return encodeTsPacket({ pid, payloadUnitStart: true, continuityCounter, payload: encodePsiPayload(section) }, out, offset);
}

/**
 * Absolute index of the section that starts in a payload_unit_start payload
 * at `buf[payloadOffset, payloadOffset+payloadLength)` (skips the
 * pointer_field), or -1 when the pointer runs past the payload. Allocation-free.
 */
export function psiSectionOffset(buf: Uint8Array, payloadOffset: number, payloadLength: number): number {
  if (payloadLength < 1 || payloadOffset < 0 || payloadOffset + payloadLength > buf.length) return -1;
  const start = payloadOffset + 1 + buf[payloadOffset]!;
  return start < payloadOffset + payloadLength ? start : -1;
}

/** Wraps a PCR value (27 MHz units, any integer) into [0, PCR_MODULUS). */
export function wrapPcr(pcr: bigint): bigint {
  const r = pcr % PCR_MODULUS;
  return r < 0n ? r + PCR_MODULUS : r;
}

/**
 * Forward distance from PCR `a` to PCR `b` in 27 MHz ticks, modulo the PCR
 * wrap (so a wrap between them still yields a small positive delta). Inputs
 * are plain numbers in [0, PCR_MODULUS), e.g. from `readPcr`.
 */
export function pcrDelta(a: number, b: number): number {
  const d = b - a;
  return d < 0 ? d + PCR_MODULUS_NUM : d;
}
