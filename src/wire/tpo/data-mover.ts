/**
 * The TPO data mover field (docs/WIRE.md, "Transport message"): the start
 * of every UDP datagram between two gateways. An 8-byte prefix (version,
 * kind, the receiver's connection id), then subfields, each `length u16,
 * type u8, body`: always a transport-data subfield (this transmission's
 * physical number, and the logical number of the segment it carries, if
 * any), optionally an acknowledgement subfield. What follows the field is
 * the payload (a segment of a driver buffer; encrypted, with its tag, by
 * the data mover). The field itself travels in clear but authenticated
 * (AEAD associated data). Pure codec.
 */
import { WireError } from './errors.js';
import { Reader } from './cursor.js';
import { DatagramKind } from './kind.js';

export const DATAGRAM_VERSION = 1;
export const DATAGRAM_PREFIX_LENGTH = 8;

const SUB_TRANSPORT = 1;
const SUB_ACK = 2;
const SUBFIELD_HEADER = 3;
const TRANSPORT_BODY = 17;
/** Fixed part of an ack body before the bitmap and the ranges. */
const ACK_FIXED = 1 + 8 + 8 + 4 + 4 + 8 + 2 + 2;
/** At most this many bitmap bytes (8,192 segments past the cumulative point) and ranges per ack. */
export const MAX_ACK_BITMAP_BYTES = 1024;
export const MAX_ACK_RANGES = 64;

/** Transport-data flags. */
export const TD_DATA = 0x01;
export const TD_BUFFER_START = 0x02;
export const TD_BUFFER_END = 0x04;
export const TD_RETRANSMISSION = 0x08;
/** The sender ends the session (its gateway is stopping): the peer drops it at once instead of waiting for silence. */
export const TD_GOODBYE = 0x10;
/** The payload is parity over a group of segments (parity.ts), not a segment: no data flag, logical 0. */
export const TD_PARITY = 0x20;
/** A data segment a parity datagram may cover: the receiver keeps a copy of it for a while (parity.ts). */
export const TD_PROTECTED = 0x40;
const TD_KNOWN = TD_DATA | TD_BUFFER_START | TD_BUFFER_END | TD_RETRANSMISSION | TD_GOODBYE | TD_PARITY | TD_PROTECTED;

export interface TransportData {
  /** TD_* bits. */
  readonly flags: number;
  /** The segment's place in the stream of segments (0 when the datagram carries none). */
  readonly logical: number;
  /** This transmission's number: never reused, a retransmission gets a new one. */
  readonly physical: number;
}

export interface AckRange {
  /** Highest physical number of the range. */
  readonly largest: number;
  /** Numbers in the range: largest - length + 1 .. largest. */
  readonly length: number;
}

export interface Ack {
  /** Highest physical number this side has sent (so the peer can tell tail loss). */
  readonly highestSent: number;
  /** Highest physical number this side has received. */
  readonly highestReceived: number;
  /** µs between receiving highestReceived and sending this ack (RTT samples subtract it). */
  readonly ackDelayUs: number;
  /** Rate of data delivery to the receiving driver, bytes/s (saturates at 2^32-1). */
  readonly deliveryRate: number;
  /** Every logical segment below this has been received (the cumulative point). */
  readonly cumulative: number;
  /** Bit i (LSB first within each byte) = segment cumulative + 1 + i received. */
  readonly bitmap: Uint8Array;
  /** Physical numbers received, as ranges, highest first (for large windows and loss detection). */
  readonly ranges: readonly AckRange[];
}

export interface DataMoverField {
  /** The receiving side's connection id (it chose it). */
  readonly connectionId: number;
  readonly transport: TransportData;
  readonly ack?: Ack;
}

export function dataMoverFieldLength(f: DataMoverField): number {
  let n = DATAGRAM_PREFIX_LENGTH + SUBFIELD_HEADER + TRANSPORT_BODY;
  if (f.ack) n += SUBFIELD_HEADER + ACK_FIXED + f.ack.bitmap.length + f.ack.ranges.length * 12;
  return n;
}

