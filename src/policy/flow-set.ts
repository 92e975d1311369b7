/**
 * Checks that span the flows of one Sluice instance: unique names, listen
 * addresses that do not overlap, subscribers listed once, and no relay
 * loop. `sluice validate`, `sluice run` (through the config parser) and
 * the library's policy table (Sluice.apply, Flow.update, against the flows
 * already running) all call flowSetIssues, so a file that validates is
 * one that runs.
 *
 * A relay loop: a flow's subscriber is a listen address of this host (its
 * own, or another flow's), and following subscribers from flow to flow
 * comes back. One datagram would then circulate forever, each pass
 * making copies. A subscriber reaches a listen address when the ports
 * are equal and the address is the same (IPv4-mapped IPv6 counted as the
 * IPv4 address), or the listen address is a wildcard and the subscriber
 * is any address of this host: 127.0.0.0/8, ::1, 0.0.0.0 and :: (which
 * the kernel delivers locally) and every interface address (HostAddresses,
 * which the caller reads; this module stays pure). A chain without a cycle
 * (flow A feeds flow B, which feeds elsewhere) is allowed. Not detected
 * here: loops through multicast or broadcast, or through other hosts.
 */
import { mediaIssues } from './media-rules.js';
import { isIPv4, isIPv6 } from 'node:net';
import { endpointKey, formatEndpoint, isWildcard, type Endpoint } from '../wire/endpoint.js';
import { ipv6Bytes, formatIpv6 } from '../wire/ip-address.js';
import type { FlowPolicySpec } from './schema.js';
import type { PolicyIssue } from '../errors.js';

/** This host's interface addresses, as keys from addressKey(). */
export interface HostAddresses {
  readonly addresses: ReadonlySet<string>;
}

/** Only what is local on every host: loopback and the unspecified addresses. */
export const NO_HOST_ADDRESSES: HostAddresses = { addresses: new Set() };

/** One flow of the set. */
export interface FlowInSet {
  /** The flow's name, given or assigned; undefined for an unnamed flow of a config file. */
  readonly name?: string;
  /** Prefix for field paths: `flows[2]` in a config file, '' for a library call. */
  readonly where: string;
  readonly spec: FlowPolicySpec;
  /** The listen address as bound, when known (a port 0 replaced by the OS's pick). */
  readonly listen?: Endpoint;
}

export type FlowSetIssueKind = 'name' | 'listen' | 'subscriber' | 'loop';

export interface FlowSetIssue extends PolicyIssue {
  readonly kind: FlowSetIssueKind;
  /** Indexes (into the set) of the flows the issue concerns. */
  readonly flows: readonly number[];
}

/**
 * The key an address compares by: IPv4 dotted, IPv6 in RFC 5952 form
 * without a zone, IPv4-mapped IPv6 as its IPv4 address (a dual-stack
 * socket sends ::ffff:a.b.c.d to a.b.c.d).
 */
export function addressKey(address: string): string {
  if (isIPv4(address)) return address;
  const bare = address.split('%')[0]!;
  if (!isIPv6(bare)) return address;
  const b = ipv6Bytes(bare);
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return formatIpv6(b);
}

/** The host's addresses from os.networkInterfaces()-shaped data. */
export function hostAddressesFrom(interfaces: Readonly<Record<string, readonly { address: string }[] | undefined>>): HostAddresses {
  const addresses = new Set<string>();
  for (const list of Object.values(interfaces)) for (const a of list ?? []) addresses.add(addressKey(a.address));
  return { addresses };
}

/** True when a datagram sent to `key` stays on this host. */
function isLocal(key: string, host: HostAddresses): boolean {
  if (isIPv4(key)) return key.startsWith('127.') || key === '0.0.0.0' || host.addresses.has(key);
  return key === '::1' || key === '::' || host.addresses.has(key);
}

/** True when a datagram sent to `to` arrives at a socket bound to `listen`. */
export function reaches(to: Endpoint, listen: Endpoint, host: HostAddresses): boolean {
  if (listen.port === 0 || to.port !== listen.port) return false;
  const dst = addressKey(to.address);
  if (isWildcard(listen)) {
    // `0.0.0.0` takes IPv4 only; `::` is dual-stack and takes both.
    if (listen.family === 4 && !isIPv4(dst)) return false;
    return isLocal(dst, host);
  }
  // The unspecified address as a destination is this host (Linux sends it to a local address).
  return dst === addressKey(listen.address) || dst === '0.0.0.0' || dst === '::';
}

