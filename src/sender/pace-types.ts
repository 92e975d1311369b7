/**
 * What a stream is paced by: its bitrate (constant rate, the default), or
 * its own clock — the PCRs of an MPEG-TS stream (pace-pcr.ts) or the
 * timestamps of an RTP stream (pace-rtp.ts).
 */
export type StreamPace = 'bitrate' | 'pcr' | 'rtp';

/** Every pace a stream may have, for option parsers and schemas. */
export const STREAM_PACES: readonly StreamPace[] = ['bitrate', 'pcr', 'rtp'];

/** When each datagram of one pass over a stream's data is due, by the stream's own clock. */
export interface ClockSchedule {
  /** Datagram k is due dueMs[k] ms after the first (dueMs[0] = 0; never decreasing). */
  readonly dueMs: Float64Array;
  /** From the first datagram to the end of the pass: where a looping stream's next pass starts. */
  readonly passMs: number;
  /**
   * Where each datagram is in the data when they are not cut every
   * `packetSize` bytes (RTP, framed): datagram k is data[offsets[k],
   * offsets[k] + lengths[k]). Absent: datagram k starts at k × packetSize.
   */
  readonly framed?: { readonly offsets: Uint32Array; readonly lengths: Uint16Array };
}
