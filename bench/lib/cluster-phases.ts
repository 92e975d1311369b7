/**
 * The measured parts of the cluster suite (bench/cluster.ts), each on a
 * running cluster lab (harness/cluster/lab.ts) with the `ch1` flow
 * (n1 primary ingest, n2 backup, subscribers on the edges n3 and n4) fed
 * by the lab source:
 *  - flowWrite: a flow written straight into etcd -> first datagram at each
 *    of its subscribers; then deleted -> last datagram;
 *  - edgeKill: kill -9 an edge, lease expiry -> first datagram at each moved
 *    subscriber, losses of the others; then restart and rejoin;
 *  - ingestKill: kill -9 the active ingest, lease expiry -> first datagram
 *    at every subscriber (through the other ingest); then restart.
 * Each records the etcd traffic of its change(s) (cluster-cp.ts).
 */
import type { ClusterLab, LabReceivers } from '../../harness/cluster/lab.js';
import { LAB_PREFIX } from '../../harness/cluster/lab.js';
import { between, feeders, seqStats } from '../../harness/cluster/lab-records.js';
import { SUB_PORTS, labFlow, nodeKey, portsOf, settled, sleep, wall } from '../../harness/cluster/lab-flow.js';
import { leafAddress, nodeOfAddress, type LabNodeName } from '../../harness/cluster/lab-topology.js';
import { checkClusterFlow } from '../../src/cluster/flow-store.js';
import { flowKey } from '../../src/cluster/keys.js';
import { clusterFlowJson } from '../../src/cluster/records.js';
import { cpDelta, cpSnapshot, type CpDelta } from './cluster-cp.js';

/** The written-and-deleted flows' ingest and relay ports and subscribers (apart from ch1's). */
export const BENCH_INGEST_PORT = 5010;
export const BENCH_RELAY_PORT = 5110;
export const BENCH_PORTS = [6100, 6101, 6102, 6103] as const;

export interface Ctx {
  lab: ClusterLab;
  rx: LabReceivers;
  leaseTtlS: number;
  log: (line: string) => void;
}

export interface FlowWrite {
  name: string;
  /** etcd's answer to the put, from the request. */
  putAckMs: number;
  /** Per subscriber: put sent -> first datagram. */
  firstMs: Record<number, number>;
  /** Delete sent -> the last datagram any of its subscribers got. */
  deleteToLastMs: number;
  apply: CpDelta;
  delete: CpDelta;
}

export interface SubLoss {
  port: number;
  missing: number;
  duplicates: number;
  /** Nodes that fed it in the window, in order of their first datagram. */
  feeders: string[];
}

export interface EdgeKill {
  cycle: number;
  node: LabNodeName;
  killToExpiryMs: number;
  /** Per moved subscriber: lease expiry (store watch saw the key deleted) -> first datagram from the surviving edge. */
  failoverMs: Record<number, number>;
  moved: SubLoss[];
  /** Subscribers of the surviving edge: must lose nothing and hear from it alone. */
  stayed: SubLoss[];
  failure: CpDelta;
  /** Restart -> `joined` in the node's log (a cold CLI start through tsx included). */
  restartToJoinedMs: number;
  /** On rejoin: subscribers that moved (back) to the node, and those that did not (must lose nothing). */
  rejoinMoved: SubLoss[];
  rejoinStayed: SubLoss[];
  rejoin: CpDelta;
}

export interface IngestKill {
  cycle: number;
  node: LabNodeName;
  killToExpiryMs: number;
  /** Per subscriber: lease expiry -> first datagram again (now through the other ingest). */
  failoverMs: Record<number, number>;
  lost: SubLoss[];
  failure: CpDelta;
  restartToJoinedMs: number;
  /** The old ingest's return (no preemption): every subscriber, must lose nothing. */
  returned: SubLoss[];
  rejoin: CpDelta;
}

