/**
 * Builds the stream monitor a flow's payload policy asks for:
 * - 'rtp': the RTP monitor alone;
 * - 'mpegts': the TS monitor alone (each datagram is TS packets);
 * - 'rtp-mpegts': the RTP monitor, handing each new RTP payload (a whole
 *   number of 188-byte TS packets) to a TS monitor. The RTP monitor owns
 *   'streamStopped' (it sees the datagrams; the TS monitor sees payloads),
 *   and the alarms both raise are reported once.
 *
 * The TS monitor comes from a factory the caller passes, so this module
 * depends only on the interface below, not on the TS monitor's module.
 */

import { InvalidArgumentError } from '../errors.js';
import { TS_PACKET_SIZE } from '../wire/mpegts/packet.js';
import { MEDIA_ALARM_KINDS, type MediaAlarm, type MediaStats, type MonitorOptions, type StreamMonitor } from './monitor-types.js';
import { createRtpMonitor } from './rtp-monitor.js';

/** A TS monitor: a StreamMonitor for TS datagrams that also takes TS packets from another framing (RTP payloads). */
export type TsMonitorLike = StreamMonitor & {
  /** A whole number of 188-byte packets that did not arrive as a datagram of their own. */
  pushPackets(buf: Uint8Array, nowMs: number): void;
};

export type TsMonitorFactory = (options: MonitorOptions) => TsMonitorLike;

export interface MonitorDeps {
  /** Builds the TS monitor for 'mpegts' and 'rtp-mpegts'. */
  readonly createTsMonitor?: TsMonitorFactory;
}

export type MonitoredPayload = MediaStats['payload'];

export function createMonitor(payload: MonitoredPayload, options: MonitorOptions, deps: MonitorDeps = {}): StreamMonitor {
  if (payload === 'rtp') return createRtpMonitor(options);
  const createTs = deps.createTsMonitor;
  if (!createTs) throw new InvalidArgumentError(`a '${payload}' monitor needs a TS monitor factory`);
  if (payload === 'mpegts') return createTs(options);
  if (payload === 'rtp-mpegts') return createRtpTsMonitor(options, createTs);
  throw new InvalidArgumentError(`no monitor for payload '${String(payload)}'`);
}

function createRtpTsMonitor(options: MonitorOptions, createTs: TsMonitorFactory): StreamMonitor {
  const onAlarm = options.onAlarm;
  const ts = createTs({
    ...options,
    onAlarm: (alarm: MediaAlarm) => {
      if (alarm.kind !== 'streamStopped') onAlarm?.(alarm);
    },
  });
  const rtp = createRtpMonitor(
    options,
    (buf, offset, length, nowMs) => {
      if (length === 0 || length % TS_PACKET_SIZE !== 0) return false;
      ts.pushPackets(buf.subarray(offset, offset + length), nowMs);
      return true;
    },
    'rtp-mpegts',
  );
  return {
    push: (datagram, nowMs) => rtp.push(datagram, nowMs),
    tick(nowMs) {
      rtp.tick(nowMs);
      ts.tick(nowMs);
    },
    stats(): MediaStats {
      const r = rtp.stats();
      const t = ts.stats();
      const active = new Set([...r.activeAlarms, ...t.activeAlarms.filter((k) => k !== 'streamStopped')]);
      return {
        payload: 'rtp-mpegts',
        datagrams: r.datagrams,
        ...(r.rtp && { rtp: r.rtp }),
        ...(t.ts && { ts: t.ts }),
        activeAlarms: MEDIA_ALARM_KINDS.filter((k) => active.has(k)),
      };
    },
  };
}
