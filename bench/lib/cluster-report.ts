/**
 * The cluster suite's results (bench/cluster.ts): summaries (medians,
 * spreads, maxima over the repeated changes) and the markdown and JSON
 * files in bench/results/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rpcSummary, type CpDelta } from './cluster-cp.js';
import type { EdgeKill, FlowWrite, IngestKill, SubLoss } from './cluster-phases.js';
import { spread, type Spread } from './stats.js';

export interface ClusterRun {
  startedAt: string;
  finishedAt: string;
  durationS: number;
  complete: boolean;
  machine: Record<string, unknown>;
  etcd: string;
  options: { leaseTtlS: number; rate: number; size: number; kills: number; ingestKills: number; flowWrites: number; maxMinutes: number };
  cpSources: string;
  /** Setup: ch1 applied with the real CLI (`sluice cluster apply`). */
  cliApply?: CpDelta;
  /** No change at all, for the background rates. */
  idle?: CpDelta;
  flowWrites: FlowWrite[];
  edgeKills: EdgeKill[];
  ingestKills: IngestKill[];
  errors: string[];
  notes: string[];
}

const vals = (r: Record<number, number>): number[] => Object.values(r);
const max = (v: readonly number[]): number => (v.length ? Math.max(...v) : NaN);
const min = (v: readonly number[]): number => (v.length ? Math.min(...v) : NaN);
const sum = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0);

