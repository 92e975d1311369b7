/**
 * What nf_tables holds in a test namespace, read with Sluice's own netlink
 * code (harness/netns/nft-list.ts) in a child inside the namespace, so no test
 * depends on the nft(8) tool being installed.
 */
import { fileURLToPath } from 'node:url';
import type { Topology } from './netns.js';

const FIXTURE = fileURLToPath(new URL('../bin/nft-tables.ts', import.meta.url));

/** One line per table in `ns` (`table inet NAME (N chains) ...`); '' when the ruleset is empty. */
export async function nftTables(topo: Topology, ns: string): Promise<string> {
  return (await topo.exec(ns, process.execPath, ['--import', 'tsx', FIXTURE])).trim();
}
