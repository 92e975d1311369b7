/**
 * Shared pieces of the cluster failover tests (test/cluster/failover.test.ts) and the
 * cluster bench (bench/cluster.ts): the lab's flow (n1 primary ingest, n2 backup, six
 * subscribers the placement puts on the edges n3 and n4) and questions
 * about who fed which subscriber when.
 */
import { between, soleFeeder, type Recording } from './lab-records.js';
import type { ClusterLab, LabReceivers } from './lab.js';
import { leafAddress, nodeOfAddress, type LabNodeName } from './lab-topology.js';

export const INGEST_PORT = 5000;
/** Edges listen here for the hop from the ingest (apart from the ingest port, in case an ingest node also serves subscribers). */
export const RELAY_PORT = 5100;
export const SUB_PORTS = [6000, 6001, 6002, 6003, 6004, 6005] as const;
export const RATE = 200;

/** The lab flow as `sluice cluster apply` takes it. */
export function labFlow(name = 'ch1', ports: readonly number[] = SUB_PORTS): Record<string, unknown> {
  return {
    name,
    ingest: { primary: 'n1', backup: 'n2', port: INGEST_PORT, allow: `${leafAddress('src')}/32` },
    relayPort: RELAY_PORT,
    subscribers: ports.map((p) => `${leafAddress('subs')}:${p}`),
  };
}

/** Where the source sends: primary and backup ingest. */
export function ingestTargets(): string[] {
  return [`${leafAddress('n1')}:${INGEST_PORT}`, `${leafAddress('n2')}:${INGEST_PORT}`];
}

/** Per port, the one node that fed it in [from, to), or undefined (none, several, or not a node). */
export function feederMap(rec: Recording, ports: readonly number[], from: number, to: number): Map<number, LabNodeName | undefined> {
  const m = new Map<number, LabNodeName | undefined>();
  for (const p of ports) {
    const f = soleFeeder(between(rec.get(p) ?? [], from, to));
    m.set(p, f === undefined ? undefined : nodeOfAddress(f));
  }
  return m;
}

export const wall = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until every port is fed by exactly one node over the last `windowMs`; returns that map. */
export async function settled(rx: LabReceivers, ports: readonly number[], timeoutMs = 20_000, windowMs = 1000): Promise<Map<number, LabNodeName>> {
  const end = Date.now() + timeoutMs;
  let last = new Map<number, LabNodeName | undefined>();
  for (;;) {
    await sleep(windowMs);
    const now = wall();
    last = feederMap(await rx.recording(), ports, now - windowMs, now);
    if ([...last.values()].every((n) => n !== undefined)) return last as Map<number, LabNodeName>;
    if (Date.now() > end) {
      throw new Error(`subscribers not each fed by exactly one node within ${timeoutMs} ms: ${JSON.stringify([...last])}`);
    }
  }
}

/** Ports whose feeder was `node`. */
export function portsOf(map: ReadonlyMap<number, LabNodeName | undefined>, node: LabNodeName): number[] {
  return [...map].filter(([, n]) => n === node).map(([p]) => p);
}

/** The node key of `name` under the lab's prefix. */
export function nodeKey(name: LabNodeName): string {
  return `/sluice/nodes/${name}`;
}

/** Starts n1..n4 at once (cold starts overlap), each with its lease TTL (undefined: the default). */
export async function startAllNodes(lab: ClusterLab, ttl: Partial<Record<LabNodeName, number>>): Promise<void> {
  await Promise.all((['n1', 'n2', 'n3', 'n4'] as const).map((n) => lab.startNode(n, ttl[n] !== undefined ? { leaseTtlS: ttl[n] } : {})));
}
