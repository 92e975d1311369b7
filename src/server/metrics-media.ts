/**
 * The stream monitors' metrics (flows with payload mpegts, rtp or
 * rtp-mpegts and monitor on): RTP receiver statistics, TR 101 290
 * indicators, bitrate per PID and the alarms now raised, read from each
 * flow's `stats().media` once per scrape. docs/METRICS.md says what each
 * one means.
 */
import type { Registry } from 'prom-client';
import { MEDIA_ALARM_KINDS, TS_INDICATORS, type FlowMediaStats, type RtpStats, type TsStats } from '../index.js';
import { SnapshotCounter, SnapshotGauge, type Sample, type ScrapeCache } from './metrics-snapshot.js';
import type { CapResult } from './metrics-subscriber-cap.js';

interface Monitored {
  readonly flow: string;
  readonly media: FlowMediaStats;
}
type RtpCounter = 'packets' | 'malformed' | 'rtcp' | 'ssrcChanges' | 'reordered' | 'duplicates';

/** Fast channel change counters, as `sluice_fcc_<name>_total` (docs/METRICS.md). */
const FCC_COUNTERS = [
  ['joins', 'joins', 'Subscribers added while the flow ran (each a join).'],
  ['fastJoins', 'fast_joins', 'Joins that got a burst from the cache before the live stream.'],
  ['fallbacks', 'fallbacks', 'Joins with nothing cached (no random access point yet, or the cache overflowed): live from the next datagram.'],
  ['forcedJoins', 'forced_joins', 'Joins the data plane took at a later datagram than asked; the few in between may arrive reordered.'],
  ['cacheOverflows', 'cache_overflows', 'Caches dropped because a group of pictures outgrew maxCacheBytes.'],
] as const;

