/**
 * The RTP stream monitor (payload 'rtp'): RFC 3550 receiver statistics of a
 * flow's datagrams (sequence validation A.1, expected/lost A.3, jitter A.8),
 * with reordered and duplicate packets told apart, SSRC changes, malformed
 * datagrams, and the alarms 'rtpLoss', 'rtpSsrcChange' and 'streamStopped'.
 *
 * One source is current. A datagram with another SSRC starts a candidate
 * that must pass A.1 probation (MIN_SEQUENTIAL sequential packets) before it
 * replaces the current one, so a stray packet does not count as a change.
 * Counters (expected, lost, reordered, duplicates) are totals over every
 * source the flow has had.
 *
 * RTCP arriving on the same port (RFC 5761 mux) is recognised, validated and
 * counted apart, never as malformed RTP. For TS inside RTP, a payload sink
 * receives each new packet's payload (duplicates are dropped here, as a
 * receiver's RTP layer would).
 */

import { looksLikeRtcp, checkRtcpCompound } from '../wire/rtcp.js';
import { newRtpHeader, parseRtpInto } from '../wire/rtp.js';
import { MEDIA_ALARM_KINDS, type MediaAlarmKind, type MediaStats, type MonitorOptions, type RtpStats, type StreamMonitor } from './monitor-types.js';
import { RtpSource, SEQ_DUPLICATE, SEQ_LATE, SEQ_REORDERED, SEQ_RESTART, SEQ_VALIDATED } from './rtp-source.js';

/** Default RTP clock for jitter: video, and TS over RTP (RFC 2250). */
export const DEFAULT_RTP_CLOCK_RATE = 90_000;
/** Default silence before 'streamStopped', ms. */
export const DEFAULT_STOP_TIMEOUT_MS = 2000;
/** How long without new loss before 'rtpLoss' clears, and how long 'rtpSsrcChange' stays raised, ms. */
export const ALARM_HOLD_MS = 1000;

/**
 * Receives the payload of each new RTP packet (`buf[offset, offset+length)`);
 * returns false when the payload is not what the flow should carry (counted
 * as malformed).
 */
export type RtpPayloadSink = (buf: Uint8Array, offset: number, length: number, nowMs: number) => boolean;

/** An RTP monitor, with its alarms as a list so a composite monitor can merge them. */
export interface RtpMonitor extends StreamMonitor {
  rtpStats(): RtpStats;
  activeAlarms(): MediaAlarmKind[];
}

export function createRtpMonitor(options: MonitorOptions = {}, sink?: RtpPayloadSink, payload: 'rtp' | 'rtp-mpegts' = 'rtp'): RtpMonitor {
  return new RtpMonitorImpl(options, sink, payload);
}

class RtpMonitorImpl implements RtpMonitor {
  readonly #header = newRtpHeader();
  readonly #clockRate: number;
  readonly #stopTimeoutMs: number;
  readonly #raised = new Set<MediaAlarmKind>();

  #datagrams = 0;
  #packets = 0;
  #malformed = 0;
  #rtcp = 0;
  #duplicates = 0;
  #reordered = 0;
  #ssrcChanges = 0;
  #payloadType: number | null = null;
  #current: RtpSource | null = null;
  #candidate: RtpSource | null = null;
  /** Expected and lost of sources that were replaced. */
  #retiredExpected = 0;
  #retiredLost = 0;

  #lastDatagramMs: number | null = null;
  #lossSeen = 0;
  #lastLossMs = 0;
  #lastChangeMs = 0;

  readonly #options: MonitorOptions;
  readonly #sink: RtpPayloadSink | undefined;
  readonly #payload: 'rtp' | 'rtp-mpegts';

