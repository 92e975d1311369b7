/**
 * `sluice tpo --config tpo.yaml` (issue #7): the gateway's config file,
 * validated. Pure: text in, a TpoConfig out; errors name the field.
 *
 *   name: site-a
 *   listen: 0.0.0.0:7400           # UDP port the peer links use
 *   peers:
 *     - name: site-b
 *       address: 192.0.2.2:7400     # given: this side starts the handshake
 *       key: 64 hex digits           # or keyFile: path (raw or hex; mode 600)
 *       keyId: 1
 *       maxRate: 50M                 # bits/s cap on what goes to this peer
 *       mtu: 9000                    # the path's IP MTU (default 1500; 9000 to a loopback peer)
 *   intercept: { mode: explicit }    # or transparent (root: nftables rules)
 *   table:                           # flows to carry; first match wins
 *     - { protocol: tcp, listen: 127.0.0.1:8080, target: 10.2.0.10:80 }
 *   routes:                          # which peer serves which destinations
 *     - { dst: 10.2.0.0/16, peer: site-b }
 *   deliver:                         # destination side: where peers may connect
 *     allow: [10.2.0.0/16]
 *   control: /run/sluice/tpo-site-a.sock
 */
import { FileRefusedError, readRegularFile } from '../../fs/regular-file.js';
import { ConfigError } from '../../errors.js';
import { z } from 'zod';
import { isLoopbackAddress, parseEndpoint, type Endpoint } from '../../wire/endpoint.js';
import { parseYamlDocument } from '../../policy/config.js';
import { describeIssue } from '../../policy/validate.js';
import { parseSourceRule, type SourceRule } from '../../policy/source-filter.js';
import { parseBitRateText } from '../../policy/units.js';
import { compileInterceptTable, interceptRuleSchema, FlowTableError, type InterceptRule } from './intercept-rules.js';

/** Largest TPO config file, bytes. */
export const MAX_TPO_CONFIG_BYTES = 1024 * 1024;

/** A TPO config was refused: every problem in `issues`, `source` the file. A ConfigError (SLUICE_ERR_INVALID_CONFIG). */
export class TpoConfigError extends ConfigError {
  override name = 'TpoConfigError';
  constructor(issues: readonly string[], source: string) {
    super(`invalid TPO config ${source}:\n  ${issues.join('\n  ')}`, { issues, source });
  }
}

/** Slowest rate a peer may be given (bits/s): below it a 1350-byte datagram waits over 150 ms to leave. */
export const MIN_RATE_BITS = 64_000;
/** Fastest (bits/s): 1 Tbit/s; anything above is a typo. */
export const MAX_RATE_BITS = 1e12;

/**
 * "50M", "800k", "2500000" or a number, bits/s → bytes/s. Finite, within
 * MIN_RATE_BITS..MAX_RATE_BITS: 0 is refused rather than read as "no cap"
 * (leave maxRate out for that), and so is a number too large to be finite.
 */
export function parseBitRate(text: string | number): number {
  let bits: number;
  if (typeof text === 'number') bits = text;
  else {
    const parsed = parseBitRateText(text);
    if (parsed === undefined) throw new Error(`'${text}' is not a bit rate (e.g. 50M, 800k, 2500000)`);
    bits = parsed;
  }
  if (!Number.isFinite(bits)) throw new Error(`${String(text)} is not a finite bit rate`);
  if (bits < MIN_RATE_BITS)
    throw new Error(`${String(text)} bits/s is below the least rate of ${MIN_RATE_BITS / 1000}k${bits === 0 ? ' (for no cap, leave the field out)' : ''}`);
  if (bits > MAX_RATE_BITS) throw new Error(`${String(text)} bits/s is above the greatest rate of 1000G`);
  return bits / 8;
}

/** Largest key file, bytes: 128 hex digits with room for a newline and spaces. */
export const MAX_KEY_FILE_BYTES = 1024;

/**
 * Reads a key file: a regular file of at most MAX_KEY_FILE_BYTES that
 * neither group nor others may read, write or execute (mode & 077 = 0),
 * as ssh asks of a private key. A key that other users can read is no
 * secret, so it is refused rather than warned about.
 */
export function readKeyFile(path: string): Buffer {
  let file: ReturnType<typeof readRegularFile>;
  try {
    file = readRegularFile(path, { maxBytes: MAX_KEY_FILE_BYTES });
  } catch (err) {
    if (err instanceof FileRefusedError) throw new Error(err.reason);
    throw err;
  }
  const mode = file.stat.mode & 0o777;
  if (mode & 0o077) {
    throw new Error(`permissions ${mode.toString(8).padStart(4, '0')} are too open: other users may read or change the key (chmod 600 ${path})`);
  }
  return file.data;
}

/**
 * A key from a key file's bytes: hex text (an even number of digits, 32
 * to 128; whitespace around it ignored) or 16 to 64 raw bytes.
 */
export function keyFromFile(raw: Buffer): { key: Uint8Array } | { error: string } {
  const text = raw.toString('latin1').trim();
  if (/^[0-9a-fA-F]+$/.test(text) && text.length >= 32) {
    if (text.length % 2) return { error: `${text.length} hex digits: an odd number (a digit is missing or extra)` };
    if (text.length > 128) return { error: `${text.length} hex digits: at most 128 (64 bytes)` };
    return { key: Buffer.from(text, 'hex') };
  }
  if (raw.length < 16 || raw.length > 64) return { error: `${raw.length} bytes: a raw key has 16 to 64 bytes (or write it as 32 to 128 hex digits)` };
  return { key: raw };
}