/** Two listen addresses that cannot both be bound by one instance (same port; same address, or a wildcard taking the other). */
export function listensOverlap(a: Endpoint, b: Endpoint): boolean {
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return false;
  const sameFamily = a.family === b.family;
  return (
    (sameFamily && (endpointKey(a) === endpointKey(b) || isWildcard(a) || isWildcard(b))) ||
    // A `::` socket is dual-stack: it also takes IPv4 datagrams on its port.
    (!sameFamily && ((a.family === 6 && isWildcard(a)) || (b.family === 6 && isWildcard(b))))
  );
}

function destinationsOf(spec: FlowPolicySpec): readonly Endpoint[] {
  return spec.type === 'redirect' ? [spec.to] : spec.to;
}

function toPath(spec: FlowPolicySpec, where: string, i: number): string {
  const field = spec.type === 'redirect' ? 'to' : `to[${i}]`;
  return where ? `${where}.${field}` : field;
}

/**
 * A flow's own subscriber list: each subscriber once, none its own listen
 * address. Paths are relative to the flow (`to[1]`).
 */
export function subscriberIssues(spec: FlowPolicySpec, where = ''): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const seen = new Map<string, number>();
  const listenKey = endpointKey(spec.listen);
  destinationsOf(spec).forEach((d, i) => {
    const path = toPath(spec, where, i);
    const key = endpointKey(d);
    const prev = seen.get(key);
    if (prev !== undefined) issues.push({ path, message: `${formatEndpoint(d)} is listed twice (also to[${prev}])` });
    else seen.set(key, i);
    if (key === listenKey) issues.push({ path, message: `${formatEndpoint(d)} is the flow's own listen address (a loop)` });
  });
  return issues;
}

/** Most loop issues reported for one set (each names a whole cycle). */
const MAX_LOOP_ISSUES = 20;

/**
 * Every problem of the set. `only`, when given, keeps the issues that
 * concern that flow (the policy table checks one new or changed flow
 * against those already running, which passed before).
 */
export function flowSetIssues(flows: readonly FlowInSet[], host: HostAddresses = NO_HOST_ADDRESSES, only?: number): FlowSetIssue[] {
  const issues: FlowSetIssue[] = [];
  const concerns = (ids: readonly number[]) => only === undefined || ids.includes(only);
  const label = (i: number) => {
    const f = flows[i]!;
    return f.name !== undefined ? `flow '${f.name}'` : f.where || 'the flow';
  };
  const listenOf = (i: number) => flows[i]!.listen ?? flows[i]!.spec.listen;
  const at = (where: string, field: string) => (where ? `${where}.${field}` : field);

  // Names.
  const names = new Map<string, number>();
  flows.forEach((f, i) => {
    if (f.name === undefined) return;
    const prev = names.get(f.name);
    if (prev === undefined) names.set(f.name, i);
    else if (concerns([prev, i])) {
      const other = flows[prev]!.where ? `${flows[prev]!.where}` : 'a running flow';
      issues.push({ kind: 'name', flows: [prev, i], path: at(f.where, 'name'), message: `'${f.name}' is already used by ${other}` });
    }
  });

  // Listen addresses, pair by pair within each port.
  const byPort = new Map<number, number[]>();
  flows.forEach((_, i) => {
    const port = listenOf(i).port;
    if (port === 0) return;
    const list = byPort.get(port);
    if (list) list.push(i);
    else byPort.set(port, [i]);
  });
  for (const ids of byPort.values()) {
    for (let b = 1; b < ids.length; b++) {
      for (let a = 0; a < b; a++) {
        const i = ids[a]!;
        const j = ids[b]!;
        if (!concerns([i, j]) || !listensOverlap(listenOf(i), listenOf(j))) continue;
        const [mine, other] = only === i ? [i, j] : [j, i];
        issues.push({
          kind: 'listen',
          flows: [other, mine],
          path: at(flows[mine]!.where, 'listen'),
          message: `${formatEndpoint(listenOf(mine))} overlaps ${label(other)} on ${formatEndpoint(listenOf(other))}`,
        });
      }
    }
  }

  // Each flow's own subscribers.
  flows.forEach((f, i) => {
    if (!concerns([i])) return;
    for (const iss of [...subscriberIssues(f.spec, f.where), ...mediaIssues(f.spec, f.where)]) issues.push({ kind: 'subscriber', flows: [i], ...iss });
  });

  // Loops: a cycle of edges from a flow to each flow one of its subscribers reaches.
  const edges = feedEdges(flows, host);
  const component = stronglyConnected(edges.map((list) => list.map((e) => e.to)));
  let loops = 0;
  for (const list of edges) {
    for (const e of list) {
      if (component[e.from] !== component[e.to] || loops >= MAX_LOOP_ISSUES) continue;
      // For one flow, its own subscribers that close a loop: each such loop leaves it by one of them.
      if (only !== undefined && e.from !== only) continue;
      const cycle = [e.from, ...pathWithin(edges, component, e.to, e.from)];
      loops++;
      const d = destinationsOf(flows[e.from]!.spec)[e.dest]!;
      const via = `${formatEndpoint(d)} reaches ${e.to === e.from ? "the flow's own listen address" : label(e.to)} ${formatEndpoint(listenOf(e.to))}`;
      const around = cycle.length > 1 ? `: ${[...cycle, e.from].map(label).join(' → ')}` : '';
      issues.push({ kind: 'loop', flows: cycle, path: toPath(flows[e.from]!.spec, flows[e.from]!.where, e.dest), message: `${via}, a relay loop${around}` });
    }
  }
  return issues;
}

