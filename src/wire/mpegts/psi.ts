/**
 * MPEG-TS PSI sections (ISO/IEC 13818-1, 2.4.4): the two tables a minimal
 * stream needs (PAT, PMT), the generic long-form section check with its CRC,
 * and the wrapping of one section into a transport packet. No I/O.
 *
 * Decoders never throw on malformed input; they return `{ ok: false, reason }`.
 * `checkPsiSection` and `psiSectionOffset` do not allocate, so a checker can
 * call them per packet.
 */

import { checkInt } from './args.js';
import { crc32Mpeg } from '../crc32-mpeg.js';
import { PID_NULL, TS_MAX_PAYLOAD, encodeTsPacket } from './packet.js';

/** Table id of a PAT section. */
export const TABLE_ID_PAT = 0x00;
/** Table id of a PMT section. */
export const TABLE_ID_PMT = 0x02;

/** Largest section_length allowed for PAT/PMT (so a section is ≤ 1024 bytes). */
const MAX_SECTION_LENGTH = 1021;

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
