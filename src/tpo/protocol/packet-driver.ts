/**
 * The TPO packet driver (issue #6): turns the messages of the edge
 * handlers (one per carried packet or data chunk) into driver buffers for
 * the data mover, and back.
 *
 * Aggregation. Messages are appended to an open buffer, one per trust
 * domain; a buffer is sealed when the next message would take it past
 * `maxBufferBytes`, or when `flushDelayMs` (default 2 ms; an urgent lane: the end of the event-loop turn) has passed since
 * its first message, so chatty small-packet traffic becomes few large
 * transport messages while a lone message waits at most the deadline.
 *
 * Compression. Chosen per buffer: brotli at quality 4 by default (measured
 * on this project's 2-core VM, 16-64 KiB buffers: about 275 MB/s, a third
 * smaller output than deflate level 1 on text, and it gives up on random
 * data at over 700 MB/s; Node 20 has no zstd). A buffer below
 * `minCompressBytes`, or whose compressed form is not at least 3 % smaller,
 * goes uncompressed, so incompressible data (most WAN traffic is already
 * TLS) never grows; after several such buffers in a row a domain stops
 * trying for a while. Trust domains never share a buffer, compressed or
 * not: compressing one party's bytes with another's leaks them through the
 * length (CRIME).
 *
 * Encoding happens in push(): a message is checked and written into its
 * open buffer there, so a message the wire cannot carry is refused to the
 * caller at once (a WireError naming the field), and sealing later — from
 * the deadline timer, where a throw would end the process — only
 * compresses and frames bytes already known to be good. Writing at push
 * also copies the data then, so a caller that reuses its buffer afterwards
 * cannot change what is sent.
 *
 * The compression codec, and the decoding of a driver buffer back into
 * messages, are wire/tpo/compression.ts.
 */
import { WireError } from '../../wire/tpo/errors.js';
import {
  encodeDriverBuffer,
  encodeDriverBufferInPlace,
  MAX_DRIVER_BUFFER,
  MAX_MESSAGES,
  ROUTING_HEADER_LENGTH,
  type CarriedMessage,
  type Codec,
} from '../../wire/tpo/driver-buffer.js';
import { compress } from '../../wire/tpo/compression.js';
import { checkMessageHeader, messageHeaderLength, writeMessageHeader } from '../../wire/tpo/message.js';
import { Writer } from '../../wire/tpo/cursor.js';
import { uninitializedBytes } from '../../wire/bytes.js';

export type CompressionChoice = 'auto' | 'brotli' | 'deflate' | 'none';

export interface PacketDriverOptions {
  /** Largest raw (uncompressed) size of a driver buffer, header included; default 32 KiB. */
  readonly maxBufferBytes?: number;
  /** A buffer's first message waits at most this long; default 2 ms. */
  readonly flushDelayMs?: number;
  /** 'auto' = brotli where it pays; default 'auto'. */
  readonly compression?: CompressionChoice;
  /** Buffers smaller than this are not compressed; default 256 bytes. */
  readonly minCompressBytes?: number;
}

export interface SealedBuffer {
  readonly bytes: Uint8Array;
  readonly domain: number;
  readonly messages: number;
  /** Bytes of messages before compression (the raw payload). */
  readonly rawBytes: number;
  readonly codec: Codec;
  /** Why it was sealed. */
  readonly reason: 'full' | 'deadline' | 'flush';
  /** Messages pushed as urgent (their own buffers, never mixed with others). */
  readonly urgent: boolean;
  /** Urgent messages of latency-sensitive flows (header flag): the data mover sends these buffers twice. */
  readonly redundant: boolean;
}

export interface PacketDriverStats {
  messages: number;
  buffers: number;
  rawBytes: number;
  /** Bytes of sealed driver buffers (headers included): what the data mover carries. */
  bufferBytes: number;
  compressed: number;
  /** Buffers sent uncompressed because compressing did not pay (or was skipped after it did not). */
  notCompressible: number;
  /**
   * Buffers lost because sealing them threw (their consumer failed, a bug):
   * counted and reported once as a process warning, never thrown from the
   * deadline timer.
   */
  sealFailures: number;
}

const DEFAULT_MAX_BUFFER = 32 * 1024;
/** Open buffers are keyed by domain (0..255), urgent ones by domain + this, urgent latency-sensitive ones by domain + 2 × this. */
const URGENT_LANE = 256;
const DEFAULT_FLUSH_MS = 2;
const DEFAULT_MIN_COMPRESS = 256;
/** Compressed output must be at least this much smaller than the input to be used. */
const MIN_SAVING = 0.03;
/**
 * After this many incompressible buffers in a row a domain skips compression
 * for SKIP_BUFFERS buffers; each further give-up (one incompressible buffer
 * after a skip) doubles the skip, up to MAX_SKIP_BUFFERS. Bulk incompressible
 * data (most WAN traffic) then pays for one try in 256 buffers instead of 4
 * in 36: brotli's give-up was 4 % of a gateway's CPU at 100 Mbit/s (issue 18).
 */
