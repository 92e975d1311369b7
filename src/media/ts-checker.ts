/**
 * Receiver-side MPEG-TS integrity checker used by each demo subscriber:
 * sync bytes, per-PID continuity counters, PAT/PMT presence and PCR.
 * All state lives in fixed typed arrays indexed by PID, so `push` allocates
 * nothing per packet or per datagram.
 */

import { AF_DISCONTINUITY, AF_PCR, PID_NULL, PID_PAT, TS_PACKET_SIZE, TS_SYNC_BYTE } from '../wire/mpegts/packet.js';
import { TABLE_ID_PAT, TABLE_ID_PMT, checkPsiSection } from '../wire/mpegts/psi.js';
import { readPcr } from '../wire/mpegts/pcr.js';

/** Snapshot of a `TsContinuityChecker`. Plain numbers, so it serializes to JSON. */
export interface TsCheckerStats {
  /** Datagrams pushed. */
  readonly datagrams: number;
  /** Bytes pushed. */
  readonly bytes: number;
  /** Whole 188-byte packets seen (including ones with sync errors). */
  readonly packets: number;
  /** Datagrams that were empty or not a multiple of 188 bytes (the tail is ignored). */
  readonly malformedDatagrams: number;
  /** Packets whose first byte is not 0x47 (skipped). */
  readonly syncErrors: number;
  /** Packets with transport_error_indicator set (skipped). */
  readonly transportErrors: number;
  /** Packets with the reserved adaptation_field_control 00 or an oversized adaptation field (skipped). */
  readonly invalidPackets: number;
  /** Continuity counter jumps on payload-carrying packets. */
  readonly ccErrors: number;
  /** Estimated packets lost: sum of CC gaps (each gap is known only modulo 16). */
  readonly missingPackets: number;
  /** Repeated packets (same CC once, allowed by MPEG). */
  readonly duplicates: number;
  /** discontinuity_indicator seen on a PID already tracked (CC expectation reset). */
  readonly discontinuities: number;
  /** Distinct PIDs seen (excluding null packets). */
  readonly pids: number;
  /** Valid PAT sections (CRC ok) seen on PID 0. */
  readonly patSeen: number;
  /** Valid PMT sections (CRC ok) seen on PIDs announced by a PAT. */
  readonly pmtSeen: number;
  /** PAT/PMT sections that failed syntax or CRC checks. */
  readonly psiErrors: number;
  /** Packets carrying a PCR. */
  readonly pcrCount: number;
  /** Most recent PCR in 27 MHz units (exact as a number), or null before the first. */
  readonly lastPcr: number | null;
}

const PID_COUNT = 0x2000;

/**
 * Checks a stream of TS-over-UDP datagrams. Rules (ISO/IEC 13818-1 §2.4.3.3):
 * the CC of a PID increments by 1 mod 16 on each packet with payload;
 * adaptation-only packets do not increment it (and are not checked); a
 * packet may be repeated once with the same CC; discontinuity_indicator
 * allows any CC; null packets (PID 0x1FFF) are ignored. PAT/PMT are counted
 * only when a whole section sits in one packet (true of the synthetic stream
 * and of most real PAT/PMTs).
 */
export class TsContinuityChecker {
  /** Last CC per PID, -1 while the PID is unseen. */
  readonly #lastCc = new Int8Array(PID_COUNT).fill(-1);
  /** 1 when the last packet on the PID was already a repeat, so a second repeat is an error. */
  readonly #repeated = new Uint8Array(PID_COUNT);
  /** 1 for PIDs the current PAT names as PMT PIDs. */
  readonly #isPmtPid = new Uint8Array(PID_COUNT);
  /** CRC of the PAT the PMT PID map was built from (-1: none), so an unchanged PAT costs nothing. */
  #patCrc = -1;

  #datagrams = 0;
  #bytes = 0;
  #packets = 0;
  #malformedDatagrams = 0;
  #syncErrors = 0;
  #transportErrors = 0;
  #invalidPackets = 0;
  #ccErrors = 0;
  #missingPackets = 0;
  #duplicates = 0;
  #discontinuities = 0;
  #pids = 0;
  #patSeen = 0;
  #pmtSeen = 0;
  #psiErrors = 0;
  #pcrCount = 0;
  #lastPcr = -1;

  /** Checks every whole TS packet of one datagram and updates the counters. */
  push(datagram: Uint8Array): void {
    const len = datagram.length;
    this.#datagrams++;
    this.#bytes += len;
    if (len === 0 || len % TS_PACKET_SIZE !== 0) this.#malformedDatagrams++;
    const whole = len - (len % TS_PACKET_SIZE);
    for (let o = 0; o < whole; o += TS_PACKET_SIZE) this.#packet(datagram, o);
  }