interface FeedEdge {
  readonly from: number;
  /** Index of the subscriber in the flow's list. */
  readonly dest: number;
  readonly to: number;
}

/** For each flow, the flows its subscribers reach (by listen address, as bound where known). */
function feedEdges(flows: readonly FlowInSet[], host: HostAddresses): FeedEdge[][] {
  const listenOf = (i: number) => flows[i]!.listen ?? flows[i]!.spec.listen;
  const byPort = new Map<number, number[]>();
  flows.forEach((_, i) => {
    const port = listenOf(i).port;
    if (port !== 0) byPort.set(port, [...(byPort.get(port) ?? []), i]);
  });
  return flows.map((f, i) => {
    const out: FeedEdge[] = [];
    destinationsOf(f.spec).forEach((d, dest) => {
      for (const j of byPort.get(d.port) ?? []) {
        if (!reaches(d, listenOf(j), host)) continue;
        // An exact self-loop is reported with the flow's subscribers.
        if (j === i && endpointKey(d) === endpointKey(f.spec.listen)) continue;
        out.push({ from: i, dest, to: j });
      }
    });
    return out;
  });
}

/**
 * The flows in an order to start or change them one at a time without
 * ever closing a loop on the way, when the whole set is loop-free: each
 * flow after every flow it feeds (sinks first). Changing a flow only
 * after everything it will feed has its final form means a cycle could
 * only run through flows still in their old form, which had none.
 */
export function sinksFirst(flows: readonly FlowInSet[], host: HostAddresses = NO_HOST_ADDRESSES): number[] {
  const component = stronglyConnected(feedEdges(flows, host).map((list) => list.map((e) => e.to)));
  // Tarjan numbers components in reverse topological order: sinks first.
  return flows.map((_, i) => i).sort((a, b) => component[a]! - component[b]! || a - b);
}

/** Tarjan's strongly connected components, without recursion: component id per node. */
function stronglyConnected(adj: readonly (readonly number[])[]): number[] {
  const n = adj.length;
  const index = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const onStack = new Array<boolean>(n).fill(false);
  const comp = new Array<number>(n).fill(-1);
  const stack: number[] = [];
  let next = 0;
  let comps = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    const work: [number, number][] = [[root, 0]];
    while (work.length) {
      const top = work[work.length - 1]!;
      const [v, k] = top;
      if (k === 0 && index[v] === -1) {
        index[v] = low[v] = next++;
        stack.push(v);
        onStack[v] = true;
      }
      if (k < adj[v]!.length) {
        top[1] = k + 1;
        const w = adj[v]![k]!;
        if (index[w] === -1) work.push([w, 0]);
        else if (onStack[w]) low[v] = Math.min(low[v]!, index[w]!);
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]![0];
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] === index[v]) {
        for (;;) {
          const w = stack.pop()!;
          onStack[w] = false;
          comp[w] = comps;
          if (w === v) break;
        }
        comps++;
      }
    }
  }
  return comp;
}

/** The nodes after `from` on a shortest path from `from` to `to` inside one component (breadth first). */
function pathWithin(edges: readonly { to: number }[][], component: readonly number[], from: number, to: number): number[] {
  if (from === to) return [];
  const prev = new Map<number, number>([[from, from]]);
  const queue = [from];
  for (let q = 0; q < queue.length; q++) {
    const v = queue[q]!;
    for (const e of edges[v]!) {
      if (component[e.to] !== component[from] || prev.has(e.to)) continue;
      prev.set(e.to, v);
      if (e.to === to) {
        const path: number[] = [];
        for (let x = to; x !== from; x = prev.get(x)!) path.unshift(x);
        return [from, ...path].slice(0, -1);
      }
      queue.push(e.to);
    }
  }
  return [from];
}