function fmt(s: Spread | undefined, digits = 0): string {
  if (!s) return '–';
  const f = (x: number): string => x.toFixed(digits);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)}, IQR ${f(s.iqr)}, n ${s.n})`;
}

export interface ClusterSummary {
  flowAllFedMs?: Spread;
  flowFirstFedMs?: Spread;
  flowPerSubscriberMs?: Spread;
  flowPutAckMs?: Spread;
  flowDeleteToLastMs?: Spread;
  edgeFailoverWorstMs?: Spread;
  edgeFailoverPerSubscriberMs?: Spread;
  edgeKillToExpiryMs?: Spread;
  edgeMovedLost?: Spread;
  edgeStayedLostTotal: number;
  edgeStayedOtherFeeder: number;
  edgeRejoinMoved?: Spread;
  edgeRejoinStayedLostTotal: number;
  edgeRejoinMovedLost?: Spread;
  edgeRestartToJoinedMs?: Spread;
  ingestFailoverWorstMs?: Spread;
  ingestFailoverPerSubscriberMs?: Spread;
  ingestKillToExpiryMs?: Spread;
  ingestLost?: Spread;
  ingestReturnLostTotal: number;
}

const lostOf = (l: readonly SubLoss[]): number => sum(l.map((x) => x.missing));

export function summarize(r: ClusterRun): ClusterSummary {
  const e = r.edgeKills;
  const g = r.ingestKills;
  return {
    flowAllFedMs: spread(r.flowWrites.map((w) => max(vals(w.firstMs)))),
    flowFirstFedMs: spread(r.flowWrites.map((w) => min(vals(w.firstMs)))),
    flowPerSubscriberMs: spread(r.flowWrites.flatMap((w) => vals(w.firstMs))),
    flowPutAckMs: spread(r.flowWrites.map((w) => w.putAckMs)),
    flowDeleteToLastMs: spread(r.flowWrites.map((w) => w.deleteToLastMs)),
    edgeFailoverWorstMs: spread(e.map((k) => max(vals(k.failoverMs)))),
    edgeFailoverPerSubscriberMs: spread(e.flatMap((k) => vals(k.failoverMs))),
    edgeKillToExpiryMs: spread(e.map((k) => k.killToExpiryMs)),
    edgeMovedLost: spread(e.flatMap((k) => k.moved.map((m) => m.missing))),
    edgeStayedLostTotal: sum(e.map((k) => lostOf(k.stayed) + sum(k.stayed.map((s) => s.duplicates)))),
    edgeStayedOtherFeeder: sum(e.map((k) => k.stayed.filter((s) => s.feeders.length !== 1).length)),
    edgeRejoinMoved: spread(e.map((k) => k.rejoinMoved.length)),
    edgeRejoinStayedLostTotal: sum(e.map((k) => lostOf(k.rejoinStayed) + sum(k.rejoinStayed.map((s) => s.duplicates)))),
    edgeRejoinMovedLost: spread(e.flatMap((k) => k.rejoinMoved.map((m) => m.missing))),
    edgeRestartToJoinedMs: spread(e.map((k) => k.restartToJoinedMs)),
    ingestFailoverWorstMs: spread(g.map((k) => max(vals(k.failoverMs)))),
    ingestFailoverPerSubscriberMs: spread(g.flatMap((k) => vals(k.failoverMs))),
    ingestKillToExpiryMs: spread(g.map((k) => k.killToExpiryMs)),
    ingestLost: spread(g.flatMap((k) => k.lost.map((m) => m.missing))),
    ingestReturnLostTotal: sum(g.map((k) => lostOf(k.returned) + sum(k.returned.map((s) => s.duplicates)))),
  };
}

function cpRow(what: string, deltas: readonly CpDelta[], idle: CpDelta | undefined): string {
  const idleBps = idle ? idle.bytes / idle.seconds : 0;
  if (!deltas.length) return `| ${what} | 0 | | | | | | | | | |`;
  const s = (f: (d: CpDelta) => number, digits = 0): string => {
    const sp = spread(deltas.map(f));
    if (!sp) return '–';
    return sp.min === sp.max ? sp.median.toFixed(digits) : `${sp.median.toFixed(digits)} (${sp.min.toFixed(digits)}–${sp.max.toFixed(digits)})`;
  };
  return `| ${what} | ${deltas.length} | ${s((d) => d.puts)} | ${s((d) => d.deletes)} | ${s((d) => d.txns)} | ${s((d) => d.changesSeen)} | ${s((d) => d.watchEvents)} | ${s((d) => d.watchResponses)} | ${rpcSummary(deltas)} | ${s((d) => d.bytes - idleBps * d.seconds)} | ${s((d) => d.seconds, 1)} |`;
}

function perKillRows(r: ClusterRun): string[] {
  const rows = r.edgeKills.map((k) => {
    const f = vals(k.failoverMs);
    return `| edge ${k.cycle} | ${k.node} | ${k.killToExpiryMs.toFixed(0)} | ${f.map((x) => x.toFixed(0)).join(', ')} | ${k.moved.map((m) => m.missing).join(', ')} | ${k.stayed.length}: ${lostOf(k.stayed)} lost, ${sum(k.stayed.map((s) => s.duplicates))} dup | ${k.restartToJoinedMs.toFixed(0)} | ${k.rejoinMoved.length} moved (lost ${k.rejoinMoved.map((m) => m.missing).join(', ') || '–'}; dup ${k.rejoinMoved.map((m) => m.duplicates).join(', ') || '–'}), ${k.rejoinStayed.length} stayed: ${lostOf(k.rejoinStayed)} lost |`;
  });
  for (const k of r.ingestKills) {
    const f = vals(k.failoverMs);
    rows.push(
      `| ingest ${k.cycle} | ${k.node} | ${k.killToExpiryMs.toFixed(0)} | ${f.map((x) => x.toFixed(0)).join(', ')} | ${k.lost.map((m) => m.missing).join(', ')} | – | ${k.restartToJoinedMs.toFixed(0)} | return: ${lostOf(k.returned)} lost, ${sum(k.returned.map((s) => s.duplicates))} dup over ${k.returned.length} |`,
    );
  }
  return rows;
}

export function clusterMarkdown(r: ClusterRun, s: ClusterSummary): string {
  const m = r.machine;
  const o = r.options;
  const L: string[] = [];
  L.push(`# Cluster suite (issue 21): failover, flow write → first packet, control-plane traffic`, '');
  L.push(`${r.startedAt} – ${r.finishedAt} (${(r.durationS / 60).toFixed(1)} min)${r.complete ? '' : ' — **incomplete**'}.`, '');
  L.push(
    `Machine: ${String(m.cpuModel)}, **${String(m.cores)} cores**, ${String(m.memGiB)} GiB, kernel ${String(m.kernel)}, ${String(m.os)}, Node ${String(m.node)}; load average at start ${String(m.loadStart)}, at end ${String(m.loadEnd)} (other jobs share the host).`,
  );
  L.push(`etcd ${r.etcd}, one member, in its own namespace.`, '');
  L.push(
    `Lab: harness/cluster/lab.ts — router, etcd, 4 × \`sluice serve --cluster\` (portable tier, CLI from source through tsx), source and subscribers, each in its own network namespace. Flow \`ch1\`: n1 primary ingest, n2 backup, 6 subscribers placed on the edges n3 and n4; the source sends ${o.rate} numbered datagrams/s of ${o.size} B to both ingest nodes. **Lease TTL ${o.leaseTtlS} s** on every node.`,
  );
  L.push(
    `Lease expiry = when the lab's watch on the prefix (lab-ctl.ts, in etcd's namespace) received the delete of the node key. First datagram = arrival time at the subscriber socket (same host clock). Figures include the wait for the next source datagram (up to ${(1000 / o.rate).toFixed(0)} ms at ${o.rate}/s). "p50" is the median (interpolated), spreads are min–max and IQR over the repeated changes.`,
    '',
  );
  L.push(`## Failover: lease expiry → first datagram at each moved subscriber`, '');
  L.push(`| | p50 (min–max, IQR, n) ms | max ms |`, `|---|---|---|`);
  const row = (what: string, sp: Spread | undefined, digits = 0): string => `| ${what} | ${fmt(sp, digits)} | ${sp ? sp.max.toFixed(digits) : '–'} |`;
  L.push(row(`edge kill -9, per kill: the last moved subscriber fed (${r.edgeKills.length} kills)`, s.edgeFailoverWorstMs));
  L.push(row('edge kill -9, every moved subscriber pooled', s.edgeFailoverPerSubscriberMs));
  L.push(row('edge: kill → lease expiry', s.edgeKillToExpiryMs));
  L.push(row('edge: datagrams lost per moved subscriber', s.edgeMovedLost));
  L.push(row('edge: restart → joined (cold CLI start)', s.edgeRestartToJoinedMs));
  L.push(row(`ingest kill -9 (active ingest), per kill: the last subscriber fed (${r.ingestKills.length} kills)`, s.ingestFailoverWorstMs));
  L.push(row('ingest kill -9, every subscriber pooled', s.ingestFailoverPerSubscriberMs));
  L.push(row('ingest: kill → lease expiry', s.ingestKillToExpiryMs));
  L.push(row('ingest: datagrams lost per subscriber', s.ingestLost), '');
  L.push(
    `Subscribers that did **not** move on an edge kill: **${s.edgeStayedLostTotal}** datagrams lost or duplicated in total (must be 0), ${s.edgeStayedOtherFeeder} fed by anyone but the surviving edge (must be 0).`,
  );
  L.push(
    `Rejoin of the killed edge: ${fmt(s.edgeRejoinMoved)} subscribers moved back per rejoin (lost per mover ${fmt(s.edgeRejoinMovedLost)}); those that did not move: **${s.edgeRejoinStayedLostTotal}** lost or duplicated in total (must be 0).`,
  );
  if (r.ingestKills.length)
    L.push(`Return of a killed ingest (no preemption): **${s.ingestReturnLostTotal}** datagrams lost or duplicated in total (must be 0).`);
  L.push('');
  L.push(`## Flow written to the store → first datagram at its subscribers (${r.flowWrites.length} writes)`, '');
  L.push(
    `A flow (4 subscribers, ingest n1/n2, its own ports) written straight into etcd with the value \`sluice cluster apply\` writes, measured from the put request; the source already sends to its ingest port. Then deleted and waited out before the next (each write has a new name).`,
    '',
  );
  L.push(`| | p50 (min–max, IQR, n) ms | max ms |`, `|---|---|---|`);
  L.push(row('per write: all its subscribers fed', s.flowAllFedMs));
  L.push(row('per write: first subscriber fed', s.flowFirstFedMs));
  L.push(row('every subscriber pooled', s.flowPerSubscriberMs));
  L.push(row('etcd answers the put', s.flowPutAckMs, 1));
  L.push(row('delete → last datagram at its subscribers', s.flowDeleteToLastMs), '');
  L.push(`## Control-plane traffic per change`, '');
  L.push(
    `Deltas of etcd's /metrics counters (${r.cpSources}) read before and after each change settled, and the changes the lab's own watch saw. "Watch events" are summed over every watcher: 4 nodes and the lab's watch. Medians (min–max) over the changes. LeaseKeepAlive requests are background and listed apart; client-port bytes (gRPC, both ways) are given above the idle window's rate, which is mostly keepalives.`,
    '',
  );
  L.push(
    `| change | n | puts | deletes | txns | changes seen | watch events | Watch responses | RPCs received (median) | client-port bytes above idle | window s |`,
    `|---|---|---|---|---|---|---|---|---|---|---|`,
  );
  L.push(
    cpRow(
      'flow apply (direct put)',
      r.flowWrites.map((w) => w.apply),
      r.idle,
    ),
  );
  L.push(
    cpRow(
      'flow delete',
      r.flowWrites.map((w) => w.delete),
      r.idle,
    ),
  );
  if (r.cliApply) L.push(cpRow('flow apply via `sluice cluster apply` (setup)', [r.cliApply], r.idle));
  L.push(
    cpRow(
      'edge failure (kill → settled)',
      r.edgeKills.map((k) => k.failure),
      r.idle,
    ),
  );
  L.push(
    cpRow(
      'edge rejoin (restart → settled)',
      r.edgeKills.map((k) => k.rejoin),
      r.idle,
    ),
  );
  L.push(
    cpRow(
      'ingest failure',
      r.ingestKills.map((k) => k.failure),
      r.idle,
    ),
  );
  L.push(
    cpRow(
      'ingest return',
      r.ingestKills.map((k) => k.rejoin),
      r.idle,
    ),
  );
  if (r.idle) L.push(cpRow('nothing (idle window; bytes raw)', [r.idle], undefined));
  if (r.idle)
    L.push(
      '',
      `Background: ${(r.idle.keepAlives / r.idle.seconds).toFixed(1)} LeaseKeepAlive requests/s and ${(r.idle.bytes / r.idle.seconds).toFixed(0)} client-port bytes/s for 4 nodes (TTL ${o.leaseTtlS} s).`,
    );
  L.push(
    '',
    'The counters: a registration is a compare-and-put Txn RPC, which etcd_mvcc_txn_total does not count (it counts only transactions of several MVCC operations) but the put counter does (a rejoining node also reads the prefix, Range, and opens its watch); a lease expiry is one delete without any request. Negative bytes: the dead node stopped its keepalives during the window.',
  );
  L.push('', `## Every kill`, '');
  L.push(
    `| kill | node | kill → expiry ms | failover ms per moved subscriber | lost per moved subscriber | not moved | restart → joined ms | rejoin |`,
    `|---|---|---|---|---|---|---|---|`,
    ...perKillRows(r),
  );
  if (r.notes.length || r.errors.length) L.push('', '## Notes', '', ...r.notes.map((n) => `- ${n}`), ...r.errors.map((e) => `- error: ${e}`));
  return `${L.join('\n')}\n`;
}

export function writeClusterResults(outDir: string, stamp: string, r: ClusterRun): { md: string; json: string } {
  mkdirSync(outDir, { recursive: true });
  const s = summarize(r);
  const md = join(outDir, `${stamp}-cluster.md`);
  const json = join(outDir, `${stamp}-cluster.json`);
  writeFileSync(md, clusterMarkdown(r, s));
  writeFileSync(json, `${JSON.stringify({ ...r, summary: s }, null, 2)}\n`);
  return { md, json };
}