  constructor(options: MonitorOptions, sink: RtpPayloadSink | undefined, payload: 'rtp' | 'rtp-mpegts') {
    this.#options = options;
    this.#sink = sink;
    this.#payload = payload;
    this.#clockRate = options.rtpClockRate !== undefined && options.rtpClockRate > 0 ? options.rtpClockRate : DEFAULT_RTP_CLOCK_RATE;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  }

  push(datagram: Uint8Array, nowMs: number): void {
    this.#datagrams++;
    this.#lastDatagramMs = nowMs;
    if (this.#raised.has('streamStopped')) this.#clear('streamStopped', nowMs, 'datagrams again');
    if (looksLikeRtcp(datagram) && checkRtcpCompound(datagram) === null) {
      this.#rtcp++;
      return;
    }
    const h = this.#header;
    if (parseRtpInto(datagram, h) !== null) {
      this.#malformed++;
      return;
    }
    this.#packets++;
    this.#payloadType = h.payloadType;
    const outcome = this.#track(h.ssrc, h.sequence, nowMs);
    if (outcome === SEQ_DUPLICATE) {
      this.#duplicates++;
      return;
    }
    if (outcome === SEQ_REORDERED || outcome === SEQ_LATE) this.#reordered++;
    if (this.#sink && !this.#sink(datagram, h.payloadOffset, h.payloadLength, nowMs)) this.#malformed++;
  }

  /** Routes a packet to the current source or the candidate; returns the sequence outcome. */
  #track(ssrc: number, seq: number, nowMs: number): number {
    const h = this.#header;
    let src = this.#current;
    if (src === null) src = this.#current = new RtpSource(ssrc, seq);
    else if (src.ssrc !== ssrc) {
      if (this.#candidate === null || this.#candidate.ssrc !== ssrc) this.#candidate = new RtpSource(ssrc, seq);
      src = this.#candidate;
    }
    const outcome = src.update(seq);
    if (outcome !== SEQ_DUPLICATE) src.updateJitter(h.timestamp, nowMs, this.#clockRate);
    if (src === this.#candidate && outcome === SEQ_VALIDATED) this.#adopt(src, nowMs);
    return outcome === SEQ_RESTART ? SEQ_VALIDATED : outcome;
  }

  /** The candidate passed probation: it becomes the current source. */
  #adopt(next: RtpSource, nowMs: number): void {
    const prev = this.#current!;
    this.#retiredExpected += prev.expected;
    this.#retiredLost += prev.lost;
    this.#current = next;
    this.#candidate = null;
    this.#ssrcChanges++;
    this.#lastChangeMs = nowMs;
    this.#raise('rtpSsrcChange', nowMs, `SSRC ${hex(prev.ssrc)} → ${hex(next.ssrc)}`);
  }

  tick(nowMs: number): void {
    // Only a stream that started can stop (the TS monitor's rule too): a flow created before its source is not an alarm.
    const since = this.#lastDatagramMs;
    if (since !== null && nowMs - since >= this.#stopTimeoutMs && !this.#raised.has('streamStopped'))
      this.#raise('streamStopped', nowMs, `no datagram for ${nowMs - since} ms`);

    const lost = this.#retiredLost + (this.#current?.settledLost() ?? 0);
    if (lost > this.#lossSeen) {
      const n = lost - this.#lossSeen;
      this.#lastLossMs = nowMs;
      if (!this.#raised.has('rtpLoss')) this.#raise('rtpLoss', nowMs, `${n} RTP packet${n === 1 ? '' : 's'} lost`);
    } else if (this.#raised.has('rtpLoss') && nowMs - this.#lastLossMs >= ALARM_HOLD_MS) {
      this.#clear('rtpLoss', nowMs, `no RTP loss for ${nowMs - this.#lastLossMs} ms`);
    }
    this.#lossSeen = lost;

    if (this.#raised.has('rtpSsrcChange') && nowMs - this.#lastChangeMs >= ALARM_HOLD_MS)
      this.#clear('rtpSsrcChange', nowMs, `SSRC ${hex(this.#current!.ssrc)} steady`);
  }

  rtpStats(): RtpStats {
    const cur = this.#current;
    return {
      packets: this.#packets,
      malformed: this.#malformed,
      rtcp: this.#rtcp,
      ssrc: cur?.ssrc ?? null,
      ssrcChanges: this.#ssrcChanges,
      expected: this.#retiredExpected + (cur?.expected ?? 0),
      lost: this.#retiredLost + (cur?.lost ?? 0),
      reordered: this.#reordered,
      duplicates: this.#duplicates,
      jitterMs: cur ? (cur.jitter / this.#clockRate) * 1000 : 0,
      payloadType: this.#payloadType,
    };
  }

  activeAlarms(): MediaAlarmKind[] {
    return MEDIA_ALARM_KINDS.filter((k) => this.#raised.has(k));
  }

  stats(): MediaStats {
    return { payload: this.#payload, datagrams: this.#datagrams, rtp: this.rtpStats(), activeAlarms: this.activeAlarms() };
  }

  #raise(kind: MediaAlarmKind, atMs: number, detail: string): void {
    this.#raised.add(kind);
    this.#options.onAlarm?.({ kind, state: 'raised', atMs, detail });
  }

  #clear(kind: MediaAlarmKind, atMs: number, detail: string): void {
    this.#raised.delete(kind);
    this.#options.onAlarm?.({ kind, state: 'cleared', atMs, detail });
  }
}

function hex(ssrc: number): string {
  return `0x${ssrc.toString(16).padStart(8, '0')}`;
}