export function registerMediaMetrics(registry: Registry, reading: ScrapeCache<{ readonly flows: CapResult }>): void {
  const fcc = () => reading.get().flows.flows.flatMap(({ stats }) => (stats.fastChannelChange ? [{ flow: stats.name, f: stats.fastChannelChange }] : []));
  for (const [field, name, help] of FCC_COUNTERS) {
    new SnapshotCounter<'flow'>({
      name: `sluice_fcc_${name}_total`,
      help,
      labelNames: ['flow'],
      registry,
      read: () => fcc().map((r) => ({ labels: { flow: r.flow }, value: r.f[field] })),
    });
  }
  new SnapshotGauge<'flow'>({
    name: 'sluice_fcc_cache_bytes',
    help: 'What a join now would get: bytes cached from the last random access point (0: none).',
    labelNames: ['flow'],
    registry,
    read: () => fcc().map((r) => ({ labels: { flow: r.flow }, value: r.f.cacheBytes })),
  });

  const monitored = (): Monitored[] => {
    const out: Monitored[] = [];
    for (const { stats } of reading.get().flows.flows) if (stats.media) out.push({ flow: stats.name, media: stats.media });
    return out;
  };
  const rtp = (): { flow: string; rtp: RtpStats }[] => monitored().flatMap((m) => (m.media.rtp ? [{ flow: m.flow, rtp: m.media.rtp }] : []));
  const ts = (): { flow: string; ts: TsStats }[] => monitored().flatMap((m) => (m.media.ts ? [{ flow: m.flow, ts: m.media.ts }] : []));
  const perFlow =
    <T>(rows: () => { flow: string; v: T }[], value: (v: T) => number) =>
    (): Sample<'flow'>[] =>
      rows().map((r) => ({ labels: { flow: r.flow }, value: value(r.v) }));

  new SnapshotCounter<'flow'>({
    name: 'sluice_media_datagrams_total',
    help: 'Datagrams the flow stream monitor examined (one copy of each datagram the flow relayed).',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => monitored().map((m) => ({ flow: m.flow, v: m.media })),
      (m) => m.datagrams,
    ),
  });
  new SnapshotGauge<'flow'>({
    name: 'sluice_media_monitor_unread',
    help: 'Copies sent to the stream monitor it has not read: lost on the loopback or queued. While it grows the monitor undercounts.',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => monitored().map((m) => ({ flow: m.flow, v: m.media })),
      (m) => m.unread,
    ),
  });
  new SnapshotGauge<'flow' | 'kind'>({
    name: 'sluice_media_alarm',
    help: 'Stream alarms now raised (value 1 while raised, 0 otherwise), by kind: TR 101 290 indicators, rtpLoss, rtpSsrcChange, streamStopped.',
    labelNames: ['flow', 'kind'],
    registry,
    read: () =>
      monitored().flatMap((m) => MEDIA_ALARM_KINDS.map((kind) => ({ labels: { flow: m.flow, kind }, value: m.media.activeAlarms.includes(kind) ? 1 : 0 }))),
  });

  const rtpCounter = (name: string, help: string, field: RtpCounter) =>
    new SnapshotCounter<'flow'>({
      name,
      help,
      labelNames: ['flow'],
      registry,
      read: perFlow(
        () => rtp().map((r) => ({ flow: r.flow, v: r.rtp })),
        (r) => r[field],
      ),
    });
  rtpCounter('sluice_rtp_packets_total', 'Datagrams that parsed as RTP version 2.', 'packets');
  rtpCounter(
    'sluice_rtp_malformed_total',
    'Datagrams with an RTP version 2 first byte whose header lengths (CSRC, extension, padding) do not fit.',
    'malformed',
  );
  rtpCounter('sluice_rtp_rtcp_total', 'Valid RTCP packets that arrived on the RTP port itself (RFC 5761 multiplexing), relayed with the stream.', 'rtcp');
  rtpCounter('sluice_rtp_ssrc_changes_total', 'Times the stream SSRC changed (a new source or a restarted encoder).', 'ssrcChanges');
  rtpCounter('sluice_rtp_reordered_total', 'RTP packets that arrived after a later sequence number (not duplicates).', 'reordered');
  rtpCounter('sluice_rtp_duplicates_total', 'RTP packets whose sequence number had already arrived.', 'duplicates');
  new SnapshotGauge<'flow'>({
    name: 'sluice_rtp_packets_lost',
    help: 'RTP packets lost upstream of Sluice (RFC 3550 A.3 cumulative: expected minus received); falls when late packets arrive.',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => rtp().map((r) => ({ flow: r.flow, v: r.rtp })),
      (r) => r.lost,
    ),
  });
  new SnapshotGauge<'flow'>({
    name: 'sluice_rtp_jitter_seconds',
    help: 'RTP interarrival jitter (RFC 3550 A.8) at the tap, seconds.',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => rtp().map((r) => ({ flow: r.flow, v: r.rtp })),
      (r) => r.jitterMs / 1000,
    ),
  });

  new SnapshotCounter<'flow' | 'indicator'>({
    name: 'sluice_ts_errors_total',
    help: 'ETSI TR 101 290 indicators that fired, by indicator (priority 1: tsSyncLoss … pidError; priority 2: pcr*, transportError, crcError; sectionError: unreadable PAT/PMT sections).',
    labelNames: ['flow', 'indicator'],
    registry,
    read: () => ts().flatMap((r) => TS_INDICATORS.map((indicator) => ({ labels: { flow: r.flow, indicator }, value: r.ts[indicator] }))),
  });
  new SnapshotCounter<'flow'>({
    name: 'sluice_ts_packets_total',
    help: '188-byte TS packets the monitor examined.',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => ts().map((r) => ({ flow: r.flow, v: r.ts })),
      (r) => r.packets,
    ),
  });
  new SnapshotGauge<'flow'>({
    name: 'sluice_ts_bitrate_bits_per_second',
    help: 'The whole transport stream rate over the last full second, bits per second.',
    labelNames: ['flow'],
    registry,
    read: perFlow(
      () => ts().map((r) => ({ flow: r.flow, v: r.ts })),
      (r) => r.bitrate,
    ),
  });
  new SnapshotGauge<'flow' | 'pid' | 'kind'>({
    name: 'sluice_ts_pid_bitrate_bits_per_second',
    help: 'Rate of one PID over the last full second, bits per second; kind is what the PMT says it carries.',
    labelNames: ['flow', 'pid', 'kind'],
    registry,
    read: () => ts().flatMap((r) => r.ts.pids.map((p) => ({ labels: { flow: r.flow, pid: String(p.pid), kind: p.kind }, value: p.bitrate }))),
  });
  new SnapshotCounter<'flow' | 'pid'>({
    name: 'sluice_ts_pid_cc_errors_total',
    help: 'Continuity counter errors of one PID (TR 101 290 1.4).',
    labelNames: ['flow', 'pid'],
    registry,
    read: () => ts().flatMap((r) => r.ts.pids.map((p) => ({ labels: { flow: r.flow, pid: String(p.pid) }, value: p.ccErrors }))),
  });
}
