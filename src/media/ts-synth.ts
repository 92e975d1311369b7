/**
 * Deterministic synthetic MPEG-TS source for the product demo: one program
 * with one video-like PID, PAT/PMT repeated at a fixed interval, PCR at a
 * fixed interval, and a counter pattern as payload. Packed N (default 7)
 * packets per UDP datagram.
 *
 * All timing comes from the stream's own clock, i.e. the byte position at
 * the nominal bitrate, never from the wall clock: the same options always
 * produce the same bytes, and the PCR is exactly consistent with the bitrate
 * (which is what a receiver uses to recover the clock). The caller paces
 * sending with `datagramIntervalNs`.
 */

import { PCR_MODULUS } from '../wire/mpegts/pcr.js';
import { PID_PAT, TS_PACKET_SIZE, TS_PACKETS_PER_DATAGRAM, maxTsPayload, writeTsHeader } from '../wire/mpegts/packet.js';
import { encodePatSection, encodePmtSection, encodePsiPayload } from '../wire/mpegts/psi.js';

export interface SyntheticTsOptions {
  /**
   * Nominal transport bitrate in bits/s (integer, 300 kbit/s..10 Gbit/s; below
   * that one packet lasts so long that PCR spacing cannot stay near 40 ms).
   * Default 20 Mbit/s.
   */
  readonly bitrateBps?: number;
  /** transport_stream_id in the PAT. Default 1. */
  readonly transportStreamId?: number;
  /** program_number (1..65535). Default 1. */
  readonly programNumber?: number;
  /** PID of the PMT. Default 0x1000. */
  readonly pmtPid?: number;
  /** PID of the video-like elementary stream, which also carries the PCR. Default 0x100. */
  readonly videoPid?: number;
  /**
   * stream_type announced in the PMT. Default 0x1B (H.264) so analysers show a
   * video PID; the ES bytes are a counter pattern, not decodable video.
   */
  readonly streamType?: number;
  /** PAT+PMT repetition period in ms of stream time. Default 100. */
  readonly psiIntervalMs?: number;
  /** PCR period in ms of stream time, ≤ 40 (MPEG requires ≤ 100; we keep a margin). Default 20. */
  readonly pcrIntervalMs?: number;
  /** Synthetic PES ("frame") rate in Hz; each PES starts with payload_unit_start. Default 25. */
  readonly pesRateHz?: number;
  /** TS packets per datagram, 1..348 (a UDP payload holds at most 348). Default 7 (1316 bytes). */
  readonly packetsPerDatagram?: number;
}

/** PES header we emit: start code, stream_id 0xE0, unbounded length, PTS only. */
const PES_HEADER_SIZE = 14;
/** PTS leads the PCR by this much (90 kHz ticks = 100 ms), as a real encoder's buffering would. */
const PTS_LEAD = 9000n;
const PTS_MODULUS = 1n << 33n;
/** Offset of the last PCR-base byte in a PCR packet: the PCR stamps when that byte arrives. */
const PCR_BYTE_IN_PACKET = 10n;

/**
 * Maps events at times k·(numer/denom) onto packet indices of the stream
 * clock: event k fires at the first packet whose start time is ≥ its time.
 * BigInt keeps it exact for any stream length; it runs once per event
 * (tens per second), not per packet.
 */
class PacketSchedule {
  /** Index of the event that fires at `next`. */
  k = 0n;
  /** Packet index of the next event. */
  next = 0;
  /** `numer / denom` is the event period in packets. */
  readonly #numer: bigint;
  readonly #denom: bigint;

  constructor(numer: bigint, denom: bigint) {
    this.#numer = numer;
    this.#denom = denom;
  }

