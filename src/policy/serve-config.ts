/**
 * The config of `sluice serve` (the daemon, docs/HTTP-API.md): a superset
 * of `sluice run`'s config — `tier` and `flows` read the same and are
 * checked the same (each flow by the flow schema, then across flows by
 * flowSetIssues) — plus the HTTP API's settings, where the state file
 * lives, the log level and the TPO gateways to run in the same process.
 *
 * Pure: text in, validated ServeConfig out (through the bounded YAML
 * reader, parseYamlDocument). Paths stay as written; the daemon resolves
 * them against the config file's folder and fills the defaults that
 * depend on the host (src/server/config-file.ts).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { PolicyValidationError, type PolicyIssue } from '../errors.js';
import { parseYamlOrThrow } from './config.js';
import { flowSetIssues, NO_HOST_ADDRESSES, type HostAddresses } from './flow-set.js';
import { flowPolicySchema, TIER_NAMES, type FlowPolicy, type TierChoice } from './schema.js';
import { describeIssue } from './validate.js';
import { serveClusterSchema, type ServeClusterConfig } from './serve-tpo-mesh.js';
import { parseConfigWithTcp } from './tcp-config.js';
import type { TcpRedirectPolicy } from './tcp-redirect.js';

/** The API's port when none is configured. */
export const DEFAULT_API_PORT = 9180;
/** Largest request body the API reads by default, bytes (a flow with thousands of subscribers fits). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** Largest request body the API may be configured to read: an aggregate of 64 MiB written as base64, with room. */
export const MAX_MAX_BODY_BYTES = 128 * 1024 * 1024;
/** The log levels `log.level` and `--log-level` accept (pino's, as src/server/log.ts uses them). */
export const SERVE_LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type ServeLogLevel = (typeof SERVE_LOG_LEVELS)[number];

/** Where the API listens: an IP literal (or `localhost`) and a port. */
export interface ListenAddress {
  /** IPv6 without brackets. */
  readonly host: string;
  /** 0: the OS picks (tests). */
  readonly port: number;
}

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (IPv4 loopback). Only IP
 * literals and `localhost`: the API's address is a security decision,
 * not something DNS should be able to change.
 */
export function parseListenAddress(text: string): { ok: true; listen: ListenAddress } | { ok: false; reason: string } {
  const t = text.trim().replace(/^https?:\/\//i, '');
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(t);
  if (v6) [, host = '', port = ''] = v6;
  else {
    const colon = t.lastIndexOf(':');
    if (colon < 0) return { ok: false, reason: `expected HOST:PORT (e.g. 127.0.0.1:${DEFAULT_API_PORT} or [::1]:${DEFAULT_API_PORT}), got '${text}'` };
    host = t.slice(0, colon) || '127.0.0.1';
    port = t.slice(colon + 1);
    if (host.includes(':')) return { ok: false, reason: `IPv6 addresses need brackets: [${host}]:${port}` };
  }
  if (host !== 'localhost' && isIP(host) === 0) return { ok: false, reason: `'${host}' is not an IP address (or localhost)` };
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return { ok: false, reason: `port '${port}' is not a number from 0 to 65535` };
  return { ok: true, listen: { host, port: Number(port) } };
}

/** `127.0.0.1:9180`, `[::1]:9180`: how listen addresses are written back (logs, URLs). */
export function formatListenAddress(l: ListenAddress): string {
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

const listenSchema = z.string().transform((text, ctx): ListenAddress => {
  const r = parseListenAddress(text);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.reason, input: text });
    return z.NEVER;
  }
  return r.listen;
});

const path = z.string().min(1, 'must not be empty').max(4096);

const apiSchema = z.strictObject({
  /** Default 127.0.0.1:9180: loopback only. Any other address is the operator's explicit choice. */
  listen: listenSchema.prefault(`127.0.0.1:${DEFAULT_API_PORT}`),
  /** Bearer token file, created (mode 0600) if missing; default: see src/server/config-file.ts. */
  tokenFile: path.optional(),
  /** HTTPS: PEM certificate (chain) and private key files. */
  tls: z.strictObject({ cert: path, key: path }).optional(),
  /** Larger request bodies are refused (413) without being read whole. */
  maxBodyBytes: z.number().int().min(1024).max(MAX_MAX_BODY_BYTES).default(DEFAULT_MAX_BODY_BYTES),
  /** Requests per token: `burst` at once, refilled at `perSecond` on average (429 over it). */
  rateLimit: z
    .strictObject({
      perSecond: z.number().int().min(1).max(1_000_000).default(50),
      burst: z.number().int().min(1).max(10_000_000).default(100),
    })
    .prefault({}),
});

const count = (max: number) => z.number().int().min(1).max(max).optional();

/**
 * `fanout:`: a live fan-out run by the daemon (docs/FANOUT.md), the options
 * of `Fanout.start` (src/control/fanout.ts checks the addresses and inputs
 * when the daemon resolves the file).
 */
