/**
 * The TPO driver buffer (docs/WIRE.md, "Driver buffer"): the unit the
 * packet driver hands the data mover. A routing header, then the messages
 * (message header + data, back to back), possibly compressed as a whole.
 * The header carries the raw length, so a decompressor can be bounded
 * before it runs, and a CRC-32 over header and carried bytes, so any
 * corruption the transport's authentication did not catch (a bug in
 * reassembly, memory) is refused rather than delivered. Pure codec: the
 * compression itself is the packet driver's.
 */
import { crc32 } from '../crc32.js';
import { WireError } from './errors.js';
import { Reader, Writer } from './cursor.js';
import { messageHeaderLength, readMessageHeader, writeMessageHeader, type MessageHeader } from './message.js';

export const ROUTING_VERSION = 1;
export const ROUTING_HEADER_LENGTH = 20;
/** A driver buffer carries at most this many bytes, raw or carried (the data mover's limit). */
export const MAX_DRIVER_BUFFER = 1 << 20;
export const MAX_MESSAGES = 0xffff;

export const CODECS = ['none', 'deflate', 'brotli'] as const;
export type Codec = (typeof CODECS)[number];
const CODEC_CODE: Record<Codec, number> = { none: 0, deflate: 1, brotli: 2 };

/** Function codes of a driver buffer: messages for the far edge; control for the gateway itself. */
export const BUFFER_FUNCTIONS = ['messages', 'control'] as const;
export type BufferFunction = (typeof BUFFER_FUNCTIONS)[number];
const BUFFER_FUNCTION_CODE: Record<BufferFunction, number> = { messages: 1, control: 2 };

export interface RoutingHeader {
  readonly function: BufferFunction;
  readonly codec: Codec;
  /** Trust domain of every message in the buffer (0..255): domains never share a buffer. */
  readonly domain: number;
  /** Messages in the buffer. */
  readonly count: number;
  /** Bytes after the header as carried (compressed or not). */
  readonly dataLength: number;
  /** Bytes of the messages once decompressed (= dataLength with codec none). */
  readonly rawLength: number;
}

export interface CarriedMessage {
  readonly header: MessageHeader;
  readonly data: Uint8Array;
}

/** The messages back to back (the raw payload of a driver buffer). */
export function encodeMessages(messages: readonly CarriedMessage[]): Uint8Array {
  let total = 0;
  for (const m of messages) {
    if (m.header.dataLength !== m.data.length)
      throw new WireError('length', `message: dataLength ${m.header.dataLength} but ${m.data.length} bytes of data`, 'dataLength');
    total += messageHeaderLength(m.header) + m.data.length;
  }
  const out = new Uint8Array(total);
  const w = new Writer(out);
  for (const m of messages) {
    writeMessageHeader(w, m.header);
    w.bytesOf(m.data);
  }
  return out;
}

/** Exactly `count` messages filling `raw`; data are views into it. */
export function decodeMessages(raw: Uint8Array, count: number): CarriedMessage[] {
  const r = new Reader(raw, 'messages');
  const out: CarriedMessage[] = [];
  for (let i = 0; i < count; i++) {
    const header = readMessageHeader(r);
    out.push({ header, data: r.bytesOf(header.dataLength, `message ${i} data`) });
  }
  if (r.left !== 0) throw new WireError('length', `messages: ${r.left} byte(s) after the ${count} message(s) the routing header counts`, 'count');
  return out;
}

/** Frames `payload` (raw, or compressed by the caller) with its routing header. */
export function encodeDriverBuffer(h: Omit<RoutingHeader, 'dataLength'>, payload: Uint8Array): Uint8Array {
  checkRoutingHeader(h, payload.length);
  const out = new Uint8Array(ROUTING_HEADER_LENGTH + payload.length);
  out.set(payload, ROUTING_HEADER_LENGTH);
  return writeRoutingHeader(out, h);
}

/**
 * encodeDriverBuffer for a payload already in place after ROUTING_HEADER_LENGTH
 * bytes of room at the start of `out` (the whole of `out` is the buffer):
 * writes the header there and returns `out`. The packet driver builds its
 * buffers this way, so sealing an uncompressed one copies nothing.
 */
export function encodeDriverBufferInPlace(h: Omit<RoutingHeader, 'dataLength'>, out: Uint8Array): Uint8Array {
  if (out.length < ROUTING_HEADER_LENGTH) throw new WireError('length', 'routing header: no room for the header', 'dataLength');
  checkRoutingHeader(h, out.length - ROUTING_HEADER_LENGTH);
  return writeRoutingHeader(out, h);
}

