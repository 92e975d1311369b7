/**
 * Playout by the stream's own clock, MPEG-TS: when each datagram of a TS
 * buffer is due, from the PCRs it carries (ISO/IEC 13818-1, 2.4.2.2).
 *
 * A PCR stamps the time the byte holding the last bit of its base (byte
 * 10 of its packet) enters the decoder; between two PCRs the bytes arrive
 * at a constant rate, so the time of any byte is the PCRs' line through
 * its position. Before the first PCR and after the last, the line of the
 * nearest pair goes on. A datagram is due when its first byte is.
 *
 * The PCRs used are those of the program's PCR PID (from the first PMT
 * the first PAT names), or, without a usable PAT/PMT, of the first PID
 * that carries a PCR. A PCR with discontinuity_indicator set, one that
 * goes backwards (wrap excepted) or jumps more than MAX_PCR_STEP_MS
 * forwards starts a new time base: the time up to it follows the rate of
 * the nearest regular pair (re-anchoring), then its own PCRs rule again.
 *
 * Pure: no I/O, no clock. Computed once per stream (O(packets)), so the
 * send loop only compares numbers.
 */
import { InvalidArgumentError } from '../errors.js';
import { AF_DISCONTINUITY, AF_PCR, PID_NULL, PID_PAT, TS_PACKET_SIZE, TS_SYNC_BYTE } from '../wire/mpegts/packet.js';
import { PCR_CLOCK_HZ, pcrDelta, readPcr } from '../wire/mpegts/pcr.js';
import { decodePatSection, decodePmtSection, psiSectionOffset } from '../wire/mpegts/psi.js';
import type { ClockSchedule } from './pace-types.js';

/** A forward PCR step longer than this is a jump (re-anchor), not the stream's clock: 10× the 100 ms MPEG allows. */
export const MAX_PCR_STEP_MS = 1000;
/** Offset in a PCR packet of the byte holding the last bit of the PCR base: the byte the PCR stamps. */
const PCR_STAMP_BYTE = 10;
const PCR_TICKS_PER_MS = PCR_CLOCK_HZ / 1000;

/** One PCR of the clock PID: the byte it stamps, its value, and whether it starts a new time base. */
interface PcrSample {
  pos: number;
  pcr: number;
  discontinuity: boolean;
}

/** Bytes past the 4-byte header where the payload starts, or -1 when the packet has none (or a bad adaptation field). */
function payloadStart(data: Uint8Array, o: number): number {
  const afc = (data[o + 3]! >>> 4) & 3;
  if ((afc & 1) === 0) return -1;
  if ((afc & 2) === 0) return o + 4;
  const afLen = data[o + 4]!;
  return afLen > TS_PACKET_SIZE - 5 ? -1 : o + 5 + afLen;
}

/** The PCR of the packet at `o` (27 MHz) and its discontinuity_indicator, or undefined when it carries none. */
function packetPcr(data: Uint8Array, o: number): { pcr: number; discontinuity: boolean } | undefined {
  if (((data[o + 3]! >>> 4) & 2) === 0 || data[o + 4]! < 7) return undefined;
  const flags = data[o + 5]!;
  if ((flags & AF_PCR) === 0) return undefined;
  if ((((data[o + 10]! & 1) << 8) | data[o + 11]!) > 299) return undefined; // extension out of range: not a PCR
  return { pcr: readPcr(data, o + 6), discontinuity: (flags & AF_DISCONTINUITY) !== 0 };
}

/**
 * Checks the framing (whole packets, sync bytes) and finds the clock PID:
 * the PCR_PID of the first PMT the first PAT names, else the first PID
 * carrying a PCR; -1 when no packet carries one.
 */
function findPcrPid(data: Uint8Array): number {
  if (data.byteLength % TS_PACKET_SIZE !== 0) {
    throw new InvalidArgumentError(`pace 'pcr': ${data.byteLength} bytes is not a whole number of 188-byte MPEG-TS packets`);
  }
  let pmtPid = -1;
  let firstPcrPid = -1;
  for (let o = 0; o < data.byteLength; o += TS_PACKET_SIZE) {
    if (data[o] !== TS_SYNC_BYTE) throw new InvalidArgumentError(`pace 'pcr': no MPEG-TS sync byte at byte ${o} (not a TS file, or not aligned)`);
    const pid = ((data[o + 1]! & 0x1f) << 8) | data[o + 2]!;
    if (firstPcrPid < 0 && pid !== PID_NULL && packetPcr(data, o)) firstPcrPid = pid;
    const pusi = (data[o + 1]! & 0x40) !== 0;
    if (!pusi || (pid !== PID_PAT && pid !== pmtPid)) continue;
    const p = payloadStart(data, o);
    if (p < 0) continue;
    const s = psiSectionOffset(data, p, o + TS_PACKET_SIZE - p);
    if (s < 0) continue;
    // A section that does not fit its packet fails its own checks here and is passed over.
    const section = data.subarray(s, o + TS_PACKET_SIZE);
    if (pid === PID_PAT && pmtPid < 0) {
      const pat = decodePatSection(section);
      const program = pat.ok ? pat.programs.find((x) => x.programNumber !== 0) : undefined;
      if (program) pmtPid = program.pmtPid;
    } else if (pid === pmtPid) {
      const pmt = decodePmtSection(section);
      if (pmt.ok && pmt.pcrPid !== PID_NULL) return pmt.pcrPid;
    }
  }
  return firstPcrPid;
}

