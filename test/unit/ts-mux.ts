/**
 * A small constant-bitrate TS multiplexer for the TS monitor's tests: one
 * program (PAT, PMT, a video PID carrying the PCR, an audio PID) plus null
 * packets, every packet in a fixed slot of the stream's clock, so the tests
 * know exactly what each packet is, when it is sent and what its PCR says.
 *
 * Slots repeat in tens: 6 video, 2 audio, 2 null; a due PAT/PMT takes the
 * next null slot (so video and audio keep their exact shares), a due PCR
 * rides on the next video packet. Hooks let a test withhold tables or
 * PIDs, move PCR times or values, and set discontinuity_indicator.
 */
import { PCR_MODULUS } from '../../src/wire/mpegts/pcr.js';
import { PID_NULL, PID_PAT, TS_PACKET_SIZE, maxTsPayload, writeTsHeader, AF_DISCONTINUITY } from '../../src/wire/mpegts/packet.js';
import { encodePatSection, encodePmtSection, type PmtStream } from '../../src/wire/mpegts/psi.js';
import { createTsMonitor, type TsMonitor } from '../../src/media/ts-monitor.js';
import type { MediaAlarm, MonitorOptions } from '../../src/media/monitor-types.js';

export interface MuxPacket {
  readonly bytes: Uint8Array;
  readonly pid: number;
  /** Send time of the packet's first byte, ms of stream time. */
  readonly timeMs: number;
  /** PCR the packet carries (27 MHz ticks), or -1. */
  readonly pcr: number;
}

export interface MuxOptions {
  readonly bitrateBps?: number;
  readonly pmtPid?: number;
  readonly videoPid?: number;
  readonly audioPid?: number;
  /** Extra PMT streams (e.g. many, so the PMT spans packets). */
  readonly extraStreams?: readonly PmtStream[];
  /** Extra programs in the PAT (programNumber → PMT PID), whose PMTs are never sent. */
  readonly extraPrograms?: readonly { programNumber: number; pmtPid: number }[];
  readonly psiIntervalMs?: number;
}

export const VIDEO = 0x100;
export const AUDIO = 0x101;
export const PMT = 0x1000;
const TICKS_PER_MS = 27_000;

/** Splits a section into TS packets on `pid` (first one payload_unit_start with pointer_field 0), 0xFF fill. */
export function sectionPackets(pid: number, section: Uint8Array, firstCc: number): Uint8Array[] {
  const payload = new Uint8Array(1 + section.length);
  payload.set(section, 1);
  const out: Uint8Array[] = [];
  for (let p = 0, cc = firstCc; p < payload.length; p += 184, cc = (cc + 1) & 15) {
    const pkt = new Uint8Array(TS_PACKET_SIZE).fill(0xff);
    const chunk = payload.subarray(p, p + 184);
    const at = writeTsHeader(pkt, 0, pid, p === 0, cc, 184);
    pkt.set(chunk, at);
    out.push(pkt);
  }
  return out;
}

export class TsMux {
  readonly bitrateBps: number;
  readonly videoPid: number;
  readonly audioPid: number;
  readonly pmtPid: number;
  /** Withhold the PAT due at this time (ms). */
  skipPat: (dueMs: number) => boolean = () => false;
  skipPmt: (dueMs: number) => boolean = () => false;
  /** Replace this PID's packet in the slot at `timeMs` by a null packet (the PID stops; its CC does not advance). */
  silence: (pid: number, timeMs: number) => boolean = () => false;
  /** The next PCR due time after the one just sent (default +20 ms). */
  nextPcrDue: (dueMs: number) => number = (d) => d + 20;
  /** Added to the exact PCR of a PCR packet (ticks), e.g. jitter or a jump. */
  pcrOffset: (timeMs: number, k: number) => number = () => 0;
  /** Sets discontinuity_indicator on this PCR packet. */
  pcrDiscontinuity: (timeMs: number, k: number) => boolean = () => false;

  #slot = 0;
  #psiDue = 0;
  #psiInterval: number;
  #pending: Uint8Array[] = [];
  #pcrDue = 0;
  #pcrCount = 0;
  readonly #cc = new Map<number, number>();
  /** The PAT section sent from now on (a test may replace it, e.g. with a new version). */
  pat: Uint8Array;
  readonly #pmt: Uint8Array;