function checkRoutingHeader(h: Omit<RoutingHeader, 'dataLength'>, payloadLength: number): void {
  if (!Number.isInteger(h.domain) || h.domain < 0 || h.domain > 0xff)
    throw new WireError('value', `routing header: domain ${h.domain} not in 0..255`, 'domain');
  if (!Number.isInteger(h.count) || h.count < 0 || h.count > MAX_MESSAGES)
    throw new WireError('value', `routing header: count ${h.count} not in 0..${MAX_MESSAGES}`, 'count');
  if (payloadLength > MAX_DRIVER_BUFFER || h.rawLength > MAX_DRIVER_BUFFER)
    throw new WireError('length', `routing header: ${Math.max(payloadLength, h.rawLength)} bytes exceed ${MAX_DRIVER_BUFFER}`, 'dataLength');
  if (h.codec === 'none' && h.rawLength !== payloadLength)
    throw new WireError('length', 'routing header: uncompressed, but raw and carried lengths differ', 'rawLength');
}

/** The header (and the CRC over the whole buffer) at the start of `out`, checked by checkRoutingHeader. */
function writeRoutingHeader(out: Uint8Array, h: Omit<RoutingHeader, 'dataLength'>): Uint8Array {
  const payloadLength = out.length - ROUTING_HEADER_LENGTH;
  const w = new Writer(out);
  w.u8(ROUTING_VERSION)
    .u8(BUFFER_FUNCTION_CODE[h.function])
    .u8(CODEC_CODE[h.codec])
    .u8(h.domain)
    .u16(h.count)
    .u16(0)
    .u32(payloadLength)
    .u32(h.rawLength)
    .u32(0);
  w.u32At(16, crcOf(out));
  return out;
}

/** CRC-32 of the buffer with its CRC field taken as zero. */
function crcOf(buf: Uint8Array): number {
  return crc32(buf.subarray(ROUTING_HEADER_LENGTH), crc32(buf.subarray(0, 16)));
}

const CODEC_BY_CODE = new Map(Object.entries(CODEC_CODE).map(([k, v]) => [v, k as Codec]));
const FUNCTION_BY_CODE = new Map(Object.entries(BUFFER_FUNCTION_CODE).map(([k, v]) => [v, k as BufferFunction]));

/** The routing header and the carried payload (a view into `buf`), checked: lengths, codes, CRC. */
export function decodeDriverBuffer(buf: Uint8Array): { header: RoutingHeader; payload: Uint8Array } {
  const r = new Reader(buf, 'driver buffer');
  const version = r.u8('version');
  if (version !== ROUTING_VERSION) throw new WireError('version', `routing header: version ${version}, this code speaks ${ROUTING_VERSION}`, 'version');
  const fn = FUNCTION_BY_CODE.get(r.u8('function'));
  const codec = CODEC_BY_CODE.get(r.u8('codec'));
  const domain = r.u8('domain');
  const count = r.u16('count');
  const reserved = r.u16('reserved');
  const dataLength = r.u32('dataLength');
  const rawLength = r.u32('rawLength');
  const crc = r.u32('crc32');
  if (dataLength !== r.left)
    throw new WireError(dataLength > r.left ? 'truncated' : 'length', `routing header: dataLength ${dataLength} but ${r.left} byte(s) follow`, 'dataLength');
  if (crc !== crcOf(buf)) throw new WireError('checksum', 'driver buffer: CRC-32 mismatch', 'crc32');
  if (!fn) throw new WireError('type', 'routing header: unknown function', 'function');
  if (!codec) throw new WireError('type', 'routing header: unknown codec', 'codec');
  if (reserved !== 0) throw new WireError('value', 'routing header: reserved bits set', 'reserved');
  if (rawLength > MAX_DRIVER_BUFFER || dataLength > MAX_DRIVER_BUFFER)
    throw new WireError('length', `routing header: more than ${MAX_DRIVER_BUFFER} bytes`, 'rawLength');
  if (codec === 'none' && rawLength !== dataLength)
    throw new WireError('length', 'routing header: uncompressed, but raw and carried lengths differ', 'rawLength');
  return { header: { function: fn, codec, domain, count, dataLength, rawLength }, payload: r.bytesOf(dataLength, 'payload') };
}
