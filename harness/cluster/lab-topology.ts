/**
 * The address plan of the cluster lab (harness/cluster/lab.ts): a router
 * namespace with a veth to every other namespace, each leaf on its own
 * /24 `10.210.<i>.0/24` (router .1, leaf .2) with a default route via the
 * router. Pure: the spec and the addresses, no I/O, so tests and the bench
 * can name addresses before anything exists.
 */
import type { TopologySpec } from '../netns/netns.js';

/** Sluice nodes of the lab, in order; each runs `sluice serve --cluster`. */
export const LAB_NODES = ['n1', 'n2', 'n3', 'n4'] as const;
export type LabNodeName = (typeof LAB_NODES)[number];

/** Third octet of each leaf's /24. Nodes 11..14, so a node's address names it. */
const SUBNET: Readonly<Record<string, number>> = { etcd: 1, n1: 11, n2: 12, n3: 13, n4: 14, src: 20, subs: 30 };

/** Leaf namespaces (all but the router). */
export const LAB_LEAVES = ['etcd', ...LAB_NODES, 'src', 'subs'] as const;
export type LabLeaf = (typeof LAB_LEAVES)[number];

/** etcd's client port inside its namespace. */
export const ETCD_CLIENT_PORT = 2379;
/** Each node's HTTP API port (on its lab address). */
export const NODE_API_PORT = 7600;

/** The leaf's address, e.g. `10.210.13.2` for n3. */
export function leafAddress(leaf: LabLeaf): string {
  return `10.210.${SUBNET[leaf]}.2`;
}

/** The router's address on the leaf's /24. */
export function routerAddress(leaf: LabLeaf): string {
  return `10.210.${SUBNET[leaf]}.1`;
}

/** The node whose lab address this is, or undefined (e.g. a receiver reading a datagram's source). */
export function nodeOfAddress(address: string): LabNodeName | undefined {
  return LAB_NODES.find((n) => leafAddress(n) === address);
}

/** `etcd://10.210.1.2:2379`, what `--cluster` takes. */
export function etcdUrl(): string {
  return `etcd://${leafAddress('etcd')}:${ETCD_CLIENT_PORT}`;
}

/** The topology: router with forwarding, a veth to each leaf, default routes via the router. */
export function labTopologySpec(): TopologySpec {
  return {
    namespaces: ['router', ...LAB_LEAVES],
    links: LAB_LEAVES.map((leaf) => ({
      a: { ns: 'router', ifname: `r-${leaf}`, ipv4: `${routerAddress(leaf)}/24` },
      b: { ns: leaf, ifname: 'eth0', ipv4: `${leafAddress(leaf)}/24` },
    })),
    forwarding: ['router'],
    routes: LAB_LEAVES.map((leaf) => ({ ns: leaf, args: ['default', 'via', routerAddress(leaf)] })),
  };
}