  constructor(o: MuxOptions = {}) {
    this.bitrateBps = o.bitrateBps ?? 10_000_000;
    this.pmtPid = o.pmtPid ?? PMT;
    this.videoPid = o.videoPid ?? VIDEO;
    this.audioPid = o.audioPid ?? AUDIO;
    this.#psiInterval = o.psiIntervalMs ?? 100;
    this.pat = encodePatSection({ transportStreamId: 1, programs: [{ programNumber: 1, pmtPid: this.pmtPid }, ...(o.extraPrograms ?? [])] });
    this.#pmt = encodePmtSection({
      programNumber: 1,
      pcrPid: this.videoPid,
      streams: [{ streamType: 0x1b, elementaryPid: this.videoPid }, { streamType: 0x0f, elementaryPid: this.audioPid }, ...(o.extraStreams ?? [])],
    });
  }

  /** Time of slot `i`'s first byte, ms. */
  slotTimeMs(i: number): number {
    return (i * TS_PACKET_SIZE * 8 * 1000) / this.bitrateBps;
  }

  #nextCc(pid: number): number {
    const cc = this.#cc.get(pid) ?? 0;
    this.#cc.set(pid, (cc + 1) & 15);
    return cc;
  }

  #queue(pid: number, section: Uint8Array): void {
    const pkts = sectionPackets(pid, section, this.#cc.get(pid) ?? 0);
    this.#cc.set(pid, ((this.#cc.get(pid) ?? 0) + pkts.length) & 15);
    this.#pending.push(...pkts);
  }

  /** The next packet of the multiplex. */
  next(): MuxPacket {
    const i = this.#slot++;
    const t = this.slotTimeMs(i);
    while (t >= this.#psiDue) {
      if (!this.skipPat(this.#psiDue)) this.#queue(PID_PAT, this.pat);
      if (!this.skipPmt(this.#psiDue)) this.#queue(this.pmtPid, this.#pmt);
      this.#psiDue += this.#psiInterval;
    }
    const kind = i % 10;
    if (kind < 6) return this.#es(this.videoPid, i, t, true);
    if (kind < 8) return this.#es(this.audioPid, i, t, false);
    const psi = this.#pending.shift();
    if (psi !== undefined) return { bytes: psi, pid: ((psi[1]! & 0x1f) << 8) | psi[2]!, timeMs: t, pcr: -1 };
    return this.#null(t);
  }

  #null(t: number): MuxPacket {
    const pkt = new Uint8Array(TS_PACKET_SIZE).fill(0xff);
    writeTsHeader(pkt, 0, PID_NULL, false, 0, 184);
    return { bytes: pkt, pid: PID_NULL, timeMs: t, pcr: -1 };
  }

  #es(pid: number, i: number, t: number, video: boolean): MuxPacket {
    if (this.silence(pid, t)) return this.#null(t);
    const pkt = new Uint8Array(TS_PACKET_SIZE);
    let pcr = -1;
    let flags = 0;
    if (video && t >= this.#pcrDue) {
      const k = this.#pcrCount++;
      const exact = Math.floor(((i * TS_PACKET_SIZE + 10) * 8 * 27_000_000) / this.bitrateBps);
      pcr = (((exact + this.pcrOffset(t, k)) % Number(PCR_MODULUS)) + Number(PCR_MODULUS)) % Number(PCR_MODULUS);
      if (this.pcrDiscontinuity(t, k)) flags = AF_DISCONTINUITY;
      this.#pcrDue = this.nextPcrDue(this.#pcrDue);
    }
    const len = pcr >= 0 ? maxTsPayload(true) : 184;
    const at = writeTsHeader(pkt, 0, pid, false, this.#nextCc(pid), len, flags, pcr);
    pkt.fill(i & 0xff, at);
    return { bytes: pkt, pid, timeMs: t, pcr };
  }

  /** The packets of the first `ms` of stream time. */
  take(ms: number): MuxPacket[] {
    const out: MuxPacket[] = [];
    while (this.slotTimeMs(this.#slot) < ms) out.push(this.next());
    return out;
  }
}

export const ms = (x: number): number => x * TICKS_PER_MS;

/** A monitor and the alarms it emitted. */
export function monitorWithLog(options: MonitorOptions = {}): { monitor: TsMonitor; alarms: MediaAlarm[] } {
  const alarms: MediaAlarm[] = [];
  const monitor = createTsMonitor({ ...options, onAlarm: (a) => alarms.push(a) });
  return { monitor, alarms };
}

/**
 * Feeds packets to `monitor` `perDatagram` at a time, each datagram at the
 * time of its first packet, calling tick at every multiple of `tickMs`
 * on the way (before the data of that instant) and up to `untilMs`.
 */
export function feed(
  monitor: TsMonitor,
  packets: readonly MuxPacket[],
  o: { perDatagram?: number; tickMs?: number; untilMs?: number; startTick?: number } = {},
): number {
  const per = o.perDatagram ?? 7;
  const tickMs = o.tickMs ?? 100;
  let nextTick = o.startTick ?? tickMs;
  for (let i = 0; i < packets.length; i += per) {
    const group = packets.slice(i, i + per);
    const t = group[0]!.timeMs;
    while (nextTick <= t) {
      monitor.tick(nextTick);
      nextTick += tickMs;
    }
    const d = new Uint8Array(group.length * TS_PACKET_SIZE);
    group.forEach((p, j) => d.set(p.bytes, j * TS_PACKET_SIZE));
    monitor.push(d, t);
  }
  const until = o.untilMs ?? (packets.length > 0 ? packets[packets.length - 1]!.timeMs : 0);
  while (nextTick <= until) {
    monitor.tick(nextTick);
    nextTick += tickMs;
  }
  return nextTick;
}

/** The alarms as "state kind pid" lines, for exact comparisons. */
export function alarmLines(alarms: readonly MediaAlarm[]): string[] {
  return alarms.map((a) => `${a.state} ${a.kind}${a.pid === undefined ? '' : ` 0x${a.pid.toString(16)}`}`);
}