const GIVE_UP_AFTER = 4;
const SKIP_BUFFERS = 32;
const MAX_SKIP_BUFFERS = 256;

/** An open buffer starts this large and doubles as messages arrive, up to maxBufferBytes. */
const INITIAL_OPEN_BYTES = 4096;

interface OpenBuffer {
  /**
   * Room for the routing header, then the messages as they will be carried,
   * back to back (written at push): an uncompressed buffer is sealed where
   * it was built, without a copy.
   */
  raw: Uint8Array;
  /** Bytes of messages (after the header's room). */
  bytes: number;
  count: number;
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
}

export class PacketDriver {
  readonly stats: PacketDriverStats = { messages: 0, buffers: 0, rawBytes: 0, bufferBytes: 0, compressed: 0, notCompressible: 0, sealFailures: 0 };
  readonly #maxBytes: number;
  readonly #flushMs: number;
  readonly #compression: CompressionChoice;
  readonly #minCompress: number;
  readonly #open = new Map<number, OpenBuffer>();
  /** Per domain: incompressible buffers in a row, buffers left to skip compressing, and the skip after the next give-up. */
  readonly #incompressible = new Map<number, { run: number; skip: number; nextSkip: number }>();
  #closed = false;
  readonly #onBuffer: (b: SealedBuffer) => void;