function check(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new WireError('value', `data mover field: ${name} ${v} not an integer in 0..${max}`, name);
}

/** Writes the field at the start of `out`; returns its length (the payload goes after it). */
export function writeDataMoverField(out: Uint8Array, f: DataMoverField): number {
  const t = f.transport;
  check('connectionId', f.connectionId, 0xffffffff);
  check('transport.flags', t.flags, TD_KNOWN);
  if (t.flags & ~TD_KNOWN) throw new WireError('value', 'data mover field: unknown transport flags', 'transport.flags');
  check('transport.logical', t.logical, Number.MAX_SAFE_INTEGER);
  check('transport.physical', t.physical, Number.MAX_SAFE_INTEGER);
  const a = f.ack;
  if (a) {
    check('ack.highestSent', a.highestSent, Number.MAX_SAFE_INTEGER);
    check('ack.highestReceived', a.highestReceived, Number.MAX_SAFE_INTEGER);
    check('ack.ackDelayUs', a.ackDelayUs, 0xffffffff);
    check('ack.deliveryRate', a.deliveryRate, 0xffffffff);
    check('ack.cumulative', a.cumulative, Number.MAX_SAFE_INTEGER);
    if (a.bitmap.length > MAX_ACK_BITMAP_BYTES)
      throw new WireError('length', `data mover field: ack bitmap of ${a.bitmap.length} bytes exceeds ${MAX_ACK_BITMAP_BYTES}`, 'ack.bitmap');
    if (a.ranges.length > MAX_ACK_RANGES)
      throw new WireError('length', `data mover field: ${a.ranges.length} ack ranges exceed ${MAX_ACK_RANGES}`, 'ack.ranges');
    for (const r of a.ranges) {
      check('ack.ranges.largest', r.largest, Number.MAX_SAFE_INTEGER);
      check('ack.ranges.length', r.length, 0xffffffff);
      if (r.length < 1 || r.length > r.largest + 1) throw new WireError('value', `data mover field: ack range of ${r.length} below ${r.largest}`, 'ack.ranges');
    }
  }
  const n = dataMoverFieldLength(f);
  if (out.length < n) throw new RangeError(`data mover field: ${n} bytes do not fit in ${out.length}`);
  // Checked above: nothing below throws, so a field is written whole or not at all. Written byte by
  // byte (a typed array store keeps the low 8 bits): this runs for every datagram a gateway sends,
  // and a DataView or a Writer per call cost more than the rest of the field.
  out[0] = DATAGRAM_VERSION;
  out[1] = DatagramKind.transport;
  out[2] = 0;
  out[3] = a ? 2 : 1;
  put32(out, 4, f.connectionId);
  put16(out, 8, SUBFIELD_HEADER + TRANSPORT_BODY);
  out[10] = SUB_TRANSPORT;
  out[11] = t.flags;
  put64(out, 12, t.logical);
  put64(out, 20, t.physical);
  let at = 28;
  if (a) {
    put16(out, at, SUBFIELD_HEADER + ACK_FIXED + a.bitmap.length + a.ranges.length * 12);
    out[at + 2] = SUB_ACK;
    out[at + 3] = 0;
    put64(out, at + 4, a.highestSent);
    put64(out, at + 12, a.highestReceived);
    put32(out, at + 20, a.ackDelayUs);
    put32(out, at + 24, a.deliveryRate);
    put64(out, at + 28, a.cumulative);
    put16(out, at + 36, a.bitmap.length);
    put16(out, at + 38, a.ranges.length);
    at += 40;
    out.set(a.bitmap, at);
    at += a.bitmap.length;
    for (const r of a.ranges) {
      put64(out, at, r.largest);
      put32(out, at + 8, r.length);
      at += 12;
    }
  }
  return at;
}

function put16(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 8;
  out[at + 1] = v;
}

function put32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = v >>> 16;
  out[at + 2] = v >>> 8;
  out[at + 3] = v;
}

/** A value below 2^53 (checked by the caller). */
function put64(out: Uint8Array, at: number, v: number): void {
  put32(out, at, Math.floor(v / 0x1_0000_0000));
  put32(out, at + 4, v >>> 0);
}

