/**
 * `sluice tpo --config tpo.yaml` (issue #7): the gateway's config file,
 * validated. Pure: text in, a TpoConfig out; errors name the field.
 *
 *   name: site-a
 *   listen: 0.0.0.0:7400           # UDP port the peer links use
 *   peers:
 *     - name: site-b
 *       address: 192.0.2.2:7400     # given: this side starts the handshake
 *       key: 64 hex digits           # or keyFile: path (32 raw or 64 hex bytes)
 *       keyId: 1
 *       maxRate: 50M                 # bits/s cap on what goes to this peer
 *   intercept: { mode: explicit }    # or transparent (root: nftables rules)
 *   table:                           # flows to carry; first match wins
 *     - { protocol: tcp, listen: 127.0.0.1:8080, target: 10.2.0.10:80 }
 *   routes:                          # which peer serves which destinations
 *     - { dst: 10.2.0.0/16, peer: site-b }
 *   deliver:                         # destination side: where peers may connect
 *     allow: [10.2.0.0/16]
 *   control: /run/sluice/tpo-site-a.sock
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseEndpoint, type Endpoint } from '../policy/endpoint.js';
import { parseYamlDocument } from '../policy/config.js';
import { describeIssue } from '../policy/validate.js';
import { parseSourceRule, type SourceRule } from '../policy/source-filter.js';
import { compileFlowTable, flowEntrySchema, FlowTableError, type FlowEntry } from './flow-table.js';

/** Largest TPO config file, bytes. */
export const MAX_TPO_CONFIG_BYTES = 1024 * 1024;

export class TpoConfigError extends Error {
  override name = 'TpoConfigError';
  constructor(readonly issues: readonly string[], source: string) {
    super(`invalid TPO config ${source}:\n  ${issues.join('\n  ')}`);
  }
}