  constructor(onBuffer: (b: SealedBuffer) => void, options: PacketDriverOptions = {}) {
    this.#onBuffer = onBuffer;
    this.#maxBytes = options.maxBufferBytes ?? DEFAULT_MAX_BUFFER;
    this.#flushMs = options.flushDelayMs ?? DEFAULT_FLUSH_MS;
    this.#compression = options.compression ?? 'auto';
    this.#minCompress = options.minCompressBytes ?? DEFAULT_MIN_COMPRESS;
    if (!Number.isInteger(this.#maxBytes) || this.#maxBytes < ROUTING_HEADER_LENGTH + 128 || this.#maxBytes > MAX_DRIVER_BUFFER) {
      throw new RangeError(`maxBufferBytes must be an integer in ${ROUTING_HEADER_LENGTH + 128}..${MAX_DRIVER_BUFFER}`);
    }
  }

  /** The most data one message can carry (edge handlers cut TCP streams into chunks of at most this). */
  maxMessageData(ipv6: boolean): number {
    return this.#maxBytes - ROUTING_HEADER_LENGTH - (ipv6 ? 52 : 28);
  }

  /**
   * Queues a message of trust domain `domain` (0..255). `urgent` messages
   * (small flows, control) are aggregated in buffers of their own, which the
   * data mover sends ahead of queued bulk (SealedBuffer.urgent).
   *
   * Throws a WireError, and queues nothing, for a message the wire cannot
   * carry: a header field out of range or of no known code, addresses of
   * two families, a dataLength other than the data's, a domain outside
   * 0..255, or more data than a buffer holds. The message's bytes are
   * copied here.
   */
  push(domain: number, message: CarriedMessage, urgent = false): void {
    if (this.#closed) throw new Error('packet driver is closed');
    if (!Number.isInteger(domain) || domain < 0 || domain > 0xff) throw new WireError('value', `trust domain ${domain} is not an integer in 0..255`, 'domain');
    const h = message.header;
    checkMessageHeader(h);
    if (h.dataLength !== message.data.length)
      throw new WireError('length', `message: dataLength ${h.dataLength} but ${message.data.length} bytes of data`, 'dataLength');
    const size = messageHeaderLength(h) + message.data.length;
    if (ROUTING_HEADER_LENGTH + size > this.#maxBytes) {
      throw new WireError('length', `message of ${message.data.length} data bytes exceeds the driver buffer maximum of ${this.#maxBytes} bytes`, 'dataLength');
    }
    // One open buffer per domain and lane.
    const lane = urgent ? domain + (h.latencySensitive ? 2 : 1) * URGENT_LANE : domain;
    let open = this.#open.get(lane);
    if (open && (ROUTING_HEADER_LENGTH + open.bytes + size > this.#maxBytes || open.count >= MAX_MESSAGES)) {
      this.#seal(lane, 'full');
      open = undefined;
    }
    if (!open) {
      open = {
        raw: uninitializedBytes(Math.min(this.#maxBytes, Math.max(INITIAL_OPEN_BYTES, ROUTING_HEADER_LENGTH + size))),
        bytes: 0,
        count: 0,
        timer: undefined,
      };
      this.#open.set(lane, open);
      // The deadline runs from the buffer's first message. An urgent lane
      // (thin, interactive flows) waits only for the rest of this event-loop
      // turn: what arrives together still shares a buffer, and a request
      // does not wait the bulk deadline twice per round trip (once each way).
      open.timer = urgent ? setImmediate(() => this.#sealOnDeadline(lane)) : setTimeout(() => this.#sealOnDeadline(lane), this.#flushMs);
    }
    const at = ROUTING_HEADER_LENGTH + open.bytes;
    if (at + size > open.raw.length) {
      const grown = uninitializedBytes(Math.min(this.#maxBytes, Math.max(open.raw.length * 2, at + size)));
      grown.set(open.raw.subarray(0, at));
      open.raw = grown;
    }
    // Checked above, so this cannot throw half-way.
    const w = new Writer(open.raw.subarray(at, at + size));
    writeMessageHeader(w, h);
    w.bytesOf(message.data);
    open.bytes += size;
    open.count++;
    this.stats.messages++;
    if (ROUTING_HEADER_LENGTH + open.bytes >= this.#maxBytes) this.#seal(lane, 'full');
  }

  /** Seals every open buffer now (e.g. a close must not wait for the deadline). */
  flush(): void {
    for (const lane of [...this.#open.keys()]) this.#seal(lane, 'flush');
  }

  close(): void {
    this.flush();
    this.#closed = true;
  }

  /**
   * The deadline timer's seal. Everything in the buffer was checked at
   * push, so this does not throw for what a message holds; should the
   * consumer throw (a bug), the buffer is counted lost and reported once,
   * instead of an uncaught exception ending the process.
   */
  #sealOnDeadline(lane: number): void {
    try {
      this.#seal(lane, 'deadline');
    } catch (err) {
      this.stats.sealFailures++;
      if (this.stats.sealFailures === 1)
        process.emitWarning(`packet driver: a sealed buffer was lost (${err instanceof Error ? err.message : String(err)})`, { code: 'SLUICE_TPO_SEAL' });
    }
  }

  #seal(lane: number, reason: SealedBuffer['reason']): void {
    const open = this.#open.get(lane);
    if (!open) return;
    this.#open.delete(lane);
    const urgent = lane >= URGENT_LANE;
    const redundant = lane >= 2 * URGENT_LANE;
    const domain = lane % URGENT_LANE;
    if (lane >= URGENT_LANE) clearImmediate(open.timer as NodeJS.Immediate | undefined);
    else clearTimeout(open.timer as NodeJS.Timeout | undefined);
    const raw = open.raw.subarray(ROUTING_HEADER_LENGTH, ROUTING_HEADER_LENGTH + open.bytes);
    const { codec, payload } = this.#compress(domain, raw);
    const header = { function: 'messages', codec, domain, count: open.count, rawLength: raw.length } as const;
    const bytes =
      payload === raw ? encodeDriverBufferInPlace(header, open.raw.subarray(0, ROUTING_HEADER_LENGTH + open.bytes)) : encodeDriverBuffer(header, payload);
    this.stats.buffers++;
    this.stats.rawBytes += raw.length;
    this.stats.bufferBytes += bytes.length;
    this.#onBuffer({ bytes, domain, messages: open.count, rawBytes: raw.length, codec, reason, urgent, redundant });
  }

  #compress(domain: number, raw: Uint8Array): { codec: Codec; payload: Uint8Array } {
    if (this.#compression === 'none' || raw.length < this.#minCompress) return { codec: 'none', payload: raw };
    const history = this.#incompressible.get(domain) ?? { run: 0, skip: 0, nextSkip: SKIP_BUFFERS };
    this.#incompressible.set(domain, history);
    if (history.skip > 0) {
      history.skip--;
      this.stats.notCompressible++;
      return { codec: 'none', payload: raw };
    }
    const codec: Codec = this.#compression === 'deflate' ? 'deflate' : 'brotli';
    const out = compress(codec, raw);
    if (out.length <= raw.length * (1 - MIN_SAVING)) {
      history.run = 0;
      history.nextSkip = SKIP_BUFFERS;
      this.stats.compressed++;
      return { codec, payload: out };
    }
    this.stats.notCompressible++;
    // After a skip one incompressible buffer is enough to give up again, for twice as long.
    if (++history.run >= (history.nextSkip > SKIP_BUFFERS ? 1 : GIVE_UP_AFTER)) {
      history.run = 0;
      history.skip = history.nextSkip;
      history.nextSkip = Math.min(MAX_SKIP_BUFFERS, history.nextSkip * 2);
    }
    return { codec: 'none', payload: raw };
  }
}
