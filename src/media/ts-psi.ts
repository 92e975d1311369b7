/**
 * The PSI side of the TS monitor (TR 101 290 1.3 PAT_error_2, 1.5
 * PMT_error_2, 1.6 PID_error, and the section checks behind them): it
 * reassembles PAT and PMT sections, checks their CRC, learns which PIDs
 * carry PMTs, which elementary PIDs each PMT references (with their
 * stream_type, for the per-PID kind) and which PIDs carry PCRs, and times
 * their presence on the monitor clock.
 *
 * Counting: a missing table or PID counts once per whole interval it stays
 * missing (PAT/PMT: each 0.5 s, PID: each pidTimeoutMs), from `tick` or,
 * if no tick noticed it, from the late arrival itself (the count does not
 * depend on how often `tick` runs); each wrong table_id
 * section and each scrambled PAT/PMT packet counts once. Tables are decoded
 * (with allocation) only when their CRC changes, so a steady stream's
 * repeated PAT/PMT cost a CRC check and nothing else.
 */

import { checkPsiSection, decodePatSection, decodePmtSection, TABLE_ID_PAT, TABLE_ID_PMT } from '../wire/mpegts/psi.js';
import { PID_NULL, PID_PAT } from '../wire/mpegts/packet.js';
import { PSI_MISSING, PSI_SCRAMBLED, PSI_TABLE_ID, type AlarmBook } from './ts-alarms.js';
import { SECTION_COMPLETE, SECTION_TOO_LONG, SectionAssembler } from './ts-sections.js';

const PID_COUNT = 0x2000;
/** TR 101 290 1.3/1.5: PAT and each PMT at least every 0.5 s. */
export const PSI_INTERVAL_MS = 500;
/** At most this many PMT PIDs are followed (a PAT names one per program); more are ignored. */
const MAX_PMT_PIDS = 256;
const NONE = -1;

/** The PSI counters the monitor reports in TsStats. */
export interface PsiCounts {
  patError: number;
  pmtError: number;
  pidError: number;
  crcError: number;
  sectionError: number;
}

export class PsiTracker {
  readonly counts: PsiCounts = { patError: 0, pmtError: 0, pidError: 0, crcError: 0, sectionError: 0 };
  /** Assembler index per PID: ≥ 0 for PID 0 and the PMT PIDs the PAT names, -1 otherwise. Read per packet. */
  readonly slotOf = new Int16Array(PID_COUNT).fill(NONE);
  /** 1 for PIDs a PMT names as its PCR_PID. Read per PCR. */
  readonly isPcrPid = new Uint8Array(PID_COUNT);
  /** PCR PIDs of all PMTs (rebuilt when a PMT changes). */
  pcrPids: number[] = [];
  /** Elementary PIDs any PMT references (rebuilt when a PMT changes). */
  refPids: number[] = [];

  readonly #alarms: AlarmBook;
  readonly #pidTimeoutMs: number;
  readonly #asm: SectionAssembler[] = [];
  readonly #freeSlots: number[] = [];
  /** Last packet time per PID, written by the monitor for every packet. */
  readonly #lastMs: Float64Array;

  #patLastMs = 0;
  #patDeadline = Infinity;
  #patVersion = NONE;
  /** CRC of each PAT section number last decoded (-1: none), so a repeat is not decoded again. */
  readonly #patCrc = new Float64Array(256).fill(NONE);

  readonly #pmtPids: number[] = [];
  // Per assembler slot (PMT PIDs only; slot 0 is the PAT's), so they stay small.
  readonly #pmtLastMs = new Float64Array(MAX_PMT_PIDS + 1);
  readonly #pmtDeadline = new Float64Array(MAX_PMT_PIDS + 1).fill(Infinity);
  readonly #pmtCrc = new Float64Array(MAX_PMT_PIDS + 1).fill(NONE);
  /** Per PMT slot: the PCR_PID its PMT names, or -1. */
  readonly #pcrPidOf = new Int16Array(MAX_PMT_PIDS + 1).fill(NONE);

  /** Per elementary PID: the PMT PID that references it (-1: none). */
  readonly #owner = new Int16Array(PID_COUNT).fill(NONE);
  /** Per elementary PID: stream_type from its PMT (-1: none). */
  readonly #streamType = new Int16Array(PID_COUNT).fill(NONE);
  /** Per referenced PID: when PID_error next counts (Infinity: not referenced). The monitor reads it per packet. */
  readonly pidDeadline = new Float64Array(PID_COUNT).fill(Infinity);
  /** Per referenced PID: when it became referenced (absence is measured from the later of this and its last packet). */
  readonly #refSinceMs = new Float64Array(PID_COUNT);

