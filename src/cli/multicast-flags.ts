/**
 * `sluice relay`'s multicast flags, turned into the policy's `multicast`
 * and `multicastOut` fields (docs/POLICY.md, "Multicast"); the policy
 * schema validates them like any other field.
 */
import { Option } from 'commander';

const collect = (value: string, prev: string[]) => [...prev, value];

/** One of the flags, by its key in the parsed options. */
export function multicastOption(key: 'source' | 'interface' | 'ttl' | 'outInterface' | 'loop'): Option {
  switch (key) {
    case 'source':
      return new Option('--source <addr>', 'group listen: accept only this sender, source-specific (IGMPv3/MLDv2); repeatable').argParser(collect).default([]);
    case 'interface':
      return new Option('--interface <name|addr>', 'group listen: join on this interface (name or local address)');
    case 'ttl':
      return new Option('--ttl <n>', 'copies to groups: TTL / hop limit (default 1)').argParser(Number);
    case 'outInterface':
      return new Option('--out-interface <name|addr>', 'copies to groups: leave by this interface');
    case 'loop':
      return new Option('--loop', "copies to groups: also deliver to this host's members");
  }
}

export interface MulticastFlags {
  source: string[];
  interface?: string;
  ttl?: number;
  outInterface?: string;
  loop?: boolean;
}

/** The policy fields the flags ask for (none when no flag is given). */
export function multicastFields(o: MulticastFlags): Record<string, unknown> {
  const join = {
    ...(o.source.length ? { sources: o.source } : {}),
    ...(o.interface !== undefined ? { interface: o.interface } : {}),
  };
  const out = {
    ...(o.ttl !== undefined ? { ttl: o.ttl } : {}),
    ...(o.outInterface !== undefined ? { interface: o.outInterface } : {}),
    ...(o.loop ? { loop: true } : {}),
  };
  return { ...(Object.keys(join).length ? { multicast: join } : {}), ...(Object.keys(out).length ? { multicastOut: out } : {}) };
}
