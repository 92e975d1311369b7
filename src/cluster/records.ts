/**
 * What the cluster's keys hold, checked whole before anything is used:
 * a value someone else wrote straight into the store is refused with the
 * reasons, never applied in part (docs/CLUSTER.md, "Keys").
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { allowSchema, destinationSchema, TIER_NAMES } from '../policy/schema.js';
import { PAYLOAD_FORMATS } from '../wire/payload-format.js';
import { formatEndpoint } from '../wire/endpoint.js';
import { describeIssue } from '../policy/validate.js';

/** Cluster flow and node names: they become parts of keys and of local flow names (`cluster.NAME.edge`, 64 at most). */
const nameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/, 'use 1-48 letters, digits, underscore or dash, starting with a letter or digit');

const portSchema = z.number().int().min(1).max(65535);

/** Most subscribers one cluster flow may list (as a local replicate flow). */
export const MAX_CLUSTER_SUBSCRIBERS = 65536;

export const clusterFlowSchema = z
  .strictObject({
    name: nameSchema,
    ingest: z.strictObject({
      /** The node the source sends to. */
      primary: nameSchema,
      /** A second node the source also sends to; it feeds the edges when the primary's lease is gone. */
      backup: nameSchema.optional(),
      /** Both ingest nodes listen on their cluster address at this port. */
      port: portSchema,
      /** Sources the ingest nodes relay (address, CIDR prefix, list, or 'any'). */
      allow: allowSchema,
    }),
    /** Edges listen for the hop from the ingest on their cluster address at this port (default: ingest.port). */
    relayPort: portSchema.optional(),
    subscribers: z.array(destinationSchema).max(MAX_CLUSTER_SUBSCRIBERS),
    payload: z.enum(PAYLOAD_FORMATS).default('any'),
    /** Load one subscriber puts on a node, in the units of node capacity (default 1). */
    weight: z.number().positive().max(1e6).default(1),
  })
  .superRefine((f, ctx) => {
    if (f.ingest.backup !== undefined && f.ingest.backup === f.ingest.primary)
      ctx.addIssue({ code: 'custom', path: ['ingest', 'backup'], message: 'must differ from ingest.primary' });
    const seen = new Set<string>();
    f.subscribers.forEach((s, i) => {
      const k = formatEndpoint(s);
      if (seen.has(k)) ctx.addIssue({ code: 'custom', path: ['subscribers', i], message: `${k} is listed twice` });
      seen.add(k);
    });
  });

export type ClusterFlowInput = z.input<typeof clusterFlowSchema>;
export type ClusterFlowSpec = z.output<typeof clusterFlowSchema>;

export const clusterNodeSchema = z.strictObject({
  name: nameSchema,
  /** The node's address on the cluster network: ingest and edge flows listen on it, the hop between nodes goes to it. */
  address: z.string().refine((a) => isIP(a) !== 0, 'must be an IP address'),
  tier: z.enum(TIER_NAMES),
  /** Load units the node takes (subscribers, weighted by their flow's weight). */
  capacity: z.number().positive().max(1e9),
  /** The node's HTTP API, for operators (not used between nodes). */
  api: z.string().max(300).optional(),
  version: z.string().max(64),
  startedAt: z.string().max(64),
});

export type ClusterNodeRecord = z.output<typeof clusterNodeSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

function parseJson<T>(schema: z.ZodType<T>, text: string, what: string): Parsed<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `${what} is not JSON: ${(err as Error).message}` };
  }
  const r = schema.safeParse(raw);
  if (!r.success)
    return {
      ok: false,
      reason: r.error.issues
        .map((i) => describeIssue(i, raw))
        .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
        .join('; '),
    };
  return { ok: true, value: r.data };
}

/** A flow's key value, checked whole; its name must be the key's. */
export function parseClusterFlow(text: string, keyName: string): Parsed<ClusterFlowSpec> {
  const r = parseJson(clusterFlowSchema, text, 'the flow');
  if (r.ok && r.value.name !== keyName) return { ok: false, reason: `name '${r.value.name}' differs from the key's '${keyName}'` };
  return r;
}

export function parseClusterNode(text: string, keyName: string): Parsed<ClusterNodeRecord> {
  const r = parseJson(clusterNodeSchema, text, 'the node record');
  if (r.ok && r.value.name !== keyName) return { ok: false, reason: `name '${r.value.name}' differs from the key's '${keyName}'` };
  return r;
}

/** The port edges listen on for this flow's hop. */
export function relayPortOf(f: ClusterFlowSpec): number {
  return f.relayPort ?? f.ingest.port;
}

/** A flow as written to the store: the input form, so that what `status` prints is what the user wrote. */
export function clusterFlowJson(f: ClusterFlowSpec): Record<string, unknown> {
  return {
    name: f.name,
    ingest: {
      primary: f.ingest.primary,
      ...(f.ingest.backup !== undefined ? { backup: f.ingest.backup } : {}),
      port: f.ingest.port,
      allow: f.ingest.allow.any ? 'any' : f.ingest.allow.rules.map((r) => `${r.address}/${r.prefix}`),
    },
    ...(f.relayPort !== undefined ? { relayPort: f.relayPort } : {}),
    subscribers: f.subscribers.map((s) => formatEndpoint(s)),
    payload: f.payload,
    weight: f.weight,
  };
}