  /** The current event fired at packet `index`: move to the first event after it. */
  advance(index: number): void {
    do {
      this.k++;
      this.next = Number((this.k * this.#numer + this.#denom - 1n) / this.#denom);
    } while (this.next <= index);
  }
}

function option(name: string, v: number | undefined, dflt: number, min: number, max: number, integer: boolean): number {
  const x = v ?? dflt;
  if (typeof x !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isFinite(x) || x < min || x > max || (integer && !Number.isInteger(x))) {
    throw new RangeError(`${name} must be ${integer ? 'an integer ' : ''}in ${min}..${max}, got ${x}`);
  }
  return x;
}

/**
 * Generator of a paced synthetic TS stream. Call `nextDatagram()` (or
 * `writeDatagram(buf)` to reuse a buffer) once per `datagramIntervalNs`.
 * Throws RangeError/TypeError on invalid options.
 */
export class SyntheticTsStream {
  /** Nominal bitrate in bits/s. */
  readonly bitrateBps: number;
  readonly packetsPerDatagram: number;
  /** Bytes per datagram (packetsPerDatagram × 188). */
  readonly datagramSize: number;
  /** Stream time between datagrams at the bitrate, in ns (may be fractional). */
  readonly datagramIntervalNs: number;
  readonly programNumber: number;
  readonly pmtPid: number;
  readonly videoPid: number;

  readonly #bitrate: bigint;
  readonly #patPayload: Uint8Array;
  readonly #pmtPayload: Uint8Array;
  readonly #psiSchedule: PacketSchedule;
  readonly #pcrSchedule: PacketSchedule;
  readonly #pesSchedule: PacketSchedule;
  readonly #pesRateMilliHz: bigint;
  #ccPat = 0;
  #ccPmt = 0;
  #ccVideo = 0;
  #pmtPending = false;
  #videoPacketCount = 0;
  #datagrams = 0;
  #packets = 0;
  #patPackets = 0;
  #pmtPackets = 0;
  #pcrPackets = 0;
  #pesStarts = 0;

  constructor(options: SyntheticTsOptions = {}) {
    this.bitrateBps = option('bitrateBps', options.bitrateBps, 20_000_000, 300_000, 10_000_000_000, true);
    this.packetsPerDatagram = option('packetsPerDatagram', options.packetsPerDatagram, TS_PACKETS_PER_DATAGRAM, 1, 348, true);
    const tsid = option('transportStreamId', options.transportStreamId, 1, 0, 0xffff, true);
    this.programNumber = option('programNumber', options.programNumber, 1, 1, 0xffff, true);
    this.pmtPid = option('pmtPid', options.pmtPid, 0x1000, 0x10, 0x1ffe, true);
    this.videoPid = option('videoPid', options.videoPid, 0x100, 0x10, 0x1ffe, true);
    if (this.pmtPid === this.videoPid) throw new RangeError('pmtPid and videoPid must differ');
    const streamType = option('streamType', options.streamType, 0x1b, 0, 0xff, true);
    const psiMs = option('psiIntervalMs', options.psiIntervalMs, 100, 1, 10_000, false);
    const pcrMs = option('pcrIntervalMs', options.pcrIntervalMs, 20, 1, 40, false);
    const pesHz = option('pesRateHz', options.pesRateHz, 25, 1, 1000, false);

    this.datagramSize = this.packetsPerDatagram * TS_PACKET_SIZE;
    this.datagramIntervalNs = (this.datagramSize * 8 * 1e9) / this.bitrateBps;
    this.#bitrate = BigInt(this.bitrateBps);

    // One packet lasts 1504/bitrate s, so an event every T µs falls every
    // T·bitrate/(1e6·1504) packets; a PES every 1000/(mHz) s likewise.
    const bitsPerPacket = BigInt(TS_PACKET_SIZE * 8);
    const us = (ms: number): bigint => BigInt(Math.round(ms * 1000));
    this.#psiSchedule = new PacketSchedule(us(psiMs) * this.#bitrate, 1_000_000n * bitsPerPacket);
    this.#pcrSchedule = new PacketSchedule(us(pcrMs) * this.#bitrate, 1_000_000n * bitsPerPacket);
    this.#pesRateMilliHz = BigInt(Math.round(pesHz * 1000));
    this.#pesSchedule = new PacketSchedule(1000n * this.#bitrate, this.#pesRateMilliHz * bitsPerPacket);

    // PSI never changes, so its packets' payloads are built once.
    this.#patPayload = encodePsiPayload(encodePatSection({ transportStreamId: tsid, programs: [{ programNumber: this.programNumber, pmtPid: this.pmtPid }] }));
    this.#pmtPayload = encodePsiPayload(
      encodePmtSection({ programNumber: this.programNumber, pcrPid: this.videoPid, streams: [{ streamType, elementaryPid: this.videoPid }] }),
    );
  }

  /** Datagrams produced so far. */
  get datagrams(): number {
    return this.#datagrams;
  }
  /** TS packets produced so far (also the index of the next packet). */
  get packets(): number {
    return this.#packets;
  }
  /** Bytes produced so far. */
  get bytes(): number {
    return this.#packets * TS_PACKET_SIZE;
  }
  /** PAT packets produced so far. */
  get patPackets(): number {
    return this.#patPackets;
  }
  /** PMT packets produced so far. */
  get pmtPackets(): number {
    return this.#pmtPackets;
  }
  /** Packets carrying a PCR produced so far. */
  get pcrPackets(): number {
    return this.#pcrPackets;
  }
  /** PES packets started (payload_unit_start on the video PID) so far. */
  get pesStarts(): number {
    return this.#pesStarts;
  }
  /** Stream time of the next byte, in ns (bytes × 8 / bitrate; floating point). */
  get streamTimeNs(): number {
    return (this.bytes * 8 * 1e9) / this.bitrateBps;
  }

  /**
   * PCR (27 MHz units, wrapped) that the packet with index `packetIndex`
   * carries if it carries one: the stream time at which its last PCR-base
   * byte is sent, at the nominal bitrate.
   */
  pcrForPacket(packetIndex: number): bigint {
    const byte = BigInt(packetIndex) * BigInt(TS_PACKET_SIZE) + PCR_BYTE_IN_PACKET;
    return ((byte * 8n * 27_000_000n) / this.#bitrate) % PCR_MODULUS;
  }

  /** Returns the next datagram in a new buffer of `datagramSize` bytes. */
  nextDatagram(): Uint8Array {
    const out = new Uint8Array(this.datagramSize);
    this.writeDatagram(out);
    return out;
  }

  /**
   * Writes the next datagram into `out[0, datagramSize)` and returns
   * `datagramSize`. Throws RangeError when `out` is shorter. Allocation-free
   * except for a few BigInts per PCR/PSI/PES event.
   */
  writeDatagram(out: Uint8Array): number {
    if (!(out instanceof Uint8Array)) throw new TypeError('out must be a Uint8Array');
    if (out.length < this.datagramSize) throw new RangeError(`out needs ${this.datagramSize} bytes, has ${out.length}`);
    for (let n = 0, o = 0; n < this.packetsPerDatagram; n++, o += TS_PACKET_SIZE) this.#writePacket(out, o);
    this.#datagrams++;
    return this.datagramSize;
  }

  #writePacket(out: Uint8Array, o: number): void {
    const i = this.#packets++;
    if (this.#pmtPending) {
      // PMT goes right after its PAT so a receiver joining at the PAT finds it at once.
      this.#pmtPending = false;
      const p = writeTsHeader(out, o, this.pmtPid, true, this.#ccPmt, this.#pmtPayload.length);
      out.set(this.#pmtPayload, p);
      this.#ccPmt = (this.#ccPmt + 1) & 0x0f;
      this.#pmtPackets++;
      return;
    }
    // A due PCR goes before a due PAT (PSI can wait a packet; PCR jitter is
    // what the receiver's clock recovery sees), except that the stream opens
    // with PAT/PMT so a receiver can demux from its first packet.
    if (i >= this.#psiSchedule.next && (i < this.#pcrSchedule.next || i === 0)) {
      this.#psiSchedule.advance(i);
      this.#pmtPending = true;
      const p = writeTsHeader(out, o, PID_PAT, true, this.#ccPat, this.#patPayload.length);
      out.set(this.#patPayload, p);
      this.#ccPat = (this.#ccPat + 1) & 0x0f;
      this.#patPackets++;
      return;
    }
    this.#writeVideoPacket(out, o, i);
  }

  #writeVideoPacket(out: Uint8Array, o: number, i: number): void {
    let pcr = -1;
    if (i >= this.#pcrSchedule.next) {
      this.#pcrSchedule.advance(i);
      pcr = Number(this.pcrForPacket(i));
      this.#pcrPackets++;
    }
    const pesStart = i >= this.#pesSchedule.next;
    const payloadLength = maxTsPayload(pcr >= 0);
    let p = writeTsHeader(out, o, this.videoPid, pesStart, this.#ccVideo, payloadLength, 0, pcr);
    this.#ccVideo = (this.#ccVideo + 1) & 0x0f;
    if (pesStart) {
      // PTS of PES k is the nominal time of frame k plus a fixed lead.
      const k = this.#pesSchedule.k;
      const pts = ((k * 90_000n * 1000n) / this.#pesRateMilliHz + PTS_LEAD) % PTS_MODULUS;
      this.#pesSchedule.advance(i);
      writePesHeader(out, p, Number(pts));
      p += PES_HEADER_SIZE;
      this.#pesStarts++;
    }
    // Deterministic ES bytes: a counter that shifts by one per video packet.
    const end = o + TS_PACKET_SIZE;
    const seed = this.#videoPacketCount++;
    for (let j = 0; p < end; p++, j++) out[p] = (seed + j) & 0xff;
  }
}

/** Writes a 14-byte PES header (stream_id 0xE0, PES_packet_length 0, PTS only) at `p`. */
function writePesHeader(out: Uint8Array, p: number, pts: number): void {
  out[p] = 0x00;
  out[p + 1] = 0x00;
  out[p + 2] = 0x01; // packet_start_code_prefix
  out[p + 3] = 0xe0; // stream_id: video stream 0
  out[p + 4] = 0x00; // PES_packet_length 0 = unbounded (allowed for video in TS)
  out[p + 5] = 0x00;
  out[p + 6] = 0x84; // '10' marker, data_alignment_indicator=1
  out[p + 7] = 0x80; // PTS_DTS_flags = '10' (PTS only)
  out[p + 8] = 0x05; // PES_header_data_length
  // 33-bit PTS in 3/15/15-bit groups, each followed by a marker bit.
  const hi = Math.floor(pts / 0x40000000) & 0x07;
  const mid = Math.floor(pts / 0x8000) & 0x7fff;
  const lo = pts % 0x8000;
  out[p + 9] = 0x21 | (hi << 1);
  out[p + 10] = mid >>> 7;
  out[p + 11] = ((mid & 0x7f) << 1) | 1;
  out[p + 12] = lo >>> 7;
  out[p + 13] = ((lo & 0x7f) << 1) | 1;
}
