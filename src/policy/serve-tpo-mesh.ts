/**
 * The serve config's `cluster.tpoMesh` (issue 21): one TPO gateway of the
 * daemon's `tpo:` list joins the cluster's TPO mesh (src/cluster/tpo-mesh.ts,
 * docs/CLUSTER.md, "TPO meshes") when the daemon runs as a cluster node. Checked
 * here as far as a config file can be: shapes, addresses, names, rates.
 * What needs the running gateway (a service target within its routes,
 * the cluster key file's mode and bytes, a gateway of that name) is
 * checked when the node starts, and refused there naming the field.
 *
 * Pure: the schema and its types; paths stay as written (the daemon
 * resolves `keyFile` against the config file's folder).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseEndpoint } from '../wire/endpoint.js';
import { parseSourceRule } from './source-filter.js';
import { parseBitRateText } from './units.js';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

const hostPort = z
  .string()
  .max(300)
  .superRefine((text, ctx) => {
    const r = parseEndpoint(text.includes('://') ? text : `udp://${text}`);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.reason });
    else if (r.endpoint.address === '0.0.0.0' || r.endpoint.address === '::')
      ctx.addIssue({ code: 'custom', message: `${r.endpoint.address} is no address another site can reach` });
  });

const ip = z
  .string()
  .max(100)
  .refine((t) => isIP(t) !== 0, { message: 'expected an IP address literal' });

const rule = z
  .string()
  .max(100)
  .superRefine((text, ctx) => {
    const r = parseSourceRule(text);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.reason });
  });

const rate = z.union([z.string(), z.number()]).superRefine((v, ctx) => {
  const bits = typeof v === 'number' ? v : parseBitRateText(v);
  if (bits === undefined || !Number.isFinite(bits) || bits <= 0)
    ctx.addIssue({ code: 'custom', message: `'${v}' is not a bit rate (e.g. 50M, 800k, 2500000)` });
});

/** One service the site publishes (the shape of a registration's services[], src/cluster/tpo-mesh-record.ts). */
const serviceSchema = z.strictObject({
  /** Other sites name their table entry `<gateway>.<name>`. */
  name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ - (1..32)'),
  protocol: z.enum(['tcp', 'udp']),
  /** The port the other sites open their listener on, at their own `listen.host`. */
  port: z.number().int().min(1).max(65_535),
  /** HOST:PORT this site delivers the flows to: within its routes. */
  target: hostPort,
});

export const tpoMeshConfigSchema = z.strictObject({
  /** The `tpo:` gateway (its config's `name`) that joins the mesh; may be left out when there is one gateway. */
  gateway: z.string().regex(NAME, 'letters, digits, _ . - (1..64)').optional(),
  /** The cluster key file, the same on every site (mode 600; a peer keyFile's rules); relative to this file. */
  keyFile: z.string().min(1, 'must not be empty').max(4096),
  /** The key's name, stored in the registration (default: the file's name without extension). */
  keyRef: z.string().regex(NAME, 'letters, digits, _ . - (1..64)').optional(),
  /** HOST:PORT the other sites reach the gateway's tunnel at (default: its listen, or --address with its port when it listens on 0.0.0.0 or ::). */
  address: hostPort.optional(),
  /** This gateway's mesh key id, 1..65535, unique in the mesh (default: from its name). */
  keyId: z.number().int().min(1).max(0xffff).optional(),
  /** The destinations behind this site, ADDRESS or ADDRESS/PREFIX (default: the gateway's deliver.allow). */
  routes: z.array(rule).max(256).optional(),
  /** What this site publishes: every other site opens a listener for each. */
  services: z.array(serviceSchema).max(64).default([]),
  /** Where this site opens listeners for the other sites' services (absent: none, the site pairs only). */
  listen: z.strictObject({ host: ip, src: z.string().min(1).max(100).optional() }).optional(),
  /** Fields for every mesh peer, as in a TPO config's peers[]. */
  peer: z
    .strictObject({
      maxRate: rate.optional(),
      initialRate: rate.optional(),
      mtu: z.number().int().min(576).max(65_535).optional(),
    })
    .optional(),
});

export type TpoMeshConfig = z.output<typeof tpoMeshConfigSchema>;

/** The serve config's `cluster` section: what a node does in the cluster beyond `--cluster`'s flags. */
export const serveClusterSchema = z.strictObject({
  tpoMesh: tpoMeshConfigSchema.optional(),
});

export type ServeClusterConfig = z.output<typeof serveClusterSchema>;
