/**
 * Is this access unit a random access point? Reads the start of an H.264 or
 * H.265 elementary stream (Annex B byte stream: NAL units after 00 00 01
 * start codes) and says whether it carries its parameter sets and an
 * intra random access picture before any other picture: what a decoder
 * that joins here needs to show its first picture. Fed in pieces (TS
 * packet payloads), so a start code split between two pieces is found;
 * reads at most SCAN_LIMIT bytes of an access unit. Never throws.
 */

export type VideoCodec = 'h264' | 'h265';

/** Outcome of a scan so far. */
export type RapVerdict = 'pending' | 'rap' | 'no';

/**
 * Bytes of an access unit read before giving up: the parameter sets and the
 * first slice header come first (after an access unit delimiter and SEI,
 * which x264 makes about 700 bytes long), far within this.
 */
export const SCAN_LIMIT = 16 * 1024;

const SPS = 1;
const PPS = 2;
const VPS = 4;
const NEEDED: Record<VideoCodec, number> = { h264: SPS | PPS, h265: VPS | SPS | PPS };

/** What a NAL unit type means to a joining decoder (H.264 nal_unit_type, Table 7-1; H.265 Table 7-1). */
export function nalRole(codec: VideoCodec, type: number): 'rap' | 'picture' | number | undefined {
  if (codec === 'h264') {
    if (type === 5) return 'rap';
    if (type >= 1 && type <= 4) return 'picture';
    return type === 7 ? SPS : type === 8 ? PPS : undefined;
  }
  if (type >= 16 && type <= 21) return 'rap';
  if (type <= 9) return 'picture';
  return type === 32 ? VPS : type === 33 ? SPS : type === 34 ? PPS : undefined;
}

/** The parameter-set bit of nalRole, 0 for other roles. */
function setBit(role: ReturnType<typeof nalRole>): number {
  return typeof role === 'number' ? role : 0;
}

/** Tracks the parameter sets and the first picture of a unit, NAL unit by NAL unit. */
export class NalUnitsSeen {
  readonly #codec: VideoCodec;
  #sets = 0;
  #verdict: RapVerdict = 'pending';

  constructor(codec: VideoCodec) {
    this.#codec = codec;
  }

  get verdict(): RapVerdict {
    return this.#verdict;
  }

  /** One NAL unit of type `type` (already extracted from its header). */
  add(type: number): RapVerdict {
    if (this.#verdict !== 'pending') return this.#verdict;
    const role = nalRole(this.#codec, type);
    if (role === 'rap') this.#verdict = (this.#sets & NEEDED[this.#codec]) === NEEDED[this.#codec] ? 'rap' : 'no';
    else if (role === 'picture') this.#verdict = 'no';
    else this.#sets |= setBit(role);
    return this.#verdict;
  }

  /** No more of this unit: undecided means no. */
  end(): RapVerdict {
    if (this.#verdict === 'pending') this.#verdict = 'no';
    return this.#verdict;
  }
}

/** NAL unit type from the first header byte (H.264: 5 bits; H.265: 6 bits after the forbidden bit). */
export function nalType(codec: VideoCodec, header: number): number {
  return codec === 'h264' ? header & 0x1f : (header >>> 1) & 0x3f;
}

/**
 * An Annex B scan of one access unit fed in pieces. Keeps only the last
 * three bytes of the previous piece (a start code may straddle two pieces).
 */
export class AnnexBScan {
  readonly #codec: VideoCodec;
  readonly #units: NalUnitsSeen;
  #read = 0;
  /** Zero bytes just before the current piece (0..2), and whether a start code ended the previous piece. */
  #zeros = 0;
  #afterStart = false;

  constructor(codec: VideoCodec) {
    this.#codec = codec;
    this.#units = new NalUnitsSeen(codec);
  }

  get verdict(): RapVerdict {
    return this.#units.verdict;
  }

  /** Scans `bytes[offset, offset + length)`; returns the verdict so far. */
  feed(bytes: Uint8Array, offset: number, length: number): RapVerdict {
    if (this.#units.verdict !== 'pending') return this.#units.verdict;
    const end = Math.min(bytes.length, offset + Math.max(0, Math.min(length, SCAN_LIMIT - this.#read)));
    let zeros = this.#zeros;
    let afterStart = this.#afterStart;
    for (let i = Math.max(0, offset); i < end; i++) {
      const b = bytes[i]!;
      if (afterStart) {
        afterStart = false;
        // forbidden_zero_bit set: not a NAL header (e.g. the PES start code's stream_id).
        if ((b & 0x80) === 0 && this.#units.add(nalType(this.#codec, b)) !== 'pending') return this.#units.verdict;
      }
      if (b === 0) zeros = Math.min(zeros + 1, 2);
      else {
        if (b === 1 && zeros === 2) afterStart = true;
        zeros = 0;
      }
    }
    this.#zeros = zeros;
    this.#afterStart = afterStart;
    this.#read += Math.max(0, end - Math.max(0, offset));
    if (this.#read >= SCAN_LIMIT) return this.#units.end();
    return 'pending';
  }

  /** The unit ended (next unit started): undecided means no. */
  end(): RapVerdict {
    return this.#units.end();
  }
}
