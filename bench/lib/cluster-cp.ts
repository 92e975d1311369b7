/**
 * Control-plane traffic of one cluster change (bench/cluster.ts), from
 * etcd's own counters: its /metrics endpoint read by the lab's control
 * client (harness/cluster/lab-ctl.ts) before and after the change, plus
 * the changes the lab's own watch on the prefix saw in that window.
 */
import type { LabCtl } from '../../harness/cluster/lab-ctl-client.js';
import { wall } from '../../harness/cluster/lab-flow.js';

export interface CpSnapshot {
  t: number;
  metrics: Record<string, number>;
}

export interface CpDelta {
  seconds: number;
  /** Key writes as etcd's MVCC store counted them (a txn that writes counts its put here too). */
  puts: number;
  deletes: number;
  /** Multi-operation transactions (compare + write, as a registration is). */
  txns: number;
  /** Watch events etcd sent, summed over every watcher (etcd_debugging_mvcc_events_total). */
  watchEvents: number;
  /** gRPC messages etcd sent on Watch streams (responses, each carrying one or more events). */
  watchResponses: number;
  /** Changes under the prefix that the lab's own watch received (one per key written or deleted). */
  changesSeen: number;
  /** gRPC requests etcd received, per method (LeaseKeepAlive counted apart: it is background). */
  rpcs: Record<string, number>;
  keepAlives: number;
  /** gRPC bytes on etcd's client port, both ways (keepalives included). */
  bytes: number;
}

export async function cpSnapshot(ctl: LabCtl): Promise<CpSnapshot> {
  return { t: wall(), metrics: await ctl.metrics() };
}

/** The first of these names etcd exposes (etcd 3.5 has etcd_mvcc_*, 3.4 only etcd_debugging_mvcc_*). */
function pick(m: Record<string, number>, names: readonly string[]): number {
  for (const n of names) if (m[n] !== undefined) return m[n];
  return NaN;
}

const PUT = ['etcd_mvcc_put_total', 'etcd_debugging_mvcc_put_total'];
const DELETE = ['etcd_mvcc_delete_total', 'etcd_debugging_mvcc_delete_total'];
const TXN = ['etcd_mvcc_txn_total', 'etcd_debugging_mvcc_txn_total'];
const EVENTS = ['etcd_debugging_mvcc_events_total'];
const RECEIVED = 'grpc_server_msg_received_total{';

/** Which counters the figures come from (for the report). */
export function cpSources(m: Record<string, number>): string {
  const name = (names: readonly string[]): string => names.find((n) => m[n] !== undefined) ?? `${names[0]} (absent)`;
  return [name(PUT), name(DELETE), name(TXN), name(EVENTS), 'grpc_server_msg_sent_total{grpc_method="Watch"}', 'grpc_server_msg_received_total by method'].join(
    ', ',
  );
}

export function cpDelta(ctl: LabCtl, a: CpSnapshot, b: CpSnapshot): CpDelta {
  const d = (names: readonly string[]): number => pick(b.metrics, names) - pick(a.metrics, names);
  const rpcs: Record<string, number> = {};
  let keepAlives = 0;
  for (const [k, v] of Object.entries(b.metrics)) {
    if (!k.startsWith(RECEIVED)) continue;
    const method = k.slice(RECEIVED.length, -1);
    const n = v - (a.metrics[k] ?? 0);
    if (method === 'LeaseKeepAlive') keepAlives = n;
    else if (n > 0) rpcs[method] = n;
  }
  const changesSeen = ctl.events().filter((e) => !e.initial && e.t >= a.t && e.t <= b.t).length;
  return {
    seconds: (b.t - a.t) / 1000,
    puts: d(PUT),
    deletes: d(DELETE),
    txns: d(TXN),
    watchEvents: d(EVENTS),
    watchResponses: (b.metrics['grpc_server_msg_sent_total{Watch}'] ?? 0) - (a.metrics['grpc_server_msg_sent_total{Watch}'] ?? 0),
    changesSeen,
    rpcs,
    keepAlives,
    bytes: d(['etcd_network_client_grpc_sent_bytes_total']) + d(['etcd_network_client_grpc_received_bytes_total']),
  };
}

/** "Put 1, Txn 2" for a list of deltas: each method's median count (methods seen in any delta). */
export function rpcSummary(deltas: readonly CpDelta[]): string {
  const methods = [...new Set(deltas.flatMap((d) => Object.keys(d.rpcs)))].sort();
  if (!methods.length) return '–';
  return methods
    .map((m) => {
      const v = deltas.map((d) => d.rpcs[m] ?? 0).sort((x, y) => x - y);
      const lo = v[0]!;
      const hi = v.at(-1)!;
      const mid = v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
      return lo === hi ? `${m} ${mid}` : `${m} ${mid} (${lo}–${hi})`;
    })
    .join(', ');
}