const endpoint = z.string().min(1);
const rate = z.union([z.string(), z.number()]);

const peerSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)'),
  address: endpoint.optional(),
  key: z
    .string()
    .regex(/^[0-9a-fA-F]{32,128}$/, '32 to 128 hex digits')
    // Buffer.from(hex) would drop an odd last digit without a word.
    .superRefine((k, ctx) => {
      if (k.length % 2) ctx.addIssue({ code: 'custom', message: `${k.length} hex digits: an odd number (a digit is missing or extra)` });
    })
    .optional(),
  keyFile: z.string().optional(),
  keyId: z.number().int().min(0).max(0xffffffff).optional(),
  maxRate: rate.optional(),
  initialRate: rate.optional(),
  /** The IP MTU of the path to this peer: datagrams are sized to it (576 to 65535; default 1500, 9000 to a loopback address). */
  mtu: z.number().int().min(576).max(65_535).optional(),
});

const tableEntrySchema = interceptRuleSchema.extend({
  /** Explicit mode: where this gateway listens for the flow's clients. */
  listen: endpoint.optional(),
  /** Explicit mode: where the far gateway delivers it. */
  target: endpoint.optional(),
});

const schema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .default('tpo'),
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
      // issue 16 (gateway flows): bounds on what one flow or one client may hold.
      /** An intercepted TCP connection whose open the far side has not answered within this is reset (peer session never up, far gateway gone). */
      openTimeoutMs: z.number().int().min(1000).max(600_000).default(30_000),
      /** Flows one client address may hold (on the destination side: one client address behind one peer). */
      maxFlowsPerSource: z.number().int().min(1).max(1_000_000).default(1_000),
      /** A TCP flow that carried no data for this long is reset at both ends. */
      tcpIdleMs: z
        .number()
        .int()
        .min(1000)
        .max(7 * 86_400_000)
        .default(3_600_000),
    })
    .default({ maxFlows: 10_000, udpIdleMs: 60_000, peerDeadMs: 30_000, openTimeoutMs: 30_000, maxFlowsPerSource: 1_000, tcpIdleMs: 3_600_000 }),
  control: z.string().optional(),
});

export interface PeerConfig {
  readonly name: string;
  readonly address?: Endpoint;
  readonly key: Uint8Array;
  readonly keyId: number;
  readonly maxRateBps?: number;
  readonly initialRateBps?: number;
  readonly mtu?: number;
}

export interface TableEntry extends InterceptRule {
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
  readonly limits: {
    readonly maxFlows: number;
    readonly udpIdleMs: number;
    readonly peerDeadMs: number;
    readonly openTimeoutMs: number;
    readonly maxFlowsPerSource: number;
    readonly tcpIdleMs: number;
  };
  readonly control?: string;
}

/** Validates a parsed document (object). `readKey` reads key files (tests inject one). */
export function parseTpoConfig(value: unknown, source = 'config', readKey: (path: string) => Buffer = readKeyFile): TpoConfig {
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
        const k = keyFromFile(readKey(p.keyFile!));
        if ('error' in k) issues.push(`${where}.keyFile: ${p.keyFile}: ${k.error}`);
        else key = k.key;
      } catch (err) {
        issues.push(`${where}.keyFile: cannot read ${p.keyFile}: ${(err as Error).message}`);
      }
    }
    if (key && key.length < 16) issues.push(`${where}: the key must be at least 16 bytes`);
    const address = p.address !== undefined ? ep(p.address, `${where}.address`) : undefined;
    const maxRateBps = rateOf(p.maxRate, `${where}.maxRate`);
    const initialRateBps = rateOf(p.initialRate, `${where}.initialRate`);
    if (key)
      peers.push({
        name: p.name,
        key,
        keyId,
        ...(address ? { address } : {}),
        ...(maxRateBps !== undefined ? { maxRateBps } : {}),
        ...(initialRateBps !== undefined ? { initialRateBps } : {}),
        ...(p.mtu !== undefined ? { mtu: p.mtu } : {}),
      });
  });
  let entries: InterceptRule[] = [];
  try {
    entries = compileInterceptTable(c.table.map(({ listen: _l, target: _t, ...e }) => e));
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
      // Like a relay's `allow`: a listener other hosts can reach must name
      // the clients it carries, or a forged UDP source could have the far
      // server's replies sent to a third party (docs/SECURITY.md).
      if (l && raw.src === undefined && !isLoopbackAddress(l.address)) {
        issues.push(
          `${where}.src: required for a listener on ${l.address}, which other hosts can reach: the clients it carries (ADDRESS or ADDRESS/PREFIX), or 'any' for everyone`,
        );
      }
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
  if (!doc.ok)
    throw new TpoConfigError(
      doc.problems.map((p) => (p.line !== undefined ? `line ${p.line}: ${p.message}` : p.message)),
      source,
    );
  return parseTpoConfig(doc.value, source, readKey);
}
