/**
 * The tcp-redirect flows' series (issue 22), read at scrape time from
 * each TcpRelay's counters (plain numbers in this thread for splice and
 * userspace; a sockmap relay reads its maps, one lookup per open direction). Labelled by `flow` (the
 * flow's name, or its `tcp://HOST:PORT` listen URL when it has none).
 */
import { SnapshotCounter, SnapshotGauge, type SnapshotRegistry } from './metrics-snapshot.js';
import type { TcpFlowStats } from './tcp-flows.js';

export function registerTcpMetrics(registry: SnapshotRegistry, read: () => readonly TcpFlowStats[]): void {
  const flowOf = (s: TcpFlowStats): string => s.name ?? s.listen;
  new SnapshotCounter<'flow' | 'result'>({
    name: 'sluice_tcp_connections_total',
    help: 'Connections accepted on a tcp-redirect by result: accepted (joined to its destination), refused_not_allowed, refused_over_limit (reset at accept), upstream_failed (destination unreachable in time; client reset).',
    labelNames: ['flow', 'result'],
    registry,
    read: () =>
      read().flatMap((s) => {
        const flow = flowOf(s);
        return [
          { labels: { flow, result: 'accepted' }, value: s.accepted },
          { labels: { flow, result: 'refused_not_allowed' }, value: s.refused.notAllowed },
          { labels: { flow, result: 'refused_over_limit' }, value: s.refused.overLimit },
          { labels: { flow, result: 'upstream_failed' }, value: s.upstreamFailed },
        ];
      }),
  });
  new SnapshotCounter<'flow' | 'end'>({
    name: 'sluice_tcp_closed_connections_total',
    help: 'Joined connections of a tcp-redirect that ended, by how: closed (both sides), reset (either side), idle (idleTimeoutMs).',
    labelNames: ['flow', 'end'],
    registry,
    read: () =>
      read().flatMap((s) => {
        const flow = flowOf(s);
        return [
          { labels: { flow, end: 'closed' }, value: s.closed },
          { labels: { flow, end: 'reset' }, value: s.resets },
          { labels: { flow, end: 'idle' }, value: s.idleClosed },
        ];
      }),
  });
  new SnapshotGauge<'flow'>({
    name: 'sluice_tcp_active_connections',
    help: 'Joined connections of a tcp-redirect open now (those still connecting to the destination included).',
    labelNames: ['flow'],
    registry,
    read: () => read().map((s) => ({ labels: { flow: flowOf(s) }, value: s.active })),
  });
  new SnapshotCounter<'flow' | 'direction'>({
    name: 'sluice_tcp_bytes_total',
    help: 'Bytes a tcp-redirect moved: to_upstream (client to destination) and to_client.',
    labelNames: ['flow', 'direction'],
    registry,
    read: () =>
      read().flatMap((s) => {
        const flow = flowOf(s);
        return [
          { labels: { flow, direction: 'to_upstream' }, value: s.bytesToUpstream },
          { labels: { flow, direction: 'to_client' }, value: s.bytesToClient },
        ];
      }),
  });
  new SnapshotCounter<'flow' | 'path'>({
    name: 'sluice_tcp_sockmap_bytes_total',
    help: "A sockmap tcp-redirect's bytes by who moved them: kernel (redirected socket to socket by the verdict program) or node (forwarded by Node: before a direction was armed, or while a slow reader throttled it).",
    labelNames: ['flow', 'path'],
    registry,
    read: () =>
      read().flatMap((s) => {
        if (!s.sockmap) return [];
        const flow = flowOf(s);
        return [
          { labels: { flow, path: 'kernel' }, value: s.sockmap.kernelBytes },
          { labels: { flow, path: 'node' }, value: s.sockmap.userBytes },
        ];
      }),
  });
  new SnapshotCounter<'flow'>({
    name: 'sluice_tcp_sockmap_throttles_total',
    help: "Times a sockmap tcp-redirect's direction was throttled back to Node because the peer's backlog in the kernel reached the limit (a slow reader).",
    labelNames: ['flow'],
    registry,
    read: () => read().flatMap((s) => (s.sockmap ? [{ labels: { flow: flowOf(s) }, value: s.sockmap.throttles }] : [])),
  });
}