function loss(rec: Awaited<ReturnType<LabReceivers['recording']>>, port: number, from: number, to: number): SubLoss {
  const got = between(rec.get(port) ?? [], from, to);
  const s = seqStats(got);
  const who = [...feeders(got).keys()].map((a) => nodeOfAddress(a) ?? a);
  return { port, missing: s.missing, duplicates: s.duplicates, feeders: who };
}

/** The value `sluice cluster apply` would write for this flow (checked the same way). */
function benchFlowValue(name: string): string {
  const base = labFlow(name, BENCH_PORTS);
  const input = { ...base, ingest: { ...(base.ingest as object), port: BENCH_INGEST_PORT }, relayPort: BENCH_RELAY_PORT };
  return JSON.stringify(clusterFlowJson(checkClusterFlow(input)));
}

/** Waits until none of `ports` got a datagram in the last `quietMs`; resolves with the last arrival time (NaN if none since `since`). */
async function quiet(rx: LabReceivers, ports: readonly number[], since: number, quietMs = 700, timeoutMs = 15_000): Promise<number> {
  const end = wall() + timeoutMs;
  for (;;) {
    const rec = await rx.recording();
    const now = wall();
    const last = Math.max(...ports.map((p) => (rec.get(p) ?? []).at(-1)?.t ?? -Infinity));
    if (now - last >= quietMs) return last >= since ? last : NaN;
    if (now > end) throw new Error(`subscribers ${ports.join(',')} still fed ${timeoutMs} ms after the flow was deleted`);
    await sleep(200);
  }
}

export async function flowWrite(c: Ctx, i: number): Promise<FlowWrite> {
  const { lab, rx } = c;
  const name = `bench${String(i).padStart(2, '0')}`;
  const key = flowKey(LAB_PREFIX, name);
  const s0 = await cpSnapshot(lab.ctl);
  const put = await lab.ctl.put(key, benchFlowValue(name));
  const tPut = put.t0 ?? put.t;
  const firstMs: Record<number, number> = {};
  for (const port of BENCH_PORTS) firstMs[port] = (await rx.fedBy(port, undefined, tPut, 15_000)) - tPut;
  // Anything the nodes write in answer to the change lands well within this.
  await sleep(500);
  const s1 = await cpSnapshot(lab.ctl);
  const del = await lab.ctl.delete(key);
  const tDel = del.t0 ?? del.t;
  const last = await quiet(rx, BENCH_PORTS, tDel);
  await sleep(300);
  const s2 = await cpSnapshot(lab.ctl);
  return { name, putAckMs: put.t - tPut, firstMs, deleteToLastMs: last - tDel, apply: cpDelta(lab.ctl, s0, s1), delete: cpDelta(lab.ctl, s1, s2) };
}

/** Restarts a killed node and waits until its key is back and every subscriber is fed by one node. */
async function restart(c: Ctx, node: LabNodeName): Promise<{ tStart: number; joinedMs: number }> {
  const tStart = wall();
  const n = await c.lab.startNode(node, { leaseTtlS: c.leaseTtlS });
  await c.lab.ctl.keyPut(nodeKey(node), tStart, 15_000);
  return { tStart, joinedMs: n.joinedAt - tStart };
}

/** Ports by who fed them across [from, to): one feeder (stayed) or more (moved). */
function splitByFeeders(rec: Awaited<ReturnType<LabReceivers['recording']>>, ports: readonly number[], from: number, to: number): [SubLoss[], SubLoss[]] {
  const all = ports.map((p) => loss(rec, p, from, to));
  return [all.filter((l) => l.feeders.length > 1), all.filter((l) => l.feeders.length <= 1)];
}