export function encodeDataMoverField(f: DataMoverField, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(dataMoverFieldLength(f) + payload.length);
  const n = writeDataMoverField(out, f);
  out.set(payload, n);
  return out;
}

/** The field at the start of `datagram`, and where the payload starts. */
export function decodeDataMoverField(datagram: Uint8Array): { field: DataMoverField; payloadOffset: number } {
  return decodeWellFormed(datagram) ?? decodeChecked(datagram);
}

/**
 * The common case, read directly (every datagram a gateway receives comes
 * here: the checked decoder's readers and views cost more than the rest of
 * the receive path's parsing). It accepts only a field the checked decoder
 * accepts, with the same result, and returns undefined for anything else,
 * which the checked decoder then refuses with its precise error.
 */
function decodeWellFormed(d: Uint8Array): { field: DataMoverField; payloadOffset: number } | undefined {
  const n = d.length;
  if (n < 28 || d[0] !== DATAGRAM_VERSION || d[1] !== DatagramKind.transport || d[2] !== 0) return undefined;
  const subfields = d[3]!;
  if ((subfields !== 1 && subfields !== 2) || get16(d, 8) !== SUBFIELD_HEADER + TRANSPORT_BODY || d[10] !== SUB_TRANSPORT) return undefined;
  const flags = d[11]!;
  const logical = get64(d, 12);
  const physical = get64(d, 20);
  if (flags & ~TD_KNOWN || logical < 0 || physical < 0) return undefined;
  const transport: TransportData = { flags, logical, physical };
  const connectionId = get32(d, 4);
  if (subfields === 1) return { field: { connectionId, transport }, payloadOffset: 28 };
  const at = 28;
  if (n < at + SUBFIELD_HEADER + ACK_FIXED || d[at + 2] !== SUB_ACK || d[at + 3] !== 0) return undefined;
  const length = get16(d, at);
  const highestSent = get64(d, at + 4);
  const highestReceived = get64(d, at + 12);
  const cumulative = get64(d, at + 28);
  const bitmapLength = get16(d, at + 36);
  const rangeCount = get16(d, at + 38);
  if (highestSent < 0 || highestReceived < 0 || cumulative < 0 || bitmapLength > MAX_ACK_BITMAP_BYTES || rangeCount > MAX_ACK_RANGES) return undefined;
  if (length !== SUBFIELD_HEADER + ACK_FIXED + bitmapLength + rangeCount * 12 || at + length > n) return undefined;
  let r = at + SUBFIELD_HEADER + ACK_FIXED + bitmapLength;
  const ranges: AckRange[] = [];
  for (let k = 0; k < rangeCount; k++, r += 12) {
    const largest = get64(d, r);
    const len = get32(d, r + 8);
    if (largest < 0 || len < 1 || len > largest + 1) return undefined;
    ranges.push({ largest, length: len });
  }
  const bitmapAt = at + SUBFIELD_HEADER + ACK_FIXED;
  const ack: Ack = {
    highestSent,
    highestReceived,
    ackDelayUs: get32(d, at + 20),
    deliveryRate: get32(d, at + 24),
    cumulative,
    bitmap: d.subarray(bitmapAt, bitmapAt + bitmapLength),
    ranges,
  };
  return { field: { connectionId, transport, ack }, payloadOffset: at + length };
}

function get16(d: Uint8Array, at: number): number {
  return (d[at]! << 8) | d[at + 1]!;
}

function get32(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!) >>> 0;
}

/** A u64 below 2^53, or -1 (the checked decoder says why). */
function get64(d: Uint8Array, at: number): number {
  const hi = get32(d, at);
  return hi > 0x1fffff ? -1 : hi * 0x1_0000_0000 + get32(d, at + 4);
}

/** The decoder without its fast path (decodeDataMoverField's reference: the differential test compares the two). */
export function decodeDataMoverFieldChecked(datagram: Uint8Array): { field: DataMoverField; payloadOffset: number } {
  return decodeChecked(datagram);
}

