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
 *       mtu: 9000                    # the path's IP MTU (default 1500; 65535 to a loopback peer)
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
import { ConfigError, type PolicyIssue } from '../../errors.js';
import { z } from 'zod';
import type { Endpoint } from '../../wire/endpoint.js';
import { parseYamlDocument } from '../../policy/config.js';
import { describeIssue } from '../../policy/validate.js';
import { parseSourceRule, type SourceRule } from '../../policy/source-filter.js';
import { compileTableEntry, hostPortOf, peerSchema, resolvePeer, tableEntrySchema, type PeerConfig, type TableEntry } from './entries.js';

export { keyFromFile, MAX_RATE_BITS, MIN_RATE_BITS, parseBitRate, type PeerConfig, type TableEntry } from './entries.js';

/** Largest TPO config file, bytes. */
export const MAX_TPO_CONFIG_BYTES = 1024 * 1024;

/** A TPO config was refused: every problem in `issues`, `source` the file. A ConfigError (SLUICE_ERR_INVALID_CONFIG). */
export class TpoConfigError extends ConfigError {
  override name = 'TpoConfigError';
  constructor(issues: readonly string[], source: string) {
    super(`invalid TPO config ${source}:\n  ${issues.join('\n  ')}`, { issues, source });
  }
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

const schema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .default('tpo'),
  listen: z.string().min(1),
  // None is valid: a TPO mesh site (src/cluster/tpo-mesh.ts) starts alone and learns its peers from the cluster store.
  peers: z.array(peerSchema).default([]),
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
      /**
       * A client intercepted while no session with its peer is up (the pair
       * is still forming, the peer is unreachable or its key differs) waits
       * at most this for one, then is reset (flowfail 'noSession').
       */
      sessionWaitMs: z.number().int().min(1000).max(600_000).default(10_000),
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
    .default({
      maxFlows: 10_000,
      udpIdleMs: 60_000,
      peerDeadMs: 30_000,
      openTimeoutMs: 30_000,
      sessionWaitMs: 10_000,
      maxFlowsPerSource: 1_000,
      tcpIdleMs: 3_600_000,
    }),
  control: z.string().optional(),
});

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
    readonly sessionWaitMs: number;
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
  const issues: PolicyIssue[] = [];
  const prefix = (text: string, where: string): SourceRule | undefined => {
    const r = parseSourceRule(text);
    if (!r.ok) issues.push({ path: where, message: r.reason });
    return r.ok ? r.rule : undefined;
  };
  const listen = hostPortOf(c.listen, 'listen', issues, true);
  const peerChecks = { names: new Set<string>(), keyIds: new Set<number>(), readKey, issues };
  const peers = c.peers.map((p, i) => resolvePeer(p, `peers[${i}]`, peerChecks)).filter((p): p is PeerConfig => p !== undefined);
  const entryChecks = { mode: c.intercept.mode, peerNames: peerChecks.names, entryNames: new Set<string>(), issues };
  const table = c.table.map((raw, i) => compileTableEntry(raw, i, `table[${i}]`, entryChecks)).filter((e): e is TableEntry => e !== undefined);
  const routes: RouteConfig[] = [];
  c.routes.forEach((r, i) => {
    if (!peerChecks.names.has(r.peer)) issues.push({ path: `routes[${i}].peer`, message: `no peer named '${r.peer}'` });
    const dst = prefix(r.dst, `routes[${i}].dst`);
    if (dst) routes.push({ dst, peer: r.peer });
  });
  const allow = c.deliver.allow.map((a, i) => prefix(a, `deliver.allow[${i}]`)).filter((x): x is SourceRule => !!x);
  if (issues.length || !listen)
    throw new TpoConfigError(issues.length ? issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)) : ['listen: invalid'], source);
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
