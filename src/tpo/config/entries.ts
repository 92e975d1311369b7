/**
 * One peer and one table entry of a TPO config: their schemas and the
 * checks beyond the schema (keys, endpoints, rates, who a listener
 * serves). The config file (config.ts) runs them for every peer and
 * entry; the run-time changes (changes.ts: TpoGateway.addPeer,
 * addTableEntry) run the same ones on one object, so a peer or entry is
 * valid at run time exactly when it would be valid in the file. Problems
 * are collected as { path, message }, `path` under `where` (e.g.
 * `peers[1]`; empty for a lone object).
 */
import { z } from 'zod';
import type { PolicyIssue } from '../../errors.js';
import { isLoopbackAddress, parseEndpoint, type Endpoint } from '../../wire/endpoint.js';
import { parseBitRateText } from '../../policy/units.js';
import { compileInterceptRule, FlowTableError, interceptRuleSchema, type InterceptRule } from './intercept-rules.js';

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

export const peerSchema = z.strictObject({
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
  /** The IP MTU of the path to this peer: datagrams are sized to it (576 to 65535; default 1500, 65535 to a loopback address). */
  mtu: z.number().int().min(576).max(65_535).optional(),
});

export const tableEntrySchema = interceptRuleSchema.extend({
  /** Explicit mode: where this gateway listens for the flow's clients. */
  listen: endpoint.optional(),
  /** Explicit mode: where the far gateway delivers it. */
  target: endpoint.optional(),
});

export type PeerInput = z.output<typeof peerSchema>;
export type TableEntryInput = z.output<typeof tableEntrySchema>;

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

/** `where.field`, or either alone when the other is empty. */
export function fieldPath(where: string, field = ''): string {
  return where && field ? `${where}.${field}` : where || field;
}

/** HOST:PORT or [IPv6]:PORT, as the rest of Sluice writes endpoints (without the udp:// scheme). */
export function hostPortOf(text: string, path: string, issues: PolicyIssue[], allowPortZero = false): Endpoint | undefined {
  const r = parseEndpoint(text.includes('://') ? text : `udp://${text}`, { allowPortZero });
  if (!r.ok) {
    issues.push({ path, message: r.reason });
    return undefined;
  }
  return r.endpoint;
}

export interface PeerChecks {
  /** Names and key ids of the peers before this one (the config file's duplicates are problems here). */
  readonly names: Set<string>;
  readonly keyIds: Set<number>;
  readonly readKey: (path: string) => Buffer;
  readonly issues: PolicyIssue[];
}

/** A schema-valid peer's key, address and rates, checked; undefined when its key is missing (the problems are in `c.issues`). */
export function resolvePeer(p: PeerInput, where: string, c: PeerChecks): PeerConfig | undefined {
  const issue = (field: string, message: string) => c.issues.push({ path: fieldPath(where, field), message });
  if (c.names.has(p.name)) issue('name', `'${p.name}' appears twice`);
  c.names.add(p.name);
  const keyId = p.keyId ?? 0;
  // The key id picks the peer a handshake is for: two peers with one id could not be told apart.
  if (c.keyIds.has(keyId)) issue('keyId', `${keyId} is used by another peer (give each peer its own keyId)`);
  c.keyIds.add(keyId);
  let key: Uint8Array | undefined;
  if ((p.key === undefined) === (p.keyFile === undefined)) issue('', 'give exactly one of key (hex) or keyFile');
  else if (p.key !== undefined) key = Buffer.from(p.key, 'hex');
  else {
    try {
      const k = keyFromFile(c.readKey(p.keyFile!));
      if ('error' in k) issue('keyFile', `${p.keyFile}: ${k.error}`);
      else key = k.key;
    } catch (err) {
      issue('keyFile', `cannot read ${p.keyFile}: ${(err as Error).message}`);
    }
  }
  if (key && key.length < 16) issue('', 'the key must be at least 16 bytes');
  const address = p.address !== undefined ? hostPortOf(p.address, fieldPath(where, 'address'), c.issues) : undefined;
  const rateOf = (v: string | number | undefined, field: string): number | undefined => {
    if (v === undefined) return undefined;
    try {
      return parseBitRate(v);
    } catch (err) {
      issue(field, (err as Error).message);
      return undefined;
    }
  };
  const maxRateBps = rateOf(p.maxRate, 'maxRate');
  const initialRateBps = rateOf(p.initialRate, 'initialRate');
  if (!key) return undefined;
  return {
    name: p.name,
    key,
    keyId,
    ...(address ? { address } : {}),
    ...(maxRateBps !== undefined ? { maxRateBps } : {}),
    ...(initialRateBps !== undefined ? { initialRateBps } : {}),
    ...(p.mtu !== undefined ? { mtu: p.mtu } : {}),
  };
}

export interface EntryChecks {
  readonly mode: 'explicit' | 'transparent';
  /** The peers an entry may name. */
  readonly peerNames: ReadonlySet<string>;
  /** Names of the entries before this one. */
  readonly entryNames: Set<string>;
  readonly issues: PolicyIssue[];
}

/** Compiles a schema-valid table entry at position `index`; undefined when it does not compile (the problem is in `c.issues`). */
export function compileTableEntry(raw: TableEntryInput, index: number, where: string, c: EntryChecks): TableEntry | undefined {
  const { listen: _l, target: _t, ...rule } = raw;
  let e: InterceptRule;
  try {
    e = compileInterceptRule(rule, index, where);
  } catch (err) {
    if (!(err instanceof FlowTableError)) throw err;
    c.issues.push({ path: err.path ?? where, message: err.detail ?? err.message });
    return undefined;
  }
  return checkTableEntry(raw, e, where, c);
}

/** The checks of a compiled entry that need the rest of the config: its peers, its listener, its name. */
export function checkTableEntry(raw: TableEntryInput, e: InterceptRule, where: string, c: EntryChecks): TableEntry {
  const issue = (field: string, message: string) => c.issues.push({ path: fieldPath(where, field), message });
  if (c.entryNames.has(e.name)) issue('name', `'${e.name}' appears twice (table entries are named in status and removed by name)`);
  c.entryNames.add(e.name);
  e.peers.forEach((p) => {
    if (!c.peerNames.has(p)) issue('peers', `no peer named '${p}'`);
  });
  const l = raw.listen !== undefined ? hostPortOf(raw.listen, fieldPath(where, 'listen'), c.issues) : undefined;
  const t = raw.target !== undefined ? hostPortOf(raw.target, fieldPath(where, 'target'), c.issues) : undefined;
  if (c.mode === 'explicit') {
    if (!l || !t) issue('', 'explicit interception needs listen and target');
    if (e.protocol === 'icmp') issue('', 'ICMP cannot be intercepted explicitly (there is no listener for it)');
    // Like a relay's `allow`: a listener other hosts can reach must name
    // the clients it carries, or a forged UDP source could have the far
    // server's replies sent to a third party (docs/SECURITY.md).
    if (l && raw.src === undefined && !isLoopbackAddress(l.address)) {
      issue(
        'src',
        `required for a listener on ${l.address}, which other hosts can reach: the clients it carries (ADDRESS or ADDRESS/PREFIX), or 'any' for everyone`,
      );
    }
  }
  return { ...e, ...(l ? { listen: l } : {}), ...(t ? { target: t } : {}) };
}