function decodeChecked(datagram: Uint8Array): { field: DataMoverField; payloadOffset: number } {
  const r = new Reader(datagram, 'datagram');
  const version = r.u8('version');
  if (version !== DATAGRAM_VERSION) throw new WireError('version', `datagram: version ${version}, this code speaks ${DATAGRAM_VERSION}`, 'version');
  const kind = r.u8('kind');
  if (kind !== DatagramKind.transport) throw new WireError('type', `datagram: unknown kind ${kind}`, 'kind');
  if (r.u8('flags') !== 0) throw new WireError('value', 'datagram: reserved flags set', 'flags');
  const subfields = r.u8('subfields');
  const connectionId = r.u32('connectionId');
  if (subfields < 1 || subfields > 2) throw new WireError('value', `datagram: ${subfields} subfield(s), expected 1 or 2`, 'subfields');
  let transport: TransportData | undefined;
  let ack: Ack | undefined;
  for (let i = 0; i < subfields; i++) {
    const start = r.offset;
    const length = r.u16('subfield.length');
    const type = r.u8('subfield.type');
    if (length < SUBFIELD_HEADER) throw new WireError('length', `datagram: subfield length ${length}`, 'subfield.length');
    if (length - SUBFIELD_HEADER > r.left)
      throw new WireError('truncated', `datagram: subfield of ${length} bytes, ${r.left + SUBFIELD_HEADER} left`, 'subfield.length');
    const body = new Reader(datagram, 'datagram subfield', r.offset, start + length);
    if (type === SUB_TRANSPORT && i === 0) {
      if (length !== SUBFIELD_HEADER + TRANSPORT_BODY) throw new WireError('length', `transport-data subfield of ${length} bytes`, 'transport.length');
      const flags = body.u8('transport.flags');
      if (flags & ~TD_KNOWN) throw new WireError('value', 'transport-data: unknown flags', 'transport.flags');
      transport = { flags, logical: body.u64('transport.logical'), physical: body.u64('transport.physical') };
    } else if (type === SUB_ACK && i === 1) {
      if (body.u8('ack.flags') !== 0) throw new WireError('value', 'ack: reserved flags set', 'ack.flags');
      const highestSent = body.u64('ack.highestSent');
      const highestReceived = body.u64('ack.highestReceived');
      const ackDelayUs = body.u32('ack.ackDelayUs');
      const deliveryRate = body.u32('ack.deliveryRate');
      const cumulative = body.u64('ack.cumulative');
      const bitmapLength = body.u16('ack.bitmapLength');
      const rangeCount = body.u16('ack.rangeCount');
      if (bitmapLength > MAX_ACK_BITMAP_BYTES || rangeCount > MAX_ACK_RANGES)
        throw new WireError('length', 'ack: bitmap or ranges over their limits', 'ack.bitmapLength');
      if (length !== SUBFIELD_HEADER + ACK_FIXED + bitmapLength + rangeCount * 12)
        throw new WireError('length', `ack subfield of ${length} bytes for ${bitmapLength} bitmap bytes and ${rangeCount} ranges`, 'ack.length');
      const bitmap = body.bytesOf(bitmapLength, 'ack.bitmap');
      const ranges: AckRange[] = [];
      for (let k = 0; k < rangeCount; k++) {
        const largest = body.u64('ack.ranges.largest');
        const len = body.u32('ack.ranges.length');
        if (len < 1 || len > largest + 1) throw new WireError('value', `ack range of ${len} below ${largest}`, 'ack.ranges');
        ranges.push({ largest, length: len });
      }
      ack = { highestSent, highestReceived, ackDelayUs, deliveryRate, cumulative, bitmap, ranges };
    } else {
      throw new WireError('type', `datagram: subfield ${i} has type ${type}`, 'subfield.type');
    }
    if (body.left !== 0) throw new WireError('length', 'datagram: subfield longer than its contents', 'subfield.length');
    r.skip(length - SUBFIELD_HEADER, 'subfield');
  }
  return { field: { connectionId, transport: transport!, ...(ack ? { ack } : {}) }, payloadOffset: r.offset };
}