/** "50M", "800k", "2500000" bits/s → bytes/s. */
export function parseBitRate(text: string | number): number {
  if (typeof text === 'number') return text / 8;
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bit\/s|bps)?$/.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a bit rate (e.g. 50M, 800k, 2500000)`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return (Number(m[1]) * mult) / 8;
}

const endpoint = z.string().min(1);
const rate = z.union([z.string(), z.number().positive()]);

const peerSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)'),
  address: endpoint.optional(),
  key: z.string().regex(/^[0-9a-fA-F]{32,128}$/, '32 to 128 hex digits').optional(),
  keyFile: z.string().optional(),
  keyId: z.number().int().min(0).max(0xffffffff).optional(),
  maxRate: rate.optional(),
  initialRate: rate.optional(),
});

const tableEntrySchema = flowEntrySchema.extend({
  /** Explicit mode: where this gateway listens for the flow's clients. */
  listen: endpoint.optional(),
  /** Explicit mode: where the far gateway delivers it. */
  target: endpoint.optional(),
});

const schema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('tpo'),
  listen: endpoint,
  peers: z.array(peerSchema).min(1),
  intercept: z
    .strictObject({
      mode: z.enum(['explicit', 'transparent']).default('explicit'),
      hooks: z.array(z.enum(['prerouting', 'output'])).optional(),
    })
    .default({ mode: 'explicit' }),
  table: z.array(tableEntrySchema).default([]),
  routes: z.array(z.strictObject({ dst: z.string(), peer: z.string() })).default([]),
  deliver: z
    .strictObject({
      allow: z.array(z.string()).default([]),
      connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    })
    .default({ allow: [], connectTimeoutMs: 10_000 }),
  limits: z
    .strictObject({
      maxFlows: z.number().int().min(1).max(1_000_000).default(10_000),
      udpIdleMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      /** A peer down this long resets its flows (the applications see an error, not a hang). */
      peerDeadMs: z.number().int().min(1000).max(3_600_000).default(30_000),
    })
    .default({ maxFlows: 10_000, udpIdleMs: 60_000, peerDeadMs: 30_000 }),
  control: z.string().optional(),
});

export interface PeerConfig {
  readonly name: string;
  readonly address?: Endpoint;
  readonly key: Uint8Array;
  readonly keyId: number;
  readonly maxRateBps?: number;
  readonly initialRateBps?: number;
}

export interface TableEntry extends FlowEntry {
  readonly listen?: Endpoint;
  readonly target?: Endpoint;
}

export interface RouteConfig {
  readonly dst: SourceRule;
  readonly peer: string;
}

export interface TpoConfig {
  readonly name: string;
  readonly listen: Endpoint;
  readonly peers: readonly PeerConfig[];
  readonly intercept: { readonly mode: 'explicit' | 'transparent'; readonly hooks: readonly ('prerouting' | 'output')[] };
  readonly table: readonly TableEntry[];
  readonly routes: readonly RouteConfig[];
  readonly deliver: { readonly allow: readonly SourceRule[]; readonly connectTimeoutMs: number };
  readonly limits: { readonly maxFlows: number; readonly udpIdleMs: number; readonly peerDeadMs: number };
  readonly control?: string;
}

/** Validates a parsed document (object). `readKey` reads key files (tests inject one). */
export function parseTpoConfig(value: unknown, source = 'config', readKey: (path: string) => Buffer = (p) => readFileSync(p)): TpoConfig {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new TpoConfigError(
      parsed.error.issues.map((iss) => {
        const { path, message } = describeIssue(iss, value);
        return `${path || '(top)'}: ${message}`;
      }),
      source,
    );
  }
  const c = parsed.data;
  const issues: string[] = [];
  const ep = (text: string, where: string, allowPortZero = false): Endpoint | undefined => {
    // HOST:PORT or [IPv6]:PORT, as the rest of Sluice writes endpoints (without the udp:// scheme).
    const r = parseEndpoint(text.includes('://') ? text : `udp://${text}`, { allowPortZero });
    if (!r.ok) {
      issues.push(`${where}: ${r.reason}`);
      return undefined;
    }
    return r.endpoint;
  };
  const prefix = (text: string, where: string): SourceRule | undefined => {
    const r = parseSourceRule(text);
    if (!r.ok) issues.push(`${where}: ${r.reason}`);
    return r.ok ? r.rule : undefined;
  };
  const rateOf = (v: string | number | undefined, where: string): number | undefined => {
    if (v === undefined) return undefined;
    try {
      return parseBitRate(v);
    } catch (err) {
      issues.push(`${where}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const listen = ep(c.listen, 'listen', true);
  const names = new Set<string>();
  const keyIds = new Set<number>();
  const peers: PeerConfig[] = [];
  c.peers.forEach((p, i) => {
    const where = `peers[${i}]`;
    if (names.has(p.name)) issues.push(`${where}.name: '${p.name}' appears twice`);
    names.add(p.name);
    const keyId = p.keyId ?? 0;
    // The key id picks the peer a handshake is for: two peers with one id could not be told apart.
    if (keyIds.has(keyId)) issues.push(`${where}.keyId: ${keyId} is used by another peer (give each peer its own keyId)`);
    keyIds.add(keyId);
    let key: Uint8Array | undefined;
    if ((p.key === undefined) === (p.keyFile === undefined)) issues.push(`${where}: give exactly one of key (hex) or keyFile`);
    else if (p.key !== undefined) key = Buffer.from(p.key, 'hex');
    else {
      try {
        const raw = readKey(p.keyFile!);
        const text = raw.toString('utf8').trim();
        key = /^[0-9a-fA-F]{32,128}$/.test(text) ? Buffer.from(text, 'hex') : raw;
      } catch (err) {
        issues.push(`${where}.keyFile: cannot read ${p.keyFile}: ${(err as Error).message}`);
      }
    }
    if (key && key.length < 16) issues.push(`${where}: the key must be at least 16 bytes`);
    const address = p.address !== undefined ? ep(p.address, `${where}.address`) : undefined;
    const maxRateBps = rateOf(p.maxRate, `${where}.maxRate`);
    const initialRateBps = rateOf(p.initialRate, `${where}.initialRate`);
    if (key) peers.push({ name: p.name, key, keyId, ...(address ? { address } : {}), ...(maxRateBps ? { maxRateBps } : {}), ...(initialRateBps ? { initialRateBps } : {}) });
  });
  let entries: FlowEntry[] = [];
  try {
    entries = compileFlowTable(c.table.map(({ listen: _l, target: _t, ...e }) => e));
  } catch (err) {
    if (!(err instanceof FlowTableError)) throw err;
    issues.push(err.message);
  }
  const table: TableEntry[] = entries.map((e, i) => {
    const raw = c.table[i]!;
    const where = `table[${i}]`;
    for (const p of e.peers) if (!names.has(p)) issues.push(`${where}.peers: no peer named '${p}'`);
    const l = raw.listen !== undefined ? ep(raw.listen, `${where}.listen`) : undefined;
    const t = raw.target !== undefined ? ep(raw.target, `${where}.target`) : undefined;
    if (c.intercept.mode === 'explicit') {
      if (!l || !t) issues.push(`${where}: explicit interception needs listen and target`);
      if (e.protocol === 'icmp') issues.push(`${where}: ICMP cannot be intercepted explicitly (there is no listener for it)`);
    }
    return { ...e, ...(l ? { listen: l } : {}), ...(t ? { target: t } : {}) };
  });
  const routes: RouteConfig[] = [];
  c.routes.forEach((r, i) => {
    if (!names.has(r.peer)) issues.push(`routes[${i}].peer: no peer named '${r.peer}'`);
    const dst = prefix(r.dst, `routes[${i}].dst`);
    if (dst) routes.push({ dst, peer: r.peer });
  });
  const allow = c.deliver.allow.map((a, i) => prefix(a, `deliver.allow[${i}]`)).filter((x): x is SourceRule => !!x);
  if (issues.length || !listen) throw new TpoConfigError(issues.length ? issues : ['listen: invalid'], source);
  return {
    name: c.name,
    listen,
    peers,
    intercept: { mode: c.intercept.mode, hooks: c.intercept.hooks ?? ['prerouting', 'output'] },
    table,
    routes,
    deliver: { allow, connectTimeoutMs: c.deliver.connectTimeoutMs },
    limits: c.limits,
    ...(c.control ? { control: c.control } : {}),
  };
}

/**
 * Parses YAML (or JSON) text: malformed YAML, duplicate keys, deep
 * nesting and alias bombs are refused with their line (parseYamlDocument).
 */
export function parseTpoConfigText(text: string, source = 'config', readKey?: (path: string) => Buffer): TpoConfig {
  const doc = parseYamlDocument(text);
  if (!doc.ok) throw new TpoConfigError(doc.problems.map((p) => (p.line !== undefined ? `line ${p.line}: ${p.message}` : p.message)), source);
  return parseTpoConfig(doc.value, source, readKey);
}