  /** Plain-object snapshot of the counters. */
  stats(): TsCheckerStats {
    return {
      datagrams: this.#datagrams,
      bytes: this.#bytes,
      packets: this.#packets,
      malformedDatagrams: this.#malformedDatagrams,
      syncErrors: this.#syncErrors,
      transportErrors: this.#transportErrors,
      invalidPackets: this.#invalidPackets,
      ccErrors: this.#ccErrors,
      missingPackets: this.#missingPackets,
      duplicates: this.#duplicates,
      discontinuities: this.#discontinuities,
      pids: this.#pids,
      patSeen: this.#patSeen,
      pmtSeen: this.#pmtSeen,
      psiErrors: this.#psiErrors,
      pcrCount: this.#pcrCount,
      lastPcr: this.#lastPcr < 0 ? null : this.#lastPcr,
    };
  }

  /** Forgets all PID state and zeroes the counters. */
  reset(): void {
    this.#lastCc.fill(-1);
    this.#repeated.fill(0);
    this.#isPmtPid.fill(0);
    this.#patCrc = -1;
    this.#datagrams = this.#bytes = this.#packets = this.#malformedDatagrams = 0;
    this.#syncErrors = this.#transportErrors = this.#invalidPackets = 0;
    this.#ccErrors = this.#missingPackets = this.#duplicates = this.#discontinuities = this.#pids = 0;
    this.#patSeen = this.#pmtSeen = this.#psiErrors = this.#pcrCount = 0;
    this.#lastPcr = -1;
  }

  #packet(b: Uint8Array, o: number): void {
    this.#packets++;
    if (b[o] !== TS_SYNC_BYTE) {
      // The packet is lost to us; its PID's next CC will show the gap.
      this.#syncErrors++;
      return;
    }
    const b1 = b[o + 1]!;
    if (b1 & 0x80) {
      // Header bits cannot be trusted when the demodulator flagged an error.
      this.#transportErrors++;
      return;
    }
    const pid = ((b1 & 0x1f) << 8) | b[o + 2]!;
    if (pid === PID_NULL) return;
    const b3 = b[o + 3]!;
    const afc = (b3 >>> 4) & 3;
    if (afc === 0) {
      this.#invalidPackets++;
      return;
    }
    let discontinuity = false;
    let payload = o + 4;
    if (afc & 2) {
      const afLen = b[o + 4]!;
      if (afLen > TS_PACKET_SIZE - 5) {
        this.#invalidPackets++;
        return;
      }
      if (afLen > 0) {
        const flags = b[o + 5]!;
        discontinuity = (flags & AF_DISCONTINUITY) !== 0;
        if (flags & AF_PCR && afLen >= 7) {
          this.#pcrCount++;
          this.#lastPcr = readPcr(b, o + 6);
        }
      }
      payload = o + 5 + afLen;
    }
    if ((afc & 1) === 0) return; // adaptation-only: CC does not advance
    this.#continuity(pid, b3 & 0x0f, discontinuity);
    if (b1 & 0x40) this.#psi(b, pid, payload, o + TS_PACKET_SIZE);
  }

  #continuity(pid: number, cc: number, discontinuity: boolean): void {
    const last = this.#lastCc[pid]!;
    if (last < 0) {
      this.#pids++;
    } else if (discontinuity) {
      this.#discontinuities++;
    } else if (cc === last) {
      if (this.#repeated[pid] === 0) {
        this.#duplicates++;
        this.#repeated[pid] = 1;
        return;
      }
      // A second repeat is not allowed; count it as a full wrap of loss.
      this.#ccErrors++;
      this.#missingPackets += 15;
    } else if (cc !== ((last + 1) & 0x0f)) {
      this.#ccErrors++;
      this.#missingPackets += (cc - last - 1) & 0x0f;
    }
    this.#lastCc[pid] = cc;
    this.#repeated[pid] = 0;
  }

  /** Counts a PAT/PMT section starting in this payload; learns PMT PIDs from the PAT. */
  #psi(b: Uint8Array, pid: number, payload: number, end: number): void {
    const isPat = pid === PID_PAT;
    if (!isPat && this.#isPmtPid[pid] === 0) return;
    if (payload >= end) return;
    const start = payload + 1 + b[payload]!; // skip pointer_field
    if (start >= end) {
      this.#psiErrors++;
      return;
    }
    const err = checkPsiSection(b, start, end, isPat ? TABLE_ID_PAT : TABLE_ID_PMT);
    if (err === 'truncated') return; // continues in later packets: not checked here
    if (err !== null) {
      this.#psiErrors++;
      return;
    }
    if (!isPat) {
      this.#pmtSeen++;
      return;
    }
    this.#patSeen++;
    const sectionEnd = start + 3 + (((b[start + 1]! & 0x0f) << 8) | b[start + 2]!);
    const crc = ((b[sectionEnd - 4]! << 24) | (b[sectionEnd - 3]! << 16) | (b[sectionEnd - 2]! << 8) | b[sectionEnd - 1]!) >>> 0;
    if (crc === this.#patCrc) return;
    this.#patCrc = crc;
    this.#isPmtPid.fill(0);
    for (let p = start + 8; p + 4 <= sectionEnd - 4; p += 4) {
      const programNumber = (b[p]! << 8) | b[p + 1]!;
      if (programNumber !== 0) this.#isPmtPid[((b[p + 2]! & 0x1f) << 8) | b[p + 3]!] = 1; // 0 = network PID
    }
  }
}
