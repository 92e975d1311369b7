/**
 * The shapes every stream monitor shares (RTP, MPEG-TS, TS inside RTP).
 * A monitor sees each accepted datagram of a flow once — from the copy the
 * flow sends to Sluice's own monitor socket, on every tier alike — so the
 * counter names below are the same whatever the tier.
 *
 * Time is passed in, never read: `push(datagram, nowMs)` and `tick(nowMs)`
 * take milliseconds on one monotonic clock (performance.now() in practice),
 * so tests drive monitors on a fake clock and results are reproducible.
 */

/** The TR 101 290 indicators that raise alarms, in priority order: the alarm kinds and the counted indicators (TS_INDICATORS) both start with them. */
const TS_ALARMED_INDICATORS = [
  /** TR 101 290 1.1 TS_sync_loss: sync lost (2+ consecutive bad sync bytes) and not regained (5 good ones). */
  'tsSyncLoss',
  /** 1.2 Sync_byte_error: a packet's first byte is not 0x47. */
  'syncByteError',
  /** 1.3 PAT_error_2: no PAT for 0.5 s, a PID 0 packet with another table id, or scrambled PID 0. */
  'patError',
  /** 1.4 Continuity_count_error: a CC jump, a packet repeated more than once, or out of order. */
  'ccError',
  /** 1.5 PMT_error_2: a PMT PID named by the PAT not seen for 0.5 s (or scrambled). */
  'pmtError',
  /** 1.6 PID_error: a PID a PMT references not seen for 5 s (configurable). */
  'pidError',
  /** 2.3a PCR_repetition_error: more than 40 ms between PCRs of a PCR PID. */
  'pcrRepetitionError',
  /** 2.3b PCR_discontinuity_indicator_error: PCR jump over 100 ms without discontinuity_indicator. */
  'pcrDiscontinuityError',
  /** 2.4 PCR_accuracy_error: PCR off by more than ±500 ns from the stream's own clock. */
  'pcrAccuracyError',
] as const;

/**
 * Alarm kinds. TS ones are named after ETSI TR 101 290's indicators
 * (priority 1: 1.1–1.6; priority 2: 2.3a, 2.3b, 2.4); RTP ones after what
 * RFC 3550 receivers report.
 */
export const MEDIA_ALARM_KINDS = [
  ...TS_ALARMED_INDICATORS,
  /** RTP: sequence gaps (packets lost upstream of Sluice) in the last interval. */
  'rtpLoss',
  /** RTP: the stream's SSRC changed (a new source or a restarted encoder). */
  'rtpSsrcChange',
  /** No datagram at all for the stream's timeout (the source stopped). */
  'streamStopped',
] as const;
export type MediaAlarmKind = (typeof MEDIA_ALARM_KINDS)[number];

/** A raised or cleared alarm. Raised once per episode, cleared once, never repeated per packet. */
export interface MediaAlarm {
  readonly kind: MediaAlarmKind;
  readonly state: 'raised' | 'cleared';
  /** Monitor clock, ms (the `nowMs` that raised or cleared it). */
  readonly atMs: number;
  /** The PID it concerns (TS per-PID indicators), if any. */
  readonly pid?: number;
  /** One human-readable line: what was seen, e.g. "PID 0x100: CC 5 after 3". */
  readonly detail: string;
}

/** RFC 3550 receiver statistics of one RTP stream (A.1, A.3, A.8). */
export interface RtpStats {
  /** Datagrams that parsed as RTP version 2. */
  readonly packets: number;
  /**
   * Datagrams that did not (too short, wrong version, lying CSRC count, padding or extension lengths);
   * for 'rtp-mpegts' also RTP packets whose payload is not a whole, non-zero number of 188-byte TS
   * packets (those still count in `packets` and in the sequence figures, but do not reach the TS monitor).
   */
  readonly malformed: number;
  /** Valid RTCP compound packets that arrived on the RTP port (RFC 5761 mux): counted here, not as RTP nor malformed. */
  readonly rtcp: number;
  /** Current SSRC, or null before the first packet. */
  readonly ssrc: number | null;
  readonly ssrcChanges: number;
  /** Extended highest sequence − base + 1 (A.3), summed over SSRCs. */
  readonly expected: number;
  /** Packets lost: expected − received, never negative (A.3), summed over SSRCs. */
  readonly lost: number;
  /** Packets arriving with a sequence number below the highest seen (not duplicates). */
  readonly reordered: number;
  /** Packets whose sequence number was already received (within the recent window). */
  readonly duplicates: number;
  /** Interarrival jitter (A.8), ms, at the configured clock rate. */
  readonly jitterMs: number;
  /** Last RTP payload type seen, or null. */
  readonly payloadType: number | null;
}

