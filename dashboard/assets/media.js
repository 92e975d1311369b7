/**
 * A monitored flow's stream findings (stats.media) as short text: the RTP
 * receiver figures, the TR 101 290 indicators that fired and the stream
 * rate, and the alarms raised now. Nothing here is computed beyond
 * formatting: the monitor counts, the page shows.
 */
import { bitRate, count } from './format.js';

/**
 * @typedef {{ packets: number, lost: number, reordered: number, duplicates: number, jitterMs: number, ssrcChanges: number }} RtpFigures
 * @typedef {{ bitrate: number, pids: { pid: number, kind: string }[] } & Record<string, unknown>} TsFigures
 * @typedef {{ payload: string, datagrams: number, unread?: number, rtp?: RtpFigures, ts?: TsFigures, activeAlarms: string[] }} MediaFigures
 */

/** TR 101 290 indicators, in priority order, as the monitor names them. */
const TS_INDICATORS = [
  'tsSyncLoss',
  'syncByteError',
  'patError',
  'ccError',
  'pmtError',
  'pidError',
  'pcrRepetitionError',
  'pcrDiscontinuityError',
  'pcrAccuracyError',
  'transportError',
  'crcError',
  'sectionError',
];

/** @param {MediaFigures | undefined} media @returns {{ text: string, alarms: string[] }} */
export function mediaSummary(media) {
  if (!media) return { text: '', alarms: [] };
  const parts = [media.payload];
  const rtp = media.rtp;
  if (rtp) {
    parts.push(`RTP lost ${count(rtp.lost)} · reordered ${count(rtp.reordered)} · dup ${count(rtp.duplicates)} · jitter ${rtp.jitterMs.toFixed(1)} ms`);
    if (rtp.ssrcChanges) parts.push(`SSRC changes ${count(rtp.ssrcChanges)}`);
  }
  const ts = media.ts;
  if (ts) {
    const fired = TS_INDICATORS.filter((k) => typeof ts[k] === 'number' && /** @type {number} */ (ts[k]) > 0).map(
      (k) => `${k} ${count(/** @type {number} */ (ts[k]))}`,
    );
    parts.push(`TS ${bitRate(ts.bitrate / 8)}, ${ts.pids.length} PIDs`);
    parts.push(fired.length ? fired.join(' · ') : 'TR 101 290: no errors');
  }
  if (media.unread) parts.push(`monitor behind by ${count(media.unread)}`);
  return { text: parts.join(' — '), alarms: media.activeAlarms ?? [] };
}
