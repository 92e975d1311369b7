/**
 * The service's events: one map whose names and payloads are exactly the
 * server-sent events of `GET /v1/events` (docs/HTTP-API.md), so the SSE
 * layer forwards them without translating. `stats` is not emitted by the
 * service: the SSE layer builds it once a second, while someone listens,
 * with statsEvent().
 */
import type { FlowMediaStats, FlowStats, MediaAlarm, MonitoredFlowStats } from '../index.js';
import type { PeerStatus, TpoGatewayStatus, TpoPeerView, TpoTableEntryView } from '../tpo/index.js';
import type { FlowView } from './flow-view.js';
import type { TcpFlowStats, TcpFlowView } from './tcp-flows.js';
import type { SendJobView } from './send-jobs.js';
import type { Logger } from './log.js';

export interface AlarmEvent {
  /** What raised it: a gateway's name, a flow's name (stream alarms, with `flow`, `state` and maybe `pid`), `state`, `service`. */
  readonly source: string;
  /** A short stable word: `handshake`, `flowfail`, `fault`, `persist`, `reload`, or a stream alarm kind (MEDIA_ALARM_KINDS: `ccError`, `rtpLoss`, …). */
  readonly kind: string;
  readonly message: string;
  readonly [extra: string]: unknown;
}

/** A subscriber's RTCP silence (Flow 'silence') as the service's `subscribersuspended` event, logged on the flow's logger. */
export function silenceEvent(flow: string, to: string, silent: boolean, log: Logger): ServiceEvents['subscribersuspended'][0] {
  log[silent ? 'warn' : 'info']({ to }, silent ? 'subscriber sends no RTCP reports: suspended' : 'subscriber reports again: resumed');
  return { flow, to, until: silent ? null : 0, reason: 'noReports' };
}

/** A flow's stream alarm (Flow 'alarm') as the service's `alarm` event, logged on the flow's logger (raised: warn, cleared: info). */
export function streamAlarmEvent(flow: string, alarm: MediaAlarm, log: Logger): AlarmEvent {
  const message = `${alarm.kind} ${alarm.state}: ${alarm.detail}`;
  log[alarm.state === 'raised' ? 'warn' : 'info']({ alarm: alarm.kind, pid: alarm.pid }, message);
  return {
    source: flow,
    kind: alarm.kind,
    message,
    flow,
    state: alarm.state,
    ...(alarm.pid === undefined ? {} : { pid: alarm.pid }),
  };
}

/** A TPO gateway's peers or table changed through the API. */
export type TpoChangeEvent =
  | { readonly gateway: string; readonly change: 'peeradded'; readonly peer: TpoPeerView }
  | { readonly gateway: string; readonly change: 'peerremoved'; readonly name: string; readonly flowsReset: number }
  | { readonly gateway: string; readonly change: 'tableentryadded'; readonly entry: TpoTableEntryView }
  | { readonly gateway: string; readonly change: 'tableentryremoved'; readonly name: string; readonly flowsEnded: number };

export interface ServiceEvents {
  /** A tcp-redirect's view has `type: 'tcp-redirect'`. */
  flowadded: [{ flow: FlowView | TcpFlowView }];
  flowremoved: [{ name: string; stats: FlowStats | TcpFlowStats | null }];
  flowchanged: [{ flow: FlowView | TcpFlowView }];
  subscriberadded: [{ flow: string; to: string }];
  subscriberremoved: [{ flow: string; to: string }];
  /** `until` ms since the epoch; 0: resumed; null: until it sends an RTCP report again (`reason` 'noReports'). */
  subscribersuspended: [{ flow: string; to: string; until: number | null; reason?: 'noReports' }];
  peerup: [{ gateway: string; peer: string }];
  peerdown: [{ gateway: string; peer: string }];
  tpochanged: [TpoChangeEvent];
  alarm: [AlarmEvent];
  enginefailed: [{ engine: string; message: string }];
  sendstarted: [SendJobView];
  senddone: [SendJobView];
}

export type ServiceEventName = keyof ServiceEvents;
export const SERVICE_EVENT_NAMES = [
  'flowadded',
  'flowremoved',
  'flowchanged',
  'subscriberadded',
  'subscriberremoved',
  'subscribersuspended',
  'peerup',
  'peerdown',
  'tpochanged',
  'alarm',
  'enginefailed',
  'sendstarted',
  'senddone',
] as const satisfies readonly ServiceEventName[];

/** One flow in a `stats` event: the totals and each destination's counters. */
export interface StatsEventFlow {
  readonly name: string;
  readonly packetsIn: number;
  readonly bytesIn: number;
  readonly packetsOut: number;
  readonly bytesOut: number;
  /** Drops by reason. */
  readonly drops: FlowStats['drops'];
  readonly destinations: FlowStats['destinations'];
  /** A monitored flow's stream findings (Flow.stats().media). */
  readonly media?: FlowMediaStats;
}

/** Of a peer's status, what the dashboard charts from `stats` events (lost / datagramsSent over an interval: the loss ratio). */
type StatsEventPeer = Pick<
  PeerStatus,
  'name' | 'up' | 'srttMs' | 'pacingMbit' | 'bytesSent' | 'bytesReceived' | 'retransmissions' | 'datagramsSent' | 'lost' | 'flows'
>;

/** One gateway in a `stats` event: per peer, what the dashboard charts. */
export interface StatsEventGateway {
  readonly name: string;
  readonly peers: readonly StatsEventPeer[];
}

export interface StatsEvent {
  /** ms since the epoch. */
  readonly t: number;
  readonly flows: readonly StatsEventFlow[];
  readonly gateways: readonly StatsEventGateway[];
}

/** The `stats` event from counter snapshots (read from shared memory and maps: no message to an engine). */
export function statsEvent(flows: readonly MonitoredFlowStats[], gateways: readonly TpoGatewayStatus[], t = Date.now()): StatsEvent {
  return {
    t,
    flows: flows.map((f) => ({
      name: f.name,
      packetsIn: f.packetsIn,
      bytesIn: f.bytesIn,
      packetsOut: f.packetsOut,
      bytesOut: f.bytesOut,
      drops: f.drops,
      destinations: f.destinations,
      ...(f.media ? { media: f.media } : {}),
    })),
    gateways: gateways.map((g) => ({
      name: g.name,
      peers: g.peers.map((p) => ({
        name: p.name,
        up: p.up,
        ...(p.srttMs !== undefined ? { srttMs: p.srttMs } : {}),
        ...(p.pacingMbit !== undefined ? { pacingMbit: p.pacingMbit } : {}),
        bytesSent: p.bytesSent,
        bytesReceived: p.bytesReceived,
        retransmissions: p.retransmissions,
        datagramsSent: p.datagramsSent,
        lost: p.lost,
        flows: p.flows,
      })),
    })),
  };
}
