/**
 * The fast channel change cache of one flow: fed every datagram the flow
 * accepted (numbered by the caller), it keeps the datagrams since the last
 * random access point, and the PAT and PMT that were current there, so a
 * receiver added mid-stream can be sent a picture it can decode at once
 * instead of waiting for the next one. Bounded by `maxCacheBytes`: a group
 * of pictures larger than that drops the cache (counted) and the join
 * falls back to live. Never throws on any input.
 */
import { TS_PACKET_SIZE } from '../wire/mpegts/packet.js';
import { TsRapTracker, type TsRapEvents } from './ts-rap.js';
import { RtpH264RapTracker, rtpPayload } from './rtp-rap.js';

export type RapCachePayload = 'mpegts' | 'rtp' | 'rtp-mpegts';

/** Default bound of one flow's cache: 8 MiB holds a 2 s group of pictures up to 32 Mbit/s. */
export const DEFAULT_MAX_CACHE_BYTES = 8 * 1024 * 1024;

export interface RapCacheOptions {
  readonly payload: RapCachePayload;
  /** Bound of the cached bytes (default 8 MiB). */
  readonly maxCacheBytes?: number;
}

export interface CachedDatagram {
  /** A copy of the datagram. */
  readonly bytes: Uint8Array;
  /** The caller's number for it (the monitor tap's index). */
  readonly index: number;
  /** When it was pushed (the caller's clock, ms). */
  readonly atMs: number;
}

export interface RapSnapshot {
  /**
   * To send before the datagrams: the PAT and PMT packets current just
   * before the point, in one datagram ('rtp-mpegts': in an RTP packet
   * numbered one before the first datagram). Undefined for 'rtp', or when
   * the stream had no PAT/PMT before the point.
   */
  readonly prefix: Uint8Array | undefined;
  /** From the random access point on, in order. */
  readonly datagrams: readonly CachedDatagram[];
}

export interface RapCacheStats {
  /** Bytes and datagrams held (from the last point, or from a point being confirmed). */
  readonly bytes: number;
  readonly datagrams: number;
  /** Random access points found. */
  readonly raps: number;
  /** Caches dropped because a group of pictures outgrew maxCacheBytes. */
  readonly overflows: number;
  /** Whether a join now would get a cache. */
  readonly ready: boolean;
}

export class RapCache {
  readonly #payload: RapCachePayload;
  readonly #max: number;
  readonly #ts: TsRapTracker | undefined;
  readonly #rtp: RtpH264RapTracker | undefined;
  #entries: CachedDatagram[] = [];
  #bytes = 0;
  /** Whether #entries[0] is a confirmed random access point. */
  #ready = false;
  #prefix: Uint8Array[] = [];
  /** Position in #entries of a unit that may be a point, and the PAT/PMT current before it; -1 when none. */
  #pending = -1;
  #pendingPrefix: Uint8Array[] = [];
  /** Where in its datagram the pending unit starts (TS: packet offset; -1: the whole datagram). */
  #pendingOffset = -1;
  #pendingHead = 0;
  /** Where the TS packets of the datagram being read start (after an RTP header). */
  #tsStart = 0;
  #raps = 0;
  #overflows = 0;

