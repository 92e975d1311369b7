/**
 * One line per monitored flow for the CLI's final table: what the stream
 * monitor found over the run (RTP loss, reordering, jitter; the TR 101 290
 * indicators that fired), and the RTCP relay's counts.
 */
import type { MonitoredFlowStats } from '../control/flow-taps.js';
import { TS_INDICATORS } from '../media/monitor-types.js';

/** `  media: …` for a monitored flow, `  rtcp: …` for an RTCP-paired one; nothing for others. */
export function mediaLines(s: MonitoredFlowStats): string[] {
  const out: string[] = [];
  const m = s.media;
  if (m) {
    const parts = [`${m.payload}, ${m.datagrams} datagrams seen`];
    if (m.rtp)
      parts.push(
        `RTP lost ${m.rtp.lost}, reordered ${m.rtp.reordered}, duplicates ${m.rtp.duplicates}, jitter ${m.rtp.jitterMs.toFixed(2)} ms, SSRC changes ${m.rtp.ssrcChanges}`,
      );
    if (m.ts) {
      const ts = m.ts;
      const fired = TS_INDICATORS.filter((k) => ts[k] > 0).map((k) => `${k} ${ts[k]}`);
      parts.push(`TS ${fired.length ? fired.join(', ') : 'no TR 101 290 errors'}`);
    }
    if (m.unread) parts.push(`${m.unread} copies unread by the monitor`);
    out.push(`  media: ${parts.join('; ')}`);
  }
  if (s.rtcp)
    out.push(
      `  rtcp: ${s.rtcp.fromSources} from sources (${s.rtcp.copies} copies), ${s.rtcp.fromSubscribers} reports from subscribers, ${s.rtcp.dropped} dropped`,
    );
  return out;
}
