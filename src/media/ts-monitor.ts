/**
 * MPEG-TS stream monitor after ETSI TR 101 290: the priority-1 checks (1.1
 * TS_sync_loss, 1.2 Sync_byte_error, 1.3 PAT_error_2, 1.4
 * Continuity_count_error, 1.5 PMT_error_2, 1.6 PID_error), the PCR checks of
 * priority 2 (2.3a, 2.3b, 2.4; see ts-pcr.ts), transport_error_indicator
 * (2.1, counted), CRC errors of PAT/PMT (2.2, counted) and bitrate per PID.
 *
 * Pure code: datagrams and time come in (`push`, `pushPackets`, `tick`),
 * counters and alarms go out. The per-packet path reads the header by hand
 * and keeps its state in typed arrays indexed by PID, so it allocates
 * nothing; PSI sections (ts-psi.ts) and PCRs (ts-pcr.ts) have their own
 * modules, alarms their book (ts-alarms.ts).
 *
 * Packets are taken 188 bytes at a time from the start of each buffer (the
 * datagram, or the TS payload of an RTP packet); there is no resync search
 * inside a buffer, because TS over UDP/RTP is packet-aligned. A tail
 * shorter than 188 bytes counts as one sync byte error.
 */

import { AF_DISCONTINUITY, AF_PCR, PID_NULL, TS_PACKET_SIZE, TS_SYNC_BYTE } from '../wire/mpegts/packet.js';
import { readPcr } from '../wire/mpegts/pcr.js';
import { AlarmBook, CC_REPEATED, NO_PID } from './ts-alarms.js';
import { BitrateMeter } from './ts-bitrate.js';
import { PcrChecker } from './ts-pcr.js';
import { PsiTracker } from './ts-psi.js';
import { MEDIA_ALARM_KINDS, type MediaStats, type MonitorOptions, type StreamMonitor, type TsPidStats, type TsStats } from './monitor-types.js';

const PID_COUNT = 0x2000;
/** 1.1: sync is lost after this many consecutive bad sync bytes... */
const SYNC_LOSS_BAD = 2;
/** ...and regained after this many consecutive good ones. */
const SYNC_REGAIN_GOOD = 5;
const DEFAULT_PID_TIMEOUT_MS = 5000;
const DEFAULT_STOP_TIMEOUT_MS = 2000;

/** A StreamMonitor for MPEG-TS that also takes TS data that is not a whole datagram. */
export interface TsMonitor extends StreamMonitor {
  /**
   * Checks the TS packets in `buf` (e.g. the payload of one RTP packet):
   * like `push`, but not counted as a datagram.
   */
  pushPackets(buf: Uint8Array, nowMs: number): void;
}

/** Creates a TS monitor (payload 'mpegts'). Throws RangeError on a timeout that is not a positive number. */
export function createTsMonitor(options: MonitorOptions = {}): TsMonitor {
  return new TsStreamMonitor(options);
}

function timeout(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new RangeError(`${name} must be a positive number of ms, got ${String(x)}`);
  return x;
}

class TsStreamMonitor implements TsMonitor {
  readonly #alarms: AlarmBook;
  readonly #psi: PsiTracker;
  readonly #pcr: PcrChecker;
  readonly #rate = new BitrateMeter();
  readonly #stopTimeoutMs: number;

  /** Last CC per PID, -1 while unknown. */
  readonly #lastCc = new Int8Array(PID_COUNT).fill(-1);
  /** 1 when the last packet on the PID was a (legal) repeat, so another repeat is an error. */
  readonly #repeated = new Uint8Array(PID_COUNT);
  readonly #pidPackets = new Float64Array(PID_COUNT);
  readonly #pidCcErrors = new Float64Array(PID_COUNT);
  /** Monitor time of each PID's last packet (-Infinity: never). */
  readonly #lastMs = new Float64Array(PID_COUNT).fill(-Infinity);

  #datagrams = 0;
  /** Index of the next 188-byte packet slot in the stream (bad ones included): the PCR checks' byte clock. */
  #packets = 0;
  #syncByteError = 0;
  #tsSyncLoss = 0;
  #ccError = 0;
  #transportError = 0;
  #inSync = true;
  #badRun = 0;
  #goodRun = 0;
  /** Bumped whenever bytes may have been lost (CC or sync errors): the PCR accuracy fit restarts. */
  #epoch = 0;
  #started = false;
  #stopped = false;
  #lastDataMs = 0;

