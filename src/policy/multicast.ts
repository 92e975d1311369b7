/**
 * The multicast fields of a flow policy: `multicast` (how a group listen
 * joins: source-specific filters, the interface) and `multicastOut` (how
 * copies to group subscribers leave: TTL, interface, loopback). A listen
 * address in 224.0.0.0/4 or ff00::/8 always joins its group; the fields
 * only refine how. Pure: interfaces are checked for form here and looked
 * up by the tier that joins (docs/POLICY.md, "Multicast").
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { canonicalAddress, formatEndpoint, type Endpoint } from '../wire/endpoint.js';
import { isMulticastAddress } from '../wire/ip-address.js';
import { createSourceMatcher, type SourceFilter } from './source-filter.js';

/**
 * Most SSM sources per flow: MLDv2's default per-socket limit
 * (net.ipv6.mld_max_msf = 64). IPv4's is net.ipv4.igmp_max_msf, 10 by
 * default: more sources than that make the join fail with ENOBUFS, which
 * the flow's start reports naming the call.
 */
export const MAX_SSM_SOURCES = 64;

/** An interface name (IFNAMSIZ − 1 characters, no '/', no blanks) or an address of this host. */
const interfaceSchema = z
  .string()
  .refine((s) => isIP(s) !== 0 || /^[^\s/%:]{1,15}$/.test(s), 'must be an interface name (1-15 characters) or a local IP address');

export const multicastSchema = z.strictObject({
  /** Source-specific multicast (IGMPv3/MLDv2 include filter): only these senders. */
  sources: z
    .array(z.string().refine((s) => isIP(s) !== 0 && !isMulticastAddress(s) && !/^(0\.0\.0\.0|::)$/.test(canonicalAddress(s)), 'must be a unicast IP address'))
    .min(1, 'list at least one source, or leave sources out for any-source multicast')
    .max(MAX_SSM_SOURCES)
    .optional(),
  /** Interface name or local address to join on; default: the one the route to the group picks. */
  interface: interfaceSchema.optional(),
});

export const multicastOutSchema = z.strictObject({
  /** IP TTL / IPv6 hop limit of copies sent to groups. */
  ttl: z.number().int().min(0).max(255).default(1),
  /** Interface name or local address copies to groups leave by; default: the route's. */
  interface: interfaceSchema.optional(),
  /** Also deliver copies to group members on this host. */
  loop: z.boolean().default(false),
});

export type MulticastSpec = z.output<typeof multicastSchema>;
export type MulticastOutSpec = z.output<typeof multicastOutSchema>;

/** How a flow on a group address joins it (FlowPlan.multicast). */
export interface MulticastJoin {
  /** The group: the listen address. */
  readonly group: string;
  /** SSM include list; empty: any-source multicast. */
  readonly sources: readonly string[];
  readonly interface?: string;
}

/** How copies to groups leave (FlowPlan.multicastOut). */
export interface MulticastOut {
  readonly ttl: number;
  readonly loop: boolean;
  readonly interface?: string;
}

interface Issue {
  path: (string | number)[];
  message: string;
}

const familyOf = (address: string): 4 | 6 => (isIP(address) === 4 ? 4 : 6);

/** Checks across a flow's fields: `multicast` only on a group listen, its addresses of the group's family. */
export function multicastIssues(spec: { readonly listen: Endpoint; readonly multicast?: MulticastSpec | undefined }): Issue[] {
  const issues: Issue[] = [];
  const m = spec.multicast;
  const family = spec.listen.family;
  if (m && !isMulticastAddress(spec.listen.address)) {
    issues.push({ path: ['multicast'], message: `listen ${formatEndpoint(spec.listen)} is not a multicast group (224.0.0.0/4, ff00::/8)` });
  }
  m?.sources?.forEach((s, i) => {
    if (familyOf(s) !== family) issues.push({ path: ['multicast', 'sources', i], message: `${s} is not an IPv${family} address like the group` });
  });
  if (m?.interface !== undefined && isIP(m.interface) !== 0 && familyOf(m.interface) !== family) {
    issues.push({ path: ['multicast', 'interface'], message: `${m.interface} is not an IPv${family} address like the group` });
  }
  return issues;
}

/** The plan's join for a group listen (undefined for a unicast listen). */
export function multicastJoin(listen: Endpoint, spec: MulticastSpec | undefined): MulticastJoin | undefined {
  if (!isMulticastAddress(listen.address)) return undefined;
  const sources = [...new Set((spec?.sources ?? []).map(canonicalAddress))];
  return { group: listen.address, sources, ...(spec?.interface === undefined ? {} : { interface: spec.interface }) };
}

/** The plan's output settings: when asked for, or when a subscriber is a group (defaults then). */
export function multicastOutOf(spec: MulticastOutSpec | undefined, destinations: readonly Endpoint[]): MulticastOut | undefined {
  if (!spec && !destinations.some((d) => isMulticastAddress(d.address))) return undefined;
  const out = spec ?? { ttl: 1, loop: false };
  return { ttl: out.ttl, loop: out.loop, ...(out.interface === undefined ? {} : { interface: out.interface }) };
}

/**
 * The sources a flow accepts: with SSM, the listed sources the allow list
 * lets in (all of them when allow is `any`), each as a host rule. The host
 * delivers nothing else to the joined socket, and a tier that sees the
 * datagram before the host does (the kernel tier's program) must carry
 * exactly that too.
 */
export function effectiveSources(allow: SourceFilter, join: MulticastJoin | undefined): SourceFilter {
  if (!join || join.sources.length === 0) return allow;
  const accept = createSourceMatcher(allow);
  const rules = join.sources
    .filter((address) => accept(address))
    .map((address) => ({ family: familyOf(address), address, prefix: familyOf(address) === 4 ? 32 : 128 }));
  return { any: false, rules };
}