  constructor(alarms: AlarmBook, pidTimeoutMs: number, lastMs: Float64Array) {
    this.#alarms = alarms;
    this.#pidTimeoutMs = pidTimeoutMs;
    this.#lastMs = lastMs;
    this.#asm.push(new SectionAssembler());
    this.slotOf[PID_PAT] = 0;
  }

  /** (Re)starts every presence clock at `nowMs`: the first data, or data again after the stream stopped. */
  restart(nowMs: number): void {
    this.#patLastMs = nowMs;
    this.#patDeadline = nowMs + PSI_INTERVAL_MS;
    for (const pid of this.#pmtPids) {
      const slot = this.slotOf[pid]!;
      this.#pmtLastMs[slot] = nowMs;
      this.#pmtDeadline[slot] = nowMs + PSI_INTERVAL_MS;
    }
    for (const pid of this.refPids) {
      this.#refSinceMs[pid] = nowMs;
      this.pidDeadline[pid] = nowMs + this.#pidTimeoutMs;
    }
  }

  /** A packet of a referenced PID arrived (the monitor calls this only when pidDeadline[pid] is finite, before it notes the packet's time). */
  referencedArrived(pid: number, nowMs: number): void {
    const deadline = this.pidDeadline[pid]!;
    if (nowMs > deadline) {
      this.counts.pidError += intervalsPast(nowMs, deadline, this.#pidTimeoutMs);
      this.#alarms.flag('pidError', pid, nowMs, nowMs - Math.max(this.#refSinceMs[pid]!, this.#lastMs[pid]!));
    }
    this.pidDeadline[pid] = nowMs + this.#pidTimeoutMs;
  }

  /**
   * The time-driven checks (PAT, each PMT, each referenced PID), judged as of
   * `atMs` (the last datagram's time); alarms are flagged at `nowMs`.
   */
  tick(atMs: number, nowMs: number): void {
    if (atMs > this.#patDeadline) {
      const n = intervalsPast(atMs, this.#patDeadline, PSI_INTERVAL_MS);
      this.counts.patError += n;
      this.#patDeadline += n * PSI_INTERVAL_MS;
    }
    if (atMs - this.#patLastMs > PSI_INTERVAL_MS) this.#alarms.flag('patError', PID_PAT, nowMs, PSI_MISSING, atMs - this.#patLastMs);
    for (const pid of this.#pmtPids) {
      const slot = this.slotOf[pid]!;
      const deadline = this.#pmtDeadline[slot]!;
      if (atMs > deadline) {
        const n = intervalsPast(atMs, deadline, PSI_INTERVAL_MS);
        this.counts.pmtError += n;
        this.#pmtDeadline[slot] = deadline + n * PSI_INTERVAL_MS;
      }
      const absent = atMs - this.#pmtLastMs[slot]!;
      if (absent > PSI_INTERVAL_MS) this.#alarms.flag('pmtError', pid, nowMs, PSI_MISSING, absent);
    }
    for (const pid of this.refPids) {
      const deadline = this.pidDeadline[pid]!;
      if (atMs > deadline) {
        const n = intervalsPast(atMs, deadline, this.#pidTimeoutMs);
        this.counts.pidError += n;
        this.pidDeadline[pid] = deadline + n * this.#pidTimeoutMs;
      }
      const absent = atMs - Math.max(this.#refSinceMs[pid]!, this.#lastMs[pid]!);
      if (absent > this.#pidTimeoutMs) this.#alarms.flag('pidError', pid, nowMs, absent);
    }
  }

  /** A packet was lost on `pid` (CC error): the section being built there is incomplete. */
  lost(pid: number): void {
    const slot = this.slotOf[pid]!;
    if (slot >= 0) this.#asm[slot]!.reset();
  }

  /** Sync was lost: every section being built is incomplete. */
  lostAll(): void {
    for (const a of this.#asm) a.reset();
  }

  /** What the PMTs say `pid` carries. */
  kind(pid: number): string {
    if (pid === PID_PAT) return 'PAT';
    if (pid === PID_NULL) return 'null';
    if (this.slotOf[pid]! >= 0) return 'PMT';
    return streamKind(this.#streamType[pid]!);
  }

  /** Whether `pid` is a PMT PID or an elementary PID the tables name (so stats list it even when absent). */
  isNamed(pid: number): boolean {
    return this.slotOf[pid]! >= 0 || this.#owner[pid]! >= 0;
  }

  /**
   * One packet of PID 0 or of a PMT PID (slotOf[pid] ≥ 0), with payload at
   * `buf[start, end)` (start ≤ end ≤ buf.length; start = end when it has none).
   */
  packet(buf: Uint8Array, pid: number, pusi: boolean, scrambling: number, start: number, end: number, nowMs: number): void {
    if (scrambling !== 0) {
      // Scrambled PSI is itself the error (1.3 / 1.5); its bytes cannot be read.
      if (pid === PID_PAT) this.counts.patError++;
      else this.counts.pmtError++;
      this.#alarms.flag(pid === PID_PAT ? 'patError' : 'pmtError', pid, nowMs, PSI_SCRAMBLED, scrambling);
      this.lost(pid);
      return;
    }
    if (start >= end) return;
    const asm = this.#asm[this.slotOf[pid]!]!;
    if (!pusi) {
      if (!asm.active) return; // joined in the middle of a section
      asm.append(buf, start, end);
      this.#settle(asm, pid, nowMs, false);
      return;
    }
    let p = start + 1;
    const pointer = buf[start]!;
    if (p + pointer > end) {
      // pointer_field points past the packet: nothing here can be trusted.
      this.counts.sectionError++;
      asm.reset();
      return;
    }
    if (asm.active) {
      // The bytes before the pointer end the section begun earlier; if they do not, its length lied.
      asm.append(buf, p, p + pointer);
      this.#settle(asm, pid, nowMs, true);
    }
    p += pointer;
    // Sections back to back until 0xFF stuffing; each takes ≥ 3 bytes, so the loop ends.
    while (p < end && buf[p] !== 0xff) {
      const tableId = buf[p]!;
      const expected = pid === PID_PAT ? TABLE_ID_PAT : TABLE_ID_PMT;
      if (tableId !== expected) this.#wrongTable(pid, tableId, nowMs);
      asm.begin(tableId !== expected);
      p += asm.append(buf, p, end);
      if (!this.#settle(asm, pid, nowMs, false)) return;
    }
  }

  /**
   * Acts on the assembler after an append: a complete section is checked and
   * used, a too-long one counted; `mustEnd` says the section had to end here.
   * Returns true only when a section completed, so that another may follow in
   * the same packet; after a section that lied about its length the rest of
   * the packet is not read.
   */
  #settle(asm: SectionAssembler, pid: number, nowMs: number, mustEnd: boolean): boolean {
    const status = asm.status;
    if (status === SECTION_COMPLETE) {
      if (!asm.foreign) this.#section(asm, pid, nowMs);
      asm.reset();
      return true;
    }
    if (status === SECTION_TOO_LONG || mustEnd) {
      if (!asm.foreign) this.counts.sectionError++;
      asm.reset();
    }
    return false;
  }

  #wrongTable(pid: number, tableId: number, nowMs: number): void {
    if (pid === PID_PAT) this.counts.patError++;
    else this.counts.pmtError++;
    this.#alarms.flag(pid === PID_PAT ? 'patError' : 'pmtError', pid, nowMs, PSI_TABLE_ID, tableId);
  }

  /** A whole PAT or PMT section with the right table_id is in `asm.buf[0, asm.need)`. */
  #section(asm: SectionAssembler, pid: number, nowMs: number): void {
    const b = asm.buf;
    const end = asm.need;
    const err = checkPsiSection(b, 0, end, pid === PID_PAT ? TABLE_ID_PAT : TABLE_ID_PMT);
    if (err !== null) {
      if (err === 'crc') this.counts.crcError++;
      else this.counts.sectionError++;
      return;
    }
    if ((b[5]! & 1) === 0) return; // current_next_indicator 0: announces a table not yet in force
    const crc = ((b[end - 4]! << 24) | (b[end - 3]! << 16) | (b[end - 2]! << 8) | b[end - 1]!) >>> 0;
    if (pid === PID_PAT) this.#pat(b, crc, nowMs);
    else this.#pmt(b, pid, crc, nowMs);
  }

  #pat(b: Uint8Array, crc: number, nowMs: number): void {
    if (nowMs > this.#patDeadline) {
      this.counts.patError += intervalsPast(nowMs, this.#patDeadline, PSI_INTERVAL_MS);
      this.#alarms.flag('patError', PID_PAT, nowMs, PSI_MISSING, nowMs - this.#patLastMs);
    }
    this.#patLastMs = nowMs;
    this.#patDeadline = nowMs + PSI_INTERVAL_MS;
    const version = (b[5]! >>> 1) & 0x1f;
    if (version !== this.#patVersion) {
      // A new PAT version replaces the programs: forget every PMT PID and what their PMTs said.
      for (const pid of [...this.#pmtPids]) this.#dropPmtPid(pid);
      this.#rebuildLists();
      this.#patCrc.fill(NONE);
      this.#patVersion = version;
    }
    const sectionNumber = b[6]!;
    if (this.#patCrc[sectionNumber] === crc) return;
    this.#patCrc[sectionNumber] = crc;
    const pat = decodePatSection(b, 0);
    if (!pat.ok) return;
    for (const { programNumber, pmtPid } of pat.programs) {
      // program_number 0 names the network PID, not a PMT.
      if (programNumber !== 0 && pmtPid >= 0x10 && pmtPid < PID_NULL) this.#addPmtPid(pmtPid, nowMs);
    }
  }

  #addPmtPid(pid: number, nowMs: number): void {
    if (this.slotOf[pid]! >= 0 || this.#pmtPids.length >= MAX_PMT_PIDS) return;
    let slot = this.#freeSlots.pop();
    if (slot === undefined) {
      slot = this.#asm.length;
      this.#asm.push(new SectionAssembler());
    }
    this.#asm[slot]!.reset();
    this.slotOf[pid] = slot;
    this.#pmtPids.push(pid);
    this.#pmtLastMs[slot] = nowMs;
    this.#pmtDeadline[slot] = nowMs + PSI_INTERVAL_MS;
    this.#pmtCrc[slot] = NONE;
    this.#pcrPidOf[slot] = NONE;
  }

  #dropPmtPid(pid: number): void {
    const slot = this.slotOf[pid]!;
    if (slot <= 0) return;
    this.#dropReferences(pid);
    this.#pmtDeadline[slot] = Infinity;
    this.slotOf[pid] = NONE;
    this.#freeSlots.push(slot);
    this.#pmtPids.splice(this.#pmtPids.indexOf(pid), 1);
  }

  #pmt(b: Uint8Array, pid: number, crc: number, nowMs: number): void {
    const slot = this.slotOf[pid]!;
    if (nowMs > this.#pmtDeadline[slot]!) {
      this.counts.pmtError += intervalsPast(nowMs, this.#pmtDeadline[slot]!, PSI_INTERVAL_MS);
      this.#alarms.flag('pmtError', pid, nowMs, PSI_MISSING, nowMs - this.#pmtLastMs[slot]!);
    }
    this.#pmtLastMs[slot] = nowMs;
    this.#pmtDeadline[slot] = nowMs + PSI_INTERVAL_MS;
    if (this.#pmtCrc[slot] === crc) return;
    this.#pmtCrc[slot] = crc;
    const pmt = decodePmtSection(b, 0);
    if (!pmt.ok) return;
    this.#dropReferences(pid);
    this.#pcrPidOf[slot] = pmt.pcrPid >= 0x10 && pmt.pcrPid < PID_NULL ? pmt.pcrPid : NONE;
    for (const { streamType, elementaryPid: es } of pmt.streams) {
      if (es < 0x10 || es >= PID_NULL || this.slotOf[es]! >= 0) continue;
      this.#owner[es] = pid;
      this.#streamType[es] = streamType;
      if (this.pidDeadline[es] === Infinity) {
        this.#refSinceMs[es] = nowMs;
        this.pidDeadline[es] = nowMs + this.#pidTimeoutMs;
      }
    }
    this.#rebuildLists();
  }

  /** Forgets the elementary PIDs and PCR PID that the PMT on `pmtPid` named. */
  #dropReferences(pmtPid: number): void {
    this.#pcrPidOf[this.slotOf[pmtPid]!] = NONE;
    for (const es of this.refPids) {
      if (this.#owner[es] !== pmtPid) continue;
      this.#owner[es] = NONE;
      this.#streamType[es] = NONE;
      this.pidDeadline[es] = Infinity;
    }
  }

  /** Rebuilds the referenced and PCR PID lists after a PMT or the PAT changed (not per packet). */
  #rebuildLists(): void {
    this.refPids = [];
    for (let pid = 0; pid < PID_COUNT; pid++) if (this.#owner[pid]! >= 0) this.refPids.push(pid);
    this.isPcrPid.fill(0);
    const pcr = new Set<number>();
    for (const pmtPid of this.#pmtPids) {
      const p = this.#pcrPidOf[this.slotOf[pmtPid]!]!;
      if (p >= 0) pcr.add(p);
    }
    this.pcrPids = [...pcr].sort((a, b) => a - b);
    for (const p of this.pcrPids) this.isPcrPid[p] = 1;
  }
}

/**
 * How many whole intervals of absence have ended by `nowMs` (> deadline):
 * the deadline is when the first one ended. Computed, not looped, so a clock
 * that jumps far costs nothing.
 */
function intervalsPast(nowMs: number, deadline: number, interval: number): number {
  return Math.floor((nowMs - deadline) / interval) + 1;
}

/** The per-PID kind for a PMT stream_type (-1: none). */
function streamKind(streamType: number): string {
  switch (streamType) {
    case 0x1b:
      return 'H.264';
    case 0x24:
      return 'H.265';
    case 0x0f:
      return 'AAC';
    case 0x03:
    case 0x04:
      return 'MPEG audio';
    case 0x06:
      return 'private/PES';
    case 0x02:
      return 'MPEG-2 video';
    case 0x81:
      return 'AC-3';
    default:
      return 'unknown';
  }
}
