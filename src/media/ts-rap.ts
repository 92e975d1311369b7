/**
 * Random access points of an MPEG-TS stream, packet by packet: follows the
 * PAT to the first program's PMT, the PMT to its video PID, and scans the
 * start of each PES of that PID (across TS packets) for parameter sets and
 * an intra random access picture (nal-scan.ts). Keeps a copy of the last
 * PAT and PMT packets, which a joining receiver needs first. Never throws:
 * packets that do not decode are skipped.
 */
import { PID_PAT, TS_PACKET_SIZE, TS_SYNC_BYTE, AF_RANDOM_ACCESS } from '../wire/mpegts/packet.js';
import { decodePatSection, decodePmtSection, psiSectionOffset } from '../wire/mpegts/psi.js';
import { AnnexBScan, type VideoCodec } from './nal-scan.js';

/** stream_type values (ISO/IEC 13818-1 Table 2-34) of video this module reads. */
const STREAM_TYPES: ReadonlyMap<number, VideoCodec | 'other'> = new Map([
  [0x1b, 'h264'],
  [0x24, 'h265'],
  // MPEG-1/2 and MPEG-4 part 2 video: the random_access_indicator alone marks a point.
  [0x01, 'other'],
  [0x02, 'other'],
  [0x10, 'other'],
]);

/** PES header bytes before the elementary stream: start code, id, length, flags, header length (+ that many). */
const PES_FIXED = 9;

export interface TsRapEvents {
  /**
   * A PES of the video PID starts in the packet at `offset` of the buffer
   * being read (a possible random access point); RTP: at the datagram's start (-1).
   */
  onUnitStart(offset: number): void;
  /** The unit last started turned out to be a random access point (now, or in a later packet). */
  onRap(): void;
}

export class TsRapTracker {
  readonly #events: TsRapEvents;
  #pmtPid = -1;
  #videoPid = -1;
  #codec: VideoCodec | 'other' = 'other';
  #pat: Uint8Array | undefined;
  #pmt: Uint8Array | undefined;
  #scan: AnnexBScan | undefined;
  /** Bytes of the PES header still to skip before the elementary stream (-1: header not read yet). */
  #skip = 0;

  constructor(events: TsRapEvents) {
    this.#events = events;
  }

  /** The last PAT packet seen (a copy), if any. */
  get pat(): Uint8Array | undefined {
    return this.#pat;
  }

  /** The last PMT packet of the followed program (a copy), if any. */
  get pmt(): Uint8Array | undefined {
    return this.#pmt;
  }

  get videoPid(): number {
    return this.#videoPid;
  }

  /** Reads every whole TS packet in `bytes[offset, end)`. */
  scan(bytes: Uint8Array, offset: number, end: number): void {
    for (let p = offset; p + TS_PACKET_SIZE <= end; p += TS_PACKET_SIZE) this.#packet(bytes, p);
  }

  #packet(b: Uint8Array, o: number): void {
    if (b[o] !== TS_SYNC_BYTE) return;
    const pid = ((b[o + 1]! & 0x1f) << 8) | b[o + 2]!;
    const pusi = (b[o + 1]! & 0x40) !== 0;
    const afc = (b[o + 3]! >>> 4) & 3;
    if (afc === 0 || (b[o + 1]! & 0x80) !== 0) return; // reserved, or transport_error_indicator
    let payload = o + 4;
    let rai = false;
    if (afc & 2) {
      const afLen = b[o + 4]!;
      if (afLen > 183) return;
      if (afLen > 0) rai = (b[o + 5]! & AF_RANDOM_ACCESS) !== 0;
      payload = o + 5 + afLen;
    }
    const end = o + TS_PACKET_SIZE;
    if ((afc & 1) === 0 || payload >= end) return;
    if (pid === PID_PAT) {
      if (pusi) this.#readPat(b, o, payload, end);
    } else if (pid === this.#pmtPid) {
      if (pusi) this.#readPmt(b, o, payload, end);
    } else if (pid === this.#videoPid) {
      this.#video(b, o, payload, end, pusi, rai);
    }
  }

  #readPat(b: Uint8Array, o: number, payload: number, end: number): void {
    const packet = b.subarray(o, end);
    const at = psiSectionOffset(packet, payload - o, end - payload);
    if (at < 0) return;
    const pat = decodePatSection(packet, at);
    if (!pat.ok || !pat.currentNext) return;
    const program = pat.programs.find((p) => p.programNumber !== 0);
    if (!program) return;
    if (program.pmtPid !== this.#pmtPid) {
      this.#pmtPid = program.pmtPid;
      this.#pmt = undefined;
      this.#setVideo(-1, 'other');
    }
    this.#pat = packet.slice();
  }

  #readPmt(b: Uint8Array, o: number, payload: number, end: number): void {
    const packet = b.subarray(o, end);
    const at = psiSectionOffset(packet, payload - o, end - payload);
    if (at < 0) return;
    const pmt = decodePmtSection(packet, at);
    if (!pmt.ok || !pmt.currentNext) return;
    const video = pmt.streams.find((s) => STREAM_TYPES.has(s.streamType));
    if (video) this.#setVideo(video.elementaryPid, STREAM_TYPES.get(video.streamType)!);
    else this.#setVideo(-1, 'other');
    this.#pmt = packet.slice();
  }

  #setVideo(pid: number, codec: VideoCodec | 'other'): void {
    if (pid === this.#videoPid && codec === this.#codec) return;
    this.#videoPid = pid;
    this.#codec = codec;
    this.#scan = undefined;
  }

  #video(b: Uint8Array, o: number, payload: number, end: number, pusi: boolean, rai: boolean): void {
    if (pusi) {
      this.#scan?.end();
      this.#scan = undefined;
      this.#events.onUnitStart(o);
      if (this.#codec === 'other') {
        if (rai) this.#events.onRap();
        return;
      }
      // Every unit is read, with or without the indicator: some muxers do not set it.
      this.#scan = new AnnexBScan(this.#codec);
      this.#skip = -1;
    }
    const scan = this.#scan;
    if (!scan || scan.verdict !== 'pending') return;
    let from = payload;
    if (this.#skip < 0) {
      // The PES header must be in the unit's first packet (ISO/IEC 13818-1 2.4.3.6 puts it there).
      if (end - payload < PES_FIXED || b[payload] !== 0 || b[payload + 1] !== 0 || b[payload + 2] !== 1) {
        scan.end();
        return;
      }
      this.#skip = PES_FIXED + b[payload + 8]!;
    }
    const skip = Math.min(this.#skip, end - from);
    from += skip;
    this.#skip -= skip;
    if (from < end && scan.feed(b, from, end - from) === 'rap') this.#events.onRap();
  }
}
