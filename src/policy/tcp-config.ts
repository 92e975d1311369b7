/**
 * tcp-redirect entries in a config file's `flows:` list (issue 22, part 2).
 * They are taken out before the UDP flows are validated (the UDP checks
 * across flows do not apply to them) and validated here: each against the
 * tcp-redirect schema, then across the file: a name used twice (one of the
 * two a tcp-redirect), and two tcp-redirects on one TCP port of one
 * address (or of a wildcard address). Every path names the entry's index
 * in the file's list.
 */
import { PolicyValidationError, type PolicyIssue } from '../errors.js';
import { configSchema, type ConfigSpec } from './schema.js';
import { tcpRedirectSchema, type TcpRedirectPolicy, type TcpRedirectSpec } from './tcp-redirect.js';
import { describeIssue, parseConfig } from './validate.js';
import type { HostAddresses } from './flow-set.js';

const isTcp = (f: unknown): boolean => typeof f === 'object' && f !== null && (f as { type?: unknown }).type === 'tcp-redirect';
const wildcard = (a: string): boolean => a === '0.0.0.0' || a === '::';

function crossIssues(flows: readonly unknown[], tcp: readonly { index: number; spec: TcpRedirectSpec }[]): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const named = new Map<string, number>();
  flows.forEach((f, i) => {
    const name = typeof f === 'object' && f !== null ? (f as { name?: unknown }).name : undefined;
    if (typeof name !== 'string') return;
    const first = named.get(name);
    if (first === undefined) named.set(name, i);
    // Two UDP flows of one name are the UDP checks' to report.
    else if (isTcp(f) || isTcp(flows[first])) issues.push({ path: `flows[${i}].name`, message: `'${name}' is also the name of flows[${first}]` });
  });
  for (let a = 0; a < tcp.length; a++) {
    for (let b = 0; b < a; b++) {
      const x = tcp[a]!.spec.listen;
      const y = tcp[b]!.spec.listen;
      if (x.port === 0 || x.port !== y.port || x.family !== y.family) continue;
      if (x.address === y.address || wildcard(x.address) || wildcard(y.address))
        issues.push({ path: `flows[${tcp[a]!.index}].listen`, message: `TCP port ${x.port} is also the listen port of flows[${tcp[b]!.index}]` });
    }
  }
  return issues;
}

/**
 * Validates a config document whose `flows:` may hold tcp-redirects:
 * the UDP flows as parseConfig does, the tcp-redirects here. Returns the
 * spec (UDP flows), the UDP flows as written and the tcp-redirects as
 * written; or throws one PolicyValidationError with every issue.
 */
export function parseConfigWithTcp(
  value: Record<string, unknown>,
  host?: HostAddresses,
): { spec: Pick<ConfigSpec, 'tier'>; udp: unknown[]; tcp: TcpRedirectPolicy[] } {
  const flows = value.flows;
  if (!Array.isArray(flows) || !flows.some(isTcp)) return { spec: parseConfig(value, host), udp: flows as unknown[], tcp: [] };
  const issues: PolicyIssue[] = [];
  const tcp: { index: number; spec: TcpRedirectSpec }[] = [];
  const udpIndex: number[] = [];
  flows.forEach((f, i) => {
    if (!isTcp(f)) return void udpIndex.push(i);
    const r = tcpRedirectSchema.safeParse(f);
    if (r.success) tcp.push({ index: i, spec: r.data });
    else issues.push(...r.error.issues.map((iss) => describeIssue(iss, f, `flows[${i}]`)));
  });
  issues.push(...crossIssues(flows, tcp));
  const udp = udpIndex.map((i) => flows[i] as unknown);
  // The UDP checks number flows within the UDP list: name them by their index in the file.
  const renumber = (text: string) => text.replace(/flows\[(\d+)\]/g, (_, k: string) => `flows[${udpIndex[Number(k)] ?? k}]`);
  let tier: ConfigSpec['tier'] = 'auto';
  try {
    if (udp.length) tier = parseConfig({ ...value, flows: udp }, host).tier;
    else {
      const { flows: _tcpOnly, ...rest } = value;
      const r = configSchema.omit({ flows: true }).safeParse(rest);
      if (r.success) tier = r.data.tier;
      else issues.push(...r.error.issues.map((iss) => describeIssue(iss, rest)));
    }
  } catch (err) {
    if (!(err instanceof PolicyValidationError)) throw err;
    issues.push(...err.issues.map((i) => ({ path: renumber(i.path), message: renumber(i.message) })));
  }
  if (issues.length) throw new PolicyValidationError(issues, 'invalid config');
  return { spec: { tier }, udp, tcp: tcp.map((t) => flows[t.index] as TcpRedirectPolicy) };
}
