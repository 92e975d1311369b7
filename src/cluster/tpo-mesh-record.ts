/**
 * A TPO mesh registration (issue 21): the value at `<prefix>gateways/<name>`,
 * what one gateway tells the others so that they can pair with it and
 * carry flows to it. It holds where its tunnel listens, the key id it
 * pairs under, the NAME of the cluster key (never key material), the
 * destinations it delivers and the services it publishes. The schema is
 * strict: a record with any other field (a `key`, say) is refused, so a
 * careless writer cannot slip key material into the store through it.
 *
 * Pure: text in, a checked record or the reason it was refused out. Both
 * a gateway's own record (before it is written) and every record read
 * from the store (written by anyone) go through parseMeshRecord.
 */
import { z } from 'zod';
import type { PolicyIssue } from '../errors.js';
import { createSourceMatcher, parseSourceRule, type SourceRule } from '../policy/source-filter.js';
import { describeIssue } from '../policy/validate.js';
import { hostPortOf } from '../tpo/config/entries.js';
import type { Endpoint } from '../wire/endpoint.js';

/** Largest record accepted, bytes of JSON: a registration is small; a huge one is a mistake or an attack on every site. */
export const MAX_MESH_RECORD_BYTES = 64 * 1024;
export const MAX_MESH_ROUTES = 256;
export const MAX_MESH_SERVICES = 64;
/** A gateway's mesh key id: 1..65535, so that a pair's key id (two of them) fits the handshake's 32 bits. */
export const MAX_MESH_KEY_ID = 0xffff;

const name = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)');

export const meshServiceSchema = z.strictObject({
  /** The service's name at its site; other sites name their table entry `<gateway>.<service>`. */
  name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ - (1..32)'),
  protocol: z.enum(['tcp', 'udp']),
  /** The port other sites open their listener on (at their own mesh listen host). */
  port: z.number().int().min(1).max(65_535),
  /** HOST:PORT this site delivers the flows to: within its `routes`. */
  target: z.string().min(1).max(300),
});

export const meshRecordSchema = z.strictObject({
  name,
  /** HOST:PORT of the gateway's tunnel (its UDP peer port) as the other sites reach it. */
  address: z.string().min(1).max(300),
  /** This gateway's mesh key id (1..65535), unique in the mesh. */
  keyId: z.number().int().min(1).max(MAX_MESH_KEY_ID),
  /** The name of the cluster key the pair keys are derived from; every site holds that key's file. */
  keyRef: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)'),
  /** The destinations behind this gateway (what it delivers): ADDRESS or ADDRESS/PREFIX. */
  routes: z.array(z.string().min(1).max(100)).max(MAX_MESH_ROUTES),
  /** What it publishes: each other site opens a listener carrying to it. */
  services: z.array(meshServiceSchema).max(MAX_MESH_SERVICES).default([]),
});

export type MeshServiceInput = z.input<typeof meshServiceSchema>;
export type MeshRecordInput = z.input<typeof meshRecordSchema>;

export interface MeshService {
  readonly name: string;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
  readonly target: Endpoint;
}

/** A checked registration. `value` is its canonical JSON (what is written, and what a change is compared by). */
export interface MeshRecord {
  readonly name: string;
  readonly address: Endpoint;
  readonly keyId: number;
  readonly keyRef: string;
  readonly routes: readonly SourceRule[];
  readonly services: readonly MeshService[];
  readonly value: string;
}

export type MeshRecordParse = { ok: true; record: MeshRecord } | { ok: false; reason: string };

const hostPort = (e: Endpoint) => (e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`);
export const ruleText = (r: SourceRule) => (r.prefix === (r.family === 4 ? 32 : 128) ? r.address : `${r.address}/${r.prefix}`);

/** The table entry name other sites give a published service: within the 64 characters an entry name may have. */
export const meshEntryName = (gateway: string, service: string) => `${gateway}.${service}`;

function refuse(issues: readonly PolicyIssue[]): MeshRecordParse {
  return { ok: false, reason: issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ') };
}

/** Checks a record already parsed from JSON (or built by the gateway itself). */
export function checkMeshRecord(input: unknown): MeshRecordParse {
  const parsed = meshRecordSchema.safeParse(input);
  if (!parsed.success) return refuse(parsed.error.issues.map((i) => describeIssue(i, input)));
  const r = parsed.data;
  const issues: PolicyIssue[] = [];
  const address = hostPortOf(r.address, 'address', issues);
  // An unspecified address would make every other site send to itself.
  if (address && (address.address === '0.0.0.0' || address.address === '::'))
    issues.push({ path: 'address', message: `${address.address} is no address another site can reach` });
  const routes: SourceRule[] = [];
  r.routes.forEach((text, i) => {
    const p = parseSourceRule(text);
    if (p.ok) routes.push(p.rule);
    else issues.push({ path: `routes[${i}]`, message: p.reason });
  });
  const within = createSourceMatcher({ any: false, rules: routes });
  const names = new Set<string>();
  const ports = new Set<string>();
  const services: MeshService[] = [];
  r.services.forEach((s, i) => {
    const at = `services[${i}]`;
    if (names.has(s.name)) issues.push({ path: `${at}.name`, message: `'${s.name}' appears twice` });
    names.add(s.name);
    if (ports.has(`${s.protocol}/${s.port}`)) issues.push({ path: `${at}.port`, message: `${s.protocol} port ${s.port} appears twice` });
    ports.add(`${s.protocol}/${s.port}`);
    if (meshEntryName(r.name, s.name).length > 64)
      issues.push({ path: `${at}.name`, message: `'${meshEntryName(r.name, s.name)}' (the table entry name) is over 64 characters` });
    const target = hostPortOf(s.target, `${at}.target`, issues);
    // The far side would refuse a target outside what it delivers (deliver.allow): say so here, not per flow.
    if (target && !within(target.address)) issues.push({ path: `${at}.target`, message: `${target.address} is not within the gateway's routes` });
    if (target) services.push({ name: s.name, protocol: s.protocol, port: s.port, target });
  });
  if (issues.length || !address) return refuse(issues);
  const canonical = {
    name: r.name,
    address: hostPort(address),
    keyId: r.keyId,
    keyRef: r.keyRef,
    routes: routes.map(ruleText),
    services: services.map((s) => ({ name: s.name, protocol: s.protocol, port: s.port, target: hostPort(s.target) })),
  };
  return { ok: true, record: { name: r.name, address, keyId: r.keyId, keyRef: r.keyRef, routes, services, value: JSON.stringify(canonical) } };
}

/** Parses a stored value: bounded, JSON, then checkMeshRecord. */
export function parseMeshRecord(value: string): MeshRecordParse {
  if (Buffer.byteLength(value, 'utf8') > MAX_MESH_RECORD_BYTES) return { ok: false, reason: `over ${MAX_MESH_RECORD_BYTES} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  return checkMeshRecord(json);
}
