/**
 * The route table (issue #7): which peer gateway carries a flow, chosen by
 * its destination address. Longest prefix wins, as in an IP routing table;
 * a table entry that names its peers overrides the routes (that is also
 * how one flow goes to several gateways), and with a single peer and no
 * route that peer is the default.
 */
import { createSourceMatcher, type SourceRule } from '../../policy/source-filter.js';
import type { RouteConfig } from '../config/config.js';
import type { InterceptRule } from '../config/intercept-rules.js';

export type RouteChoice = { ok: true; peers: readonly string[] } | { ok: false; reason: string };

export class RouteTable {
  readonly #routes: { rule: SourceRule; peer: string; match: (a: string) => boolean }[];
  readonly #defaultPeer: string | undefined;

  constructor(routes: readonly RouteConfig[], peerNames: readonly string[]) {
    this.#routes = routes
      .map((r) => ({ rule: r.dst, peer: r.peer, match: createSourceMatcher({ any: false, rules: [r.dst] }) }))
      // Longest prefix first; the sort is stable, so equal prefixes keep the file's order.
      .sort((a, b) => b.rule.prefix - a.rule.prefix);
    this.#defaultPeer = peerNames.length === 1 ? peerNames[0] : undefined;
  }

  /** The peers a flow to `dst` that matched `entry` goes to. */
  choose(entry: InterceptRule, dst: string): RouteChoice {
    if (entry.peers.length) return { ok: true, peers: entry.peers };
    for (const r of this.#routes) if (r.match(dst)) return { ok: true, peers: [r.peer] };
    if (this.#defaultPeer) return { ok: true, peers: [this.#defaultPeer] };
    return { ok: false, reason: `no route to ${dst} (add a routes: entry or name peers in the table entry)` };
  }
}