/** Per-PID figures of a TS stream. */
export interface TsPidStats {
  readonly pid: number;
  /** What the PMT says the PID carries, e.g. 'PAT', 'PMT', 'H.264', 'AAC', or 'unknown'. */
  readonly kind: string;
  readonly packets: number;
  readonly ccErrors: number;
  /** Bits per second over the last full second of the monitor clock. */
  readonly bitrate: number;
}

/** TR 101 290 counters of one TS stream: how many times each indicator fired. */
export interface TsStats {
  /** 188-byte packets examined. */
  readonly packets: number;
  readonly tsSyncLoss: number;
  readonly syncByteError: number;
  readonly patError: number;
  readonly ccError: number;
  readonly pmtError: number;
  readonly pidError: number;
  readonly pcrRepetitionError: number;
  readonly pcrDiscontinuityError: number;
  readonly pcrAccuracyError: number;
  /** transport_error_indicator set (TR 101 290 2.1), counted, not alarmed. */
  readonly transportError: number;
  /** PAT/PMT sections whose CRC_32 is wrong (TR 101 290 2.2 CRC_error, for the tables Sluice reads), counted, not alarmed. */
  readonly crcError: number;
  /**
   * PAT/PMT sections that cannot be read, counted, not alarmed: a section_length
   * that is impossible or runs past where the next section starts, a
   * pointer_field past its packet, a missing section_syntax_indicator.
   */
  readonly sectionError: number;
  /** Whole stream, bits per second over the last full second. */
  readonly bitrate: number;
  readonly pids: readonly TsPidStats[];
}

/** The TR 101 290 indicators TsStats counts, in priority order: the CLI's media line, the `indicator` metric label and the tests read this one list. */
export const TS_INDICATORS = [
  ...TS_ALARMED_INDICATORS,
  /** Counted, not alarmed (see TsStats). */
  'transportError',
  'crcError',
  'sectionError',
] as const satisfies readonly (keyof TsStats)[];

/** What a flow's monitor reports (FlowStats.media). */
export interface MediaStats {
  /** The flow's payload policy the monitor applies. */
  readonly payload: 'mpegts' | 'rtp' | 'rtp-mpegts';
  /** Datagrams the monitor received (the copies the flow sent it). */
  readonly datagrams: number;
  /** Present for 'rtp' and 'rtp-mpegts'. */
  readonly rtp?: RtpStats;
  /** Present for 'mpegts' and 'rtp-mpegts'. */
  readonly ts?: TsStats;
  /** Alarms now raised, e.g. ['ccError', 'pcrRepetitionError']. */
  readonly activeAlarms: readonly MediaAlarmKind[];
}

/**
 * One stream monitor. `push` is the hot path: it must not allocate per
 * datagram beyond what a datagram's findings need, and must never throw on
 * any input (bad input is counted). `tick` runs the time-driven checks
 * (PAT/PMT/PID missing, PCR repetition, stream stopped); the owner calls it
 * every 100 ms or so.
 */
export interface StreamMonitor {
  push(datagram: Uint8Array, nowMs: number): void;
  tick(nowMs: number): void;
  stats(): MediaStats;
}

/** Options every monitor factory takes. */
export interface MonitorOptions {
  /** Called for every alarm raised or cleared, synchronously from push/tick. */
  readonly onAlarm?: (alarm: MediaAlarm) => void;
  /** RTP clock rate for jitter, Hz (90000 for video and TS over RTP). */
  readonly rtpClockRate?: number;
  /** TR 101 290 1.6: how long a PID the PMT references may be absent, ms (default 5000). */
  readonly pidTimeoutMs?: number;
  /** 'streamStopped' after this long without a datagram, ms (default 2000). */
  readonly stopTimeoutMs?: number;
}