  constructor(options: RapCacheOptions) {
    this.#payload = options.payload;
    const max = options.maxCacheBytes;
    this.#max = typeof max === 'number' && Number.isFinite(max) && max > 0 ? max : DEFAULT_MAX_CACHE_BYTES;
    const events: TsRapEvents = { onUnitStart: (offset) => this.#unitStart(offset), onRap: () => this.#rap() };
    if (options.payload === 'rtp') this.#rtp = new RtpH264RapTracker(events);
    else this.#ts = new TsRapTracker(events);
  }

  /** One datagram the flow accepted, in order. */
  push(datagram: Uint8Array, index: number, nowMs: number): void {
    if (!(datagram instanceof Uint8Array) || datagram.length === 0) return;
    const ts = this.#ts;
    this.#tsStart = 0;
    this.#entries.push({ bytes: datagram.slice(), index, atMs: nowMs });
    this.#bytes += datagram.length;
    if (this.#rtp) this.#rtp.packet(datagram);
    else if (this.#payload === 'rtp-mpegts') {
      const at = rtpPayload(datagram, 0, datagram.length);
      this.#tsStart = at?.start ?? 0;
      if (at) ts!.scan(datagram, at.start, at.start + Math.floor((at.end - at.start) / TS_PACKET_SIZE) * TS_PACKET_SIZE);
    } else ts!.scan(datagram, 0, datagram.length);
    if (!this.#ready && this.#pending < 0) this.#clear();
    if (this.#bytes > this.#max) this.#overflow();
  }

  /** What a joining receiver gets now; undefined when no point is cached. */
  snapshot(): RapSnapshot | undefined {
    if (!this.#ready || this.#entries.length === 0) return undefined;
    const datagrams = this.#entries.slice();
    return { prefix: this.#prefixDatagram(datagrams[0]!.bytes), datagrams };
  }

  stats(): RapCacheStats {
    return { bytes: this.#bytes, datagrams: this.#entries.length, raps: this.#raps, overflows: this.#overflows, ready: this.#ready };
  }

  #unitStart(offset: number): void {
    this.#pending = this.#entries.length - 1;
    this.#pendingOffset = offset;
    this.#pendingHead = this.#tsStart;
    // The tables current at the unit's first packet: those earlier in its datagram are cut off with what precedes the unit.
    const ts = this.#ts;
    this.#pendingPrefix = ts?.pat && ts.pmt ? [ts.pat, ts.pmt] : [];
    // Without a cached point, what came before this unit is of no use.
    if (!this.#ready) this.#dropBefore(this.#pending);
  }

  #rap(): void {
    if (this.#pending < 0) return;
    this.#dropBefore(this.#pending);
    this.#trimFirst(this.#pendingOffset);
    this.#ready = true;
    this.#prefix = this.#pendingPrefix;
    this.#pending = -1;
    this.#raps++;
  }

  /** The group of pictures outgrew the bound: the join falls back to live until the next point. */
  #overflow(): void {
    if (this.#ready) {
      this.#ready = false;
      this.#overflows++;
      if (this.#pending > 0) this.#dropBefore(this.#pending);
    }
    if (this.#bytes > this.#max) this.#clear();
  }

  /**
   * Cuts the TS packets before the point's first packet out of its datagram
   * (the tail of the previous picture, other PIDs): a receiver that starts
   * there would only find pictures it cannot decode. An RTP header stays.
   */
  #trimFirst(offset: number): void {
    const first = this.#entries[0];
    const head = this.#pendingHead;
    if (!first || offset <= head || offset >= first.bytes.length) return;
    const bytes = new Uint8Array(first.bytes.length - (offset - head));
    bytes.set(first.bytes.subarray(0, head));
    bytes.set(first.bytes.subarray(offset), head);
    this.#bytes -= first.bytes.length - bytes.length;
    this.#entries[0] = { ...first, bytes };
  }

  #clear(): void {
    this.#entries = [];
    this.#bytes = 0;
    this.#pending = -1;
  }

  #dropBefore(position: number): void {
    if (position <= 0) return;
    for (let i = 0; i < position; i++) this.#bytes -= this.#entries[i]!.bytes.length;
    this.#entries = this.#entries.slice(position);
    if (this.#pending >= 0) this.#pending -= position;
  }

  #prefixDatagram(first: Uint8Array): Uint8Array | undefined {
    const tables = this.#prefix;
    if (tables.length === 0 || this.#payload === 'rtp') return undefined;
    const ts = new Uint8Array(tables.length * TS_PACKET_SIZE);
    tables.forEach((t, i) => ts.set(t, i * TS_PACKET_SIZE));
    if (this.#payload === 'mpegts') return ts;
    // TS in RTP: the same SSRC, timestamp and payload type as the first datagram, numbered one before it.
    if (first.length < 12) return undefined;
    const out = new Uint8Array(12 + ts.length);
    out.set(first.subarray(0, 12));
    out[0] = 0x80; // version 2, no padding, extension or CSRC
    out[1] = first[1]! & 0x7f;
    const seq = (((first[2]! << 8) | first[3]!) + 0xffff) & 0xffff;
    out[2] = seq >>> 8;
    out[3] = seq & 0xff;
    out.set(ts, 12);
    return out;
  }
}