function collectPcrs(data: Uint8Array, pcrPid: number): PcrSample[] {
  const out: PcrSample[] = [];
  for (let o = 0; o < data.byteLength; o += TS_PACKET_SIZE) {
    if ((((data[o + 1]! & 0x1f) << 8) | data[o + 2]!) !== pcrPid) continue;
    const p = packetPcr(data, o);
    if (p) out.push({ pos: o + PCR_STAMP_BYTE, pcr: p.pcr, discontinuity: p.discontinuity });
  }
  return out;
}

/**
 * The time of every PCR sample on one line (ms from the first), and per
 * gap between samples its rate in bytes per ms: the PCRs' own where the
 * gap is regular, the nearest regular gap's (the earlier on a tie) across
 * a discontinuity. Rates are all NaN when no gap is regular.
 */
function timeline(samples: readonly PcrSample[]): { times: Float64Array; rates: Float64Array } {
  const gaps = samples.length - 1;
  const steps = new Float64Array(gaps);
  const rates = new Float64Array(gaps).fill(NaN);
  for (let i = 0; i < gaps; i++) {
    const a = samples[i]!;
    const b = samples[i + 1]!;
    steps[i] = pcrDelta(a.pcr, b.pcr) / PCR_TICKS_PER_MS;
    if (!b.discontinuity && steps[i]! > 0 && steps[i]! <= MAX_PCR_STEP_MS && b.pos > a.pos) rates[i] = (b.pos - a.pos) / steps[i]!;
  }
  const regular = rates.map((r) => (Number.isNaN(r) ? 0 : 1));
  // Nearest regular gap on each side, in one pass each (O(gaps) on any input).
  const left = new Int32Array(gaps).fill(-1);
  const right = new Int32Array(gaps).fill(-1);
  for (let i = 0, at = -1; i < gaps; i++) left[i] = at = regular[i] ? i : at;
  for (let i = gaps - 1, at = -1; i >= 0; i--) right[i] = at = regular[i] ? i : at;
  for (let i = 0; i < gaps; i++) {
    if (regular[i]) continue;
    const l = left[i]!;
    const r = right[i]!;
    const from = l < 0 ? r : r < 0 || i - l <= r - i ? l : r;
    if (from >= 0) rates[i] = rates[from]!;
  }
  const times = new Float64Array(samples.length);
  for (let i = 0; i < gaps; i++) times[i + 1] = times[i]! + (regular[i] ? steps[i]! : (samples[i + 1]!.pos - samples[i]!.pos) / rates[i]!);
  return { times, rates };
}

/**
 * The stream's clock over `data` (whole TS packets): a function from a
 * byte offset to its time in ms by the PCRs (see the file comment; the
 * origin is arbitrary, differences are what count). Throws
 * InvalidArgumentError when `data` is not whole TS packets or has fewer
 * than two PCRs a regular step apart.
 */
export function pcrClock(data: Uint8Array): (pos: number) => number {
  const pcrPid = findPcrPid(data);
  const samples = pcrPid < 0 ? [] : collectPcrs(data, pcrPid);
  if (samples.length === 0) throw new InvalidArgumentError("pace 'pcr': the stream carries no PCR (no packet has one); pace it by --bitrate instead");
  const { times, rates } = samples.length >= 2 ? timeline(samples) : { times: new Float64Array(0), rates: new Float64Array(0) };
  if (samples.length < 2 || rates.every((r) => Number.isNaN(r))) {
    throw new InvalidArgumentError(
      `pace 'pcr': PID ${pcrPid} has ${samples.length} PCR(s) and no two a regular step apart: the clock cannot be read; pace it by --bitrate instead`,
    );
  }
  const last = samples.length - 1;
  // The gap holding `pos` (or the first/last beyond the PCRs), found by binary search.
  return (pos: number): number => {
    let lo = 0;
    let hi = last;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (samples[mid]!.pos <= pos) lo = mid;
      else hi = mid - 1;
    }
    return times[lo]! + (pos - samples[lo]!.pos) / rates[Math.min(lo, last - 1)]!;
  };
}

/**
 * When each datagram of `data` is due, cut every `packetSize` bytes, from
 * the stream's PCRs (pcrClock): `dueMs[k]` is the time of datagram k's
 * first byte minus that of the first datagram's, and `passMs` is the time
 * from the first byte to the end of the last (the next pass of a loop
 * starts then). Throws InvalidArgumentError when `data` is not whole TS
 * packets, `packetSize` is not a multiple of 188, or the stream has fewer
 * than two PCRs a regular step apart.
 */
export function pcrSchedule(data: Uint8Array, packetSize: number): ClockSchedule {
  if (!Number.isInteger(packetSize) || packetSize <= 0 || packetSize % TS_PACKET_SIZE !== 0) {
    throw new InvalidArgumentError(`pace 'pcr': the packet size must be a multiple of 188 (whole TS packets per datagram, e.g. 1316), got ${packetSize}`);
  }
  const timeAt = pcrClock(data);
  const count = Math.ceil(data.byteLength / packetSize);
  const dueMs = new Float64Array(count);
  const t0 = timeAt(0);
  for (let k = 0; k < count; k++) dueMs[k] = timeAt(k * packetSize) - t0;
  return { dueMs, passMs: timeAt(data.byteLength) - t0 };
}