export const serveFanoutSchema = z.strictObject({
  http: z.string().max(300).optional(),
  tcp: z
    .array(z.strictObject({ listen: z.string().max(300), input: z.string().max(300) }))
    .max(64)
    .optional(),
  inputs: z.array(z.string().max(400)).max(1024).optional(),
  allow: z.array(z.string().max(100)).max(1024).optional(),
  interface: z.string().min(1).max(64).optional(),
  limits: z
    .strictObject({
      maxClients: count(100_000),
      maxPending: count(100_000),
      headerTimeoutMs: count(600_000),
      maxHeaderBytes: count(1024 * 1024),
      pipeBytes: count(256 * 1024 * 1024),
      chunkBytes: count(16 * 1024 * 1024),
      flushMs: count(10_000),
      dropAfterMs: count(3_600_000),
    })
    .optional(),
});
export type ServeFanoutConfig = z.output<typeof serveFanoutSchema>;

export const serveConfigSchema = z.strictObject({
  tier: z.enum(['auto', ...TIER_NAMES]).default('auto'),
  /** As `sluice run`'s flows; may be empty: flows can come through the API. */
  flows: z.array(flowPolicySchema).default([]),
  api: apiSchema.prefault({}),
  /** The state file (API changes that survive a restart); default: beside the config, `<name>.state.json`. */
  state: path.optional(),
  log: z.strictObject({ level: z.enum(SERVE_LOG_LEVELS).default('info') }).prefault({}),
  /** TPO gateways run in the same process; each `config` path relative to this file. */
  tpo: z
    .array(z.strictObject({ config: path }))
    .max(64)
    .default([]),
  /** What the daemon does as a cluster node (`--cluster`): its TPO mesh (serve-tpo-mesh.ts). */
  cluster: serveClusterSchema.optional(),
  /** A live fan-out (HTTP/TCP clients of UDP/RTP inputs) run by the daemon. */
  fanout: serveFanoutSchema.optional(),
});

/** A validated serve config: flows as written (Sluice.apply validates again), everything else parsed with defaults. */
export interface ServeConfig {
  readonly tier: TierChoice;
  readonly flows: readonly FlowPolicy[];
  /** The `type: tcp-redirect` entries of `flows:`, as written (taken out of `flows`; src/policy/tcp-config.ts). */
  readonly tcpFlows?: readonly TcpRedirectPolicy[];
  readonly api: {
    readonly listen: ListenAddress;
    readonly tokenFile?: string;
    readonly tls?: { readonly cert: string; readonly key: string };
    readonly maxBodyBytes: number;
    readonly rateLimit: { readonly perSecond: number; readonly burst: number };
  };
  readonly state?: string;
  readonly log: { readonly level: ServeLogLevel };
  readonly tpo: readonly { readonly config: string }[];
  readonly cluster?: ServeClusterConfig;
  readonly fanout?: ServeFanoutConfig;
}

/**
 * Validates a parsed serve config (the YAML/JSON value): the schema with
 * field paths (`api.rateLimit.burst`, `flows[1].to[0]`), then the checks
 * across flows that `sluice run` makes (names, listen overlaps, duplicate
 * subscribers, relay loops through `host`'s addresses).
 */
export function parseServeConfig(value: unknown, host: HostAddresses = NO_HOST_ADDRESSES, source = 'serve config'): ServeConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PolicyValidationError([{ path: '', message: 'expected a mapping (tier, flows, api, state, log, tpo, cluster, fanout)' }], `invalid ${source}`);
  }
  // tcp-redirect entries: validated with the UDP flows (names across both, TCP ports), then taken out.
  let tcpFlows: TcpRedirectPolicy[] = [];
  const flowsValue = (value as { flows?: unknown }).flows;
  if (Array.isArray(flowsValue) && flowsValue.some((f) => (f as { type?: unknown } | null)?.type === 'tcp-redirect')) {
    try {
      const split = parseConfigWithTcp({ flows: flowsValue }, host);
      tcpFlows = split.tcp;
      value = { ...value, flows: split.udp };
    } catch (err) {
      if (err instanceof PolicyValidationError) throw new PolicyValidationError(err.issues, `invalid ${source}`);
      throw err;
    }
  }
  const r = serveConfigSchema.safeParse(value);
  if (!r.success) throw new PolicyValidationError(r.error.issues.map((iss) => describeIssue(iss, value)) as PolicyIssue[], `invalid ${source}`);
  const spec = r.data;
  const issues = flowSetIssues(
    spec.flows.map((f, i) => ({ ...(f.name !== undefined ? { name: f.name } : {}), where: `flows[${i}]`, spec: f })),
    host,
  );
  if (issues.length)
    throw new PolicyValidationError(
      issues.map(({ path: p, message }) => ({ path: p, message })),
      `invalid ${source}`,
    );
  const { tokenFile, tls, ...api } = spec.api;
  return {
    tier: spec.tier,
    flows: ((value as { flows?: FlowPolicy[] }).flows ?? []).slice(),
    ...(tcpFlows.length ? { tcpFlows } : {}),
    api: { ...api, ...(tokenFile !== undefined ? { tokenFile } : {}), ...(tls ? { tls } : {}) },
    ...(spec.state !== undefined ? { state: spec.state } : {}),
    log: spec.log,
    tpo: spec.tpo,
    ...(spec.cluster ? { cluster: spec.cluster } : {}),
    ...(spec.fanout ? { fanout: spec.fanout } : {}),
  };
}

/**
 * Parses and validates serve config text (YAML, or JSON). Syntax errors,
 * duplicate keys, excessive nesting and aliases come with their line
 * (`source:12: ...`), schema errors with their field path.
 */
export function parseServeConfigText(text: string, source = 'serve config', host?: HostAddresses): ServeConfig {
  return parseServeConfig(parseYamlOrThrow(text, source), host, source);
}
