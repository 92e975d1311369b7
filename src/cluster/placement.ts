/**
 * PLACEHOLDER until the bounded-load placement lands (branch i21-place):
 * weighted rendezvous hashing per subscriber. Same interface.
 */
import { createHash } from 'node:crypto';

export interface PlacementNode {
  readonly name: string;
  readonly capacity: number;
}
export interface PlacementFlow {
  readonly name: string;
  readonly subscribers: readonly string[];
  readonly weight?: number;
  readonly exclude?: readonly string[];
}
export interface PlacementResult {
  readonly byFlow: ReadonlyMap<string, ReadonlyMap<string, string>>;
  readonly load: ReadonlyMap<string, number>;
  readonly unplaced: number;
}

function score(item: string, node: PlacementNode): number {
  const h = createHash('sha256').update(`${item}\0${node.name}`).digest().readUInt32BE(0);
  return -node.capacity / Math.log((h + 1) / 4294967297);
}

export function placeSubscribers(nodes: readonly PlacementNode[], flows: readonly PlacementFlow[]): PlacementResult {
  const load = new Map<string, number>(nodes.map((n) => [n.name, 0]));
  const byFlow = new Map<string, Map<string, string>>();
  let unplaced = 0;
  for (const f of flows) {
    const m = new Map<string, string>();
    byFlow.set(f.name, m);
    const allowed = nodes.filter((n) => !f.exclude?.includes(n.name));
    const pool = allowed.length ? allowed : nodes;
    for (const s of f.subscribers) {
      let best: PlacementNode | undefined;
      let bestScore = -Infinity;
      for (const n of pool) {
        const sc = score(`${f.name}\0${s}`, n);
        if (sc > bestScore) [best, bestScore] = [n, sc];
      }
      if (!best) unplaced++;
      else {
        m.set(s, best.name);
        load.set(best.name, load.get(best.name)! + (f.weight ?? 1));
      }
    }
  }
  return { byFlow, load, unplaced };
}
