/**
 * The source gateway's lookup table (issue #7): which flows to intercept.
 * An entry matches on protocol, source and destination prefix, and source
 * and destination port ranges; the first entry that matches wins, and a
 * flow that matches none is left untouched. Pure: parsing and matching
 * only; interception (explicit listeners or transparent rules) and the
 * gateways read the compiled table.
 */
import { z } from 'zod';
import { ConfigError } from '../../errors.js';
import { parseSourceRule, createSourceMatcher, type SourceRule } from '../../policy/source-filter.js';

export type FlowProtocol = 'tcp' | 'udp' | 'icmp';

export interface PortRange {
  readonly lo: number;
  readonly hi: number;
}

/** One compiled table entry. Absent fields match anything. */
export interface InterceptRule {
  /** Position in the table (0 first), and a name for status output. */
  readonly index: number;
  readonly name: string;
  readonly protocol: FlowProtocol;
  readonly src?: SourceRule;
  readonly dst?: SourceRule;
  readonly srcPorts?: PortRange;
  readonly dstPorts?: PortRange;
  /** Peer gateway names this flow goes to (several: fan-out); empty: the route table decides. */
  readonly peers: readonly string[];
  /** Trust domain: flows of different domains are never compressed together. */
  readonly domain: number;
  /** Interactive flows: their thin messages are protected by parity or a second copy, both ways, so a single loss costs no round trip (protocol/parity.ts). */
  readonly latencySensitive?: boolean;
}

/** What a flow looks like to the table (ICMP has no ports: 0). */
export interface FlowKey {
  readonly protocol: FlowProtocol;
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
}

const portRange = z.union([z.number().int().min(0).max(65535), z.string().regex(/^\d{1,5}(-\d{1,5})?$/, 'a port or LO-HI')]);

export const interceptRuleSchema = z.strictObject({
  name: z.string().min(1).max(64).optional(),
  protocol: z.enum(['tcp', 'udp', 'icmp']),
  src: z.string().optional().describe('source ADDRESS or ADDRESS/PREFIX'),
  dst: z.string().optional().describe('destination ADDRESS or ADDRESS/PREFIX'),
  srcPort: portRange.optional(),
  dstPort: portRange.optional(),
  peers: z.array(z.string().min(1)).optional(),
  domain: z.number().int().min(0).max(255).optional(),
  latencySensitive: z.boolean().optional(),
});

function parsePorts(v: number | string, where: string): PortRange {
  if (typeof v === 'number') return { lo: v, hi: v };
  const [a, b] = v.split('-');
  const lo = Number(a);
  const hi = b === undefined ? lo : Number(b);
  if (!(lo >= 0 && lo <= 65535 && hi >= 0 && hi <= 65535)) throw new FlowTableError(`port ${v} is out of range 0..65535`, where);
  if (hi < lo) throw new FlowTableError(`port range ${v} runs backwards`, where);
  return { lo, hi };
}

/**
 * An interception table entry was refused; the message names it (`path`:
 * the field, `detail`: what is wrong with it). A ConfigError
 * (SLUICE_ERR_INVALID_CONFIG).
 */
export class FlowTableError extends ConfigError {
  override name = 'FlowTableError';
  readonly path: string | undefined;
  readonly detail: string | undefined;
  constructor(detail: string, path?: string) {
    super(path ? `${path}: ${detail}` : detail);
    this.path = path;
    this.detail = detail;
  }
}

/** Compiles table entries (as in the config file) in order; throws FlowTableError naming the entry. */
export function compileInterceptTable(inputs: readonly unknown[]): InterceptRule[] {
  return inputs.map((raw, index) => compileInterceptRule(raw, index, `table[${index}]`));
}

/** Compiles one entry at position `index` of the table; errors name fields under `where` (e.g. `table[2]`). */
export function compileInterceptRule(raw: unknown, index: number, where: string): InterceptRule {
  const at = (field: string) => (where ? `${where}.${field}` : field);
  const parsed = interceptRuleSchema.safeParse(raw);
  if (!parsed.success) throw new FlowTableError(parsed.error.issues.map((i) => `${i.path.join('.') || 'entry'}: ${i.message}`).join('; '), where);
  const e = parsed.data;
  const prefix = (text: string | undefined, field: string): SourceRule | undefined => {
    if (text === undefined) return undefined;
    const r = parseSourceRule(text);
    if (!r.ok) throw new FlowTableError(r.reason, at(field));
    return r.rule;
  };
  // `src: any` says in the config that everyone is served (explicit
  // listeners on a reachable address must say who: see parseTpoConfig).
  const src = e.src === 'any' ? undefined : prefix(e.src, 'src');
  const dst = prefix(e.dst, 'dst');
  if (src && dst && src.family !== dst.family) throw new FlowTableError(`src is IPv${src.family} but dst is IPv${dst.family}`, where);
  if (e.protocol === 'icmp' && (e.srcPort !== undefined || e.dstPort !== undefined)) throw new FlowTableError('ICMP has no ports', where);
  return {
    index,
    name: e.name ?? `${e.protocol}#${index}`,
    protocol: e.protocol,
    ...(src ? { src } : {}),
    ...(dst ? { dst } : {}),
    ...(e.srcPort !== undefined ? { srcPorts: parsePorts(e.srcPort, at('srcPort')) } : {}),
    ...(e.dstPort !== undefined ? { dstPorts: parsePorts(e.dstPort, at('dstPort')) } : {}),
    peers: e.peers ?? [],
    domain: e.domain ?? 0,
    ...(e.latencySensitive ? { latencySensitive: true } : {}),
  };
}

/** The table as a first-match lookup. */
export class InterceptTable {
  readonly entries: readonly InterceptRule[];
  readonly #matchers: ((k: FlowKey) => boolean)[];

  constructor(entries: readonly InterceptRule[]) {
    this.entries = entries;
    this.#matchers = entries.map((e) => {
      const src = e.src ? createSourceMatcher({ any: false, rules: [e.src] }) : undefined;
      const dst = e.dst ? createSourceMatcher({ any: false, rules: [e.dst] }) : undefined;
      return (k: FlowKey) =>
        k.protocol === e.protocol &&
        (!e.srcPorts || (k.srcPort >= e.srcPorts.lo && k.srcPort <= e.srcPorts.hi)) &&
        (!e.dstPorts || (k.dstPort >= e.dstPorts.lo && k.dstPort <= e.dstPorts.hi)) &&
        (!src || src(k.src)) &&
        (!dst || dst(k.dst));
    });
  }

  static compile(inputs: readonly unknown[]): InterceptTable {
    return new InterceptTable(compileInterceptTable(inputs));
  }

  /** The first entry matching the flow, or undefined (leave it alone). */
  lookup(key: FlowKey): InterceptRule | undefined {
    for (let i = 0; i < this.#matchers.length; i++) if (this.#matchers[i]!(key)) return this.entries[i];
    return undefined;
  }
}