  constructor(options: MonitorOptions) {
    this.#stopTimeoutMs = timeout('stopTimeoutMs', options.stopTimeoutMs, DEFAULT_STOP_TIMEOUT_MS);
    this.#alarms = new AlarmBook(options.onAlarm);
    this.#psi = new PsiTracker(this.#alarms, timeout('pidTimeoutMs', options.pidTimeoutMs, DEFAULT_PID_TIMEOUT_MS), this.#lastMs);
    this.#pcr = new PcrChecker(this.#alarms);
  }

  push(datagram: Uint8Array, nowMs: number): void {
    if (!(datagram instanceof Uint8Array) || !Number.isFinite(nowMs)) return;
    this.#datagrams++;
    this.#packetsIn(datagram, nowMs);
  }

  pushPackets(buf: Uint8Array, nowMs: number): void {
    if (!(buf instanceof Uint8Array) || !Number.isFinite(nowMs)) return;
    this.#packetsIn(buf, nowMs);
  }

  tick(nowMs: number): void {
    if (!Number.isFinite(nowMs) || !this.#started) return;
    this.#rate.roll(nowMs);
    if (!this.#stopped && nowMs - this.#lastDataMs >= this.#stopTimeoutMs) {
      this.#stopped = true;
      this.#alarms.flag('streamStopped', NO_PID, nowMs, nowMs - this.#lastDataMs);
    }
    if (!this.#inSync && !this.#stopped) this.#alarms.flag('tsSyncLoss', NO_PID, nowMs, this.#badRun);
    // Absences are judged as of the last datagram, not of now: silence is the stream stopping
    // (streamStopped after stopTimeoutMs), not every table, PID and PCR missing at once. What
    // arrives late after a short silence is counted when it arrives; after streamStopped the
    // clocks restart with the data.
    this.#psi.tick(this.#lastDataMs, nowMs);
    this.#pcr.tick(this.#lastDataMs, nowMs, this.#psi.pcrPids);
    this.#alarms.sweep(nowMs, 'streamStopped');
  }

  stats(): MediaStats {
    return { payload: 'mpegts', datagrams: this.#datagrams, ts: this.tsStats(), activeAlarms: this.#alarms.activeKinds(MEDIA_ALARM_KINDS) };
  }

  /** The TS counters alone (what `stats().ts` holds). */
  tsStats(): TsStats {
    const pids: TsPidStats[] = [];
    for (let pid = 0; pid < PID_COUNT; pid++) {
      const packets = this.#pidPackets[pid]!;
      if (packets === 0 && !this.#psi.isNamed(pid)) continue;
      pids.push({ pid, kind: this.#psi.kind(pid), packets, ccErrors: this.#pidCcErrors[pid]!, bitrate: this.#rate.pidBitrate(pid) });
    }
    const psi = this.#psi.counts;
    const pcr = this.#pcr.counts;
    return {
      packets: this.#packets,
      tsSyncLoss: this.#tsSyncLoss,
      syncByteError: this.#syncByteError,
      patError: psi.patError,
      ccError: this.#ccError,
      pmtError: psi.pmtError,
      pidError: psi.pidError,
      pcrRepetitionError: pcr.pcrRepetitionError,
      pcrDiscontinuityError: pcr.pcrDiscontinuityError,
      pcrAccuracyError: pcr.pcrAccuracyError,
      transportError: this.#transportError,
      crcError: psi.crcError,
      sectionError: psi.sectionError,
      bitrate: this.#rate.totalBitrate(),
      pids,
    };
  }

  #packetsIn(buf: Uint8Array, nowMs: number): void {
    if (!this.#started) {
      this.#started = true;
      this.#psi.restart(nowMs);
      this.#pcr.restart(nowMs);
    } else if (this.#stopped) {
      // Data after a stop is a new start: nothing before the stop is compared with what follows.
      this.#stopped = false;
      this.#alarms.clear('streamStopped', NO_PID, nowMs, 'data again');
      this.#forgetContinuity();
      this.#psi.restart(nowMs);
      this.#pcr.restart(nowMs);
    }
    this.#lastDataMs = nowMs;
    this.#rate.roll(nowMs);
    const len = buf.length;
    const whole = len - (len % TS_PACKET_SIZE);
    for (let o = 0; o < whole; o += TS_PACKET_SIZE) this.#packet(buf, o, nowMs);
    if (whole < len) {
      this.#rate.unattributed(len - whole);
      this.#badSync(nowMs, len - whole, -1);
    }
  }

  #packet(b: Uint8Array, o: number, nowMs: number): void {
    const index = this.#packets++;
    if (b[o] !== TS_SYNC_BYTE) {
      this.#rate.unattributed(TS_PACKET_SIZE);
      this.#badSync(nowMs, index, b[o]!);
      return;
    }
    this.#badRun = 0;
    if (!this.#inSync) {
      // TR 101 290 1.1: sync is back after 5 good sync bytes; packets until then are not checked.
      if (++this.#goodRun < SYNC_REGAIN_GOOD) {
        this.#rate.unattributed(TS_PACKET_SIZE);
        return;
      }
      this.#inSync = true;
    }
    const b1 = b[o + 1]!;
    if (b1 & 0x80) {
      // transport_error_indicator: the header (PID, CC) cannot be trusted.
      this.#transportError++;
      this.#rate.unattributed(TS_PACKET_SIZE);
      return;
    }
    const pid = ((b1 & 0x1f) << 8) | b[o + 2]!;
    this.#pidPackets[pid]!++;
    this.#rate.packet(pid);
    if (this.#psi.pidDeadline[pid] !== Infinity) this.#psi.referencedArrived(pid, nowMs);
    this.#lastMs[pid] = nowMs;
    if (pid === PID_NULL) return;
    const b3 = b[o + 3]!;
    const afc = (b3 >>> 4) & 3;
    if (afc === 0) return; // reserved adaptation_field_control: nothing in the packet can be read
    let discontinuity = false;
    let pcr = -1;
    let payload = o + 4;
    if (afc & 2) {
      const afLen = b[o + 4]!;
      if (afLen > TS_PACKET_SIZE - 5) return; // adaptation field past the packet
      if (afLen > 0) {
        const flags = b[o + 5]!;
        discontinuity = (flags & AF_DISCONTINUITY) !== 0;
        if (flags & AF_PCR && afLen >= 7) pcr = readPcr(b, o + 6);
      }
      payload = o + 5 + afLen;
    }
    const hasPayload = (afc & 1) !== 0;
    // Adaptation-only packets do not advance the CC (ISO/IEC 13818-1 2.4.3.3) and are not checked.
    if (hasPayload && !this.#continuity(pid, b3 & 0x0f, discontinuity, nowMs)) return; // a legal repeat: already seen
    if (this.#psi.slotOf[pid]! >= 0) {
      this.#psi.packet(b, pid, (b1 & 0x40) !== 0, b3 >>> 6, payload, hasPayload ? o + TS_PACKET_SIZE : payload, nowMs);
    }
    if (pcr >= 0 && this.#psi.isPcrPid[pid] === 1) this.#pcr.pcr(pid, pcr, index, discontinuity, nowMs, this.#epoch);
  }

  /**
   * 1.4: the CC of a payload packet follows the last one (mod 16), repeats it
   * once (a duplicate, legal), or follows a discontinuity_indicator. Returns
   * false for a legal duplicate (the caller skips it).
   */
  #continuity(pid: number, cc: number, discontinuity: boolean, nowMs: number): boolean {
    const last = this.#lastCc[pid]!;
    if (last >= 0 && !discontinuity) {
      if (cc === last) {
        if (this.#repeated[pid] === 0) {
          this.#repeated[pid] = 1;
          return false;
        }
        this.#ccFault(pid, nowMs, CC_REPEATED, cc);
        return false;
      }
      if (cc !== ((last + 1) & 0x0f)) this.#ccFault(pid, nowMs, last, cc);
    }
    this.#lastCc[pid] = cc;
    this.#repeated[pid] = 0;
    return true;
  }

  #ccFault(pid: number, nowMs: number, last: number, cc: number): void {
    this.#ccError++;
    this.#pidCcErrors[pid]!++;
    this.#epoch++;
    this.#psi.lost(pid);
    this.#alarms.flag('ccError', pid, nowMs, last, cc);
  }

  /** 1.2 for one packet (or a short tail: `byte` -1), and 1.1 when it is the second bad one in a row. */
  #badSync(nowMs: number, where: number, byte: number): void {
    this.#syncByteError++;
    this.#epoch++;
    this.#goodRun = 0;
    this.#alarms.flag('syncByteError', NO_PID, nowMs, where, byte);
    if (!this.#inSync || ++this.#badRun < SYNC_LOSS_BAD) return;
    this.#inSync = false;
    this.#tsSyncLoss++;
    this.#alarms.flag('tsSyncLoss', NO_PID, nowMs, this.#badRun);
    this.#forgetContinuity();
  }

  /** After a loss of sync or a stop: what follows cannot be compared with what came before. */
  #forgetContinuity(): void {
    this.#lastCc.fill(-1);
    this.#repeated.fill(0);
    this.#psi.lostAll();
    this.#pcr.lostSync();
  }
}