export async function edgeKill(c: Ctx, cycle: number, feeding: Map<number, LabNodeName>, lastVictim: LabNodeName | undefined): Promise<EdgeKill> {
  const { lab, rx } = c;
  const n3 = portsOf(feeding, 'n3').length;
  const n4 = portsOf(feeding, 'n4').length;
  // The edge that feeds more subscribers; on a tie, not the one killed last time.
  const node: LabNodeName = n3 > n4 ? 'n3' : n4 > n3 ? 'n4' : lastVictim === 'n3' ? 'n4' : 'n3';
  const other: LabNodeName = node === 'n3' ? 'n4' : 'n3';
  const movedPorts = portsOf(feeding, node);
  const stayPorts = portsOf(feeding, other);
  const s0 = await cpSnapshot(lab.ctl);
  const tKill = await lab.killNode(node);
  const tExp = await lab.ctl.keyDeleted(nodeKey(node), tKill, 20_000);
  const failoverMs: Record<number, number> = {};
  for (const port of movedPorts) failoverMs[port] = (await rx.fedBy(port, leafAddress(other), tKill, 20_000)) - tExp;
  await settled(rx, SUB_PORTS, 20_000);
  const s1 = await cpSnapshot(lab.ctl);
  const rec = await rx.recording();
  const moved = movedPorts.map((p) => loss(rec, p, tKill - 1000, s1.t));
  const stayed = stayPorts.map((p) => loss(rec, p, tKill - 1000, s1.t));
  const { tStart, joinedMs } = await restart(c, node);
  await sleep(2000);
  await settled(rx, SUB_PORTS, 20_000);
  const s2 = await cpSnapshot(lab.ctl);
  const rec2 = await rx.recording();
  const [rejoinMoved, rejoinStayed] = splitByFeeders(rec2, SUB_PORTS, tStart - 1000, s2.t);
  return {
    cycle,
    node,
    killToExpiryMs: tExp - tKill,
    failoverMs,
    moved,
    stayed,
    failure: cpDelta(lab.ctl, s0, s1),
    restartToJoinedMs: joinedMs,
    rejoinMoved,
    rejoinStayed,
    rejoin: cpDelta(lab.ctl, s1, s2),
  };
}

/** The ingest feeding ch1 now, as a node's view of the plan says. */
async function activeIngest(lab: ClusterLab): Promise<LabNodeName> {
  const status = (await lab.api('n3', '/v1/cluster')) as { flows?: { name: string; activeIngest: string | null }[] };
  const a = status.flows?.find((f) => f.name === 'ch1')?.activeIngest;
  if (a !== 'n1' && a !== 'n2') throw new Error(`no active ingest for ch1 in n3's view: ${JSON.stringify(status.flows)}`);
  return a;
}

export async function ingestKill(c: Ctx, cycle: number): Promise<IngestKill> {
  const { lab, rx } = c;
  const node = await activeIngest(lab);
  const s0 = await cpSnapshot(lab.ctl);
  const tKill = await lab.killNode(node);
  const tExp = await lab.ctl.keyDeleted(nodeKey(node), tKill, 20_000);
  const failoverMs: Record<number, number> = {};
  // A feed that restarts after more than the receiver's quiet time (500 ms; the lease alone is longer).
  for (const port of SUB_PORTS) failoverMs[port] = (await rx.fedBy(port, undefined, tKill + 600, 20_000)) - tExp;
  await settled(rx, SUB_PORTS, 20_000);
  const s1 = await cpSnapshot(lab.ctl);
  const rec = await rx.recording();
  const lost = SUB_PORTS.map((p) => loss(rec, p, tKill - 1000, s1.t));
  const { tStart, joinedMs } = await restart(c, node);
  await sleep(2000);
  await settled(rx, SUB_PORTS, 20_000);
  const s2 = await cpSnapshot(lab.ctl);
  const rec2 = await rx.recording();
  const returned = SUB_PORTS.map((p) => loss(rec2, p, tStart, s2.t));
  return {
    cycle,
    node,
    killToExpiryMs: tExp - tKill,
    failoverMs,
    lost,
    failure: cpDelta(lab.ctl, s0, s1),
    restartToJoinedMs: joinedMs,
    returned,
    rejoin: cpDelta(lab.ctl, s1, s2),
  };
}
