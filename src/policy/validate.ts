/**
 * The boundary: turns untrusted input (library call, CLI flags, config file)
 * into normalized specs, or a PolicyValidationError whose issues name the
 * field and the reason.
 */
import type { z } from 'zod';
import { PolicyValidationError, type PolicyIssue } from '../errors.js';
import {
  configSchema,
  flowPolicySchema,
  policySchema,
  aggregateSchema,
  aggregateObjectSchema,
  aggregateIssues,
  parseDestinationString,
  MAX_AGGREGATE_MESSAGES,
  segmentSchema,
  type AggregateSpec,
  type ConfigSpec,
  type FlowPolicySpec,
  type PolicySpec,
  type SegmentSpec,
} from './schema.js';

/** `flows[1].to[0]` style path, as users write it in YAML or JS. */
export function formatPath(path: readonly PropertyKey[], base = ''): string {
  let out = base;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

function toIssues(error: z.ZodError, base: string): PolicyIssue[] {
  return error.issues.map((iss) => {
    if (iss.code === 'unrecognized_keys') {
      const keys = iss.keys.map((k) => `'${k}'`).join(', ');
      return { path: formatPath(iss.path, base), message: `unknown field${iss.keys.length > 1 ? 's' : ''} ${keys}` };
    }
    if (iss.code === 'invalid_type' && iss.input === undefined) {
      return { path: formatPath(iss.path, base), message: `required (expected ${iss.expected})` };
    }
    return { path: formatPath(iss.path, base), message: iss.message };
  });
}

function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string, base: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw new PolicyValidationError(toIssues(r.error, base), what);
}

/** Validates any policy (redirect, replicate, aggregate, segment). */
export function parsePolicy(input: unknown, base = ''): PolicySpec {
  return parseWith(policySchema, input, 'invalid policy', base);
}

/** Validates a standing flow policy (redirect or replicate). */
export function parseFlowPolicy(input: unknown, base = ''): FlowPolicySpec {
  return parseWith(flowPolicySchema, input, 'invalid policy', base);
}

/** Validates an aggregate send (messages + schedule). */
export function parseAggregate(input: unknown): AggregateSpec {
  return fastAggregate(input) ?? parseWith(aggregateSchema, { type: 'aggregate', ...(input as object) }, 'invalid aggregate', '');
}

/** Below this many messages the schema alone is fast enough. */
const FAST_PATH_MIN_MESSAGES = 64;
const MESSAGE_KEYS = new Set(['to', 'data', 'stream']);

/**
 * The happy path of a large aggregate without a schema object per message:
 * the same rules (destination strings, through the schema's own cached
 * parser; data a Uint8Array; stream 1..64 characters; no other keys), the
 * other fields through the schema, the cross-field checks through the same
 * aggregateIssues. Anything unusual, including any error, returns
 * undefined and the full schema runs, so errors read the same either way.
 */
function fastAggregate(input: unknown): AggregateSpec | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const { messages, ...rest } = input as { messages?: unknown };
  if (!Array.isArray(messages) || messages.length < FAST_PATH_MIN_MESSAGES || messages.length > MAX_AGGREGATE_MESSAGES) return undefined;
  const out: AggregateSpec['messages'] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as { to?: unknown; data?: unknown; stream?: unknown } | null;
    if (typeof m !== 'object' || m === null || Object.getPrototypeOf(m) !== Object.prototype) return undefined;
    for (const k in m) if (!MESSAGE_KEYS.has(k)) return undefined;
    if (typeof m.to !== 'string' || !(m.data instanceof Uint8Array)) return undefined;
    const to = parseDestinationString(m.to);
    if (!to) return undefined;
    if (m.stream === undefined) out[i] = { to, data: m.data };
    else if (typeof m.stream === 'string' && m.stream.length >= 1 && m.stream.length <= 64) out[i] = { to, data: m.data, stream: m.stream };
    else return undefined;
  }
  const head = aggregateObjectSchema.omit({ messages: true }).safeParse({ type: 'aggregate', ...rest });
  if (!head.success) return undefined;
  const spec = { ...head.data, messages: out };
  return aggregateIssues(spec).length === 0 ? spec : undefined;
}

/** Validates a segmented multi-destination write. */
export function parseSegment(input: unknown): SegmentSpec {
  return parseWith(segmentSchema, { type: 'segment', ...(input as object) }, 'invalid segment write', '');
}

/** Validates a parsed config document (the YAML/JSON object, not the text). */
export function parseConfig(input: unknown): ConfigSpec {
  const spec = parseWith(configSchema, input, 'invalid config', '');
  const names = new Map<string, number>();
  const issues: PolicyIssue[] = [];
  spec.flows.forEach((f, i) => {
    if (f.name === undefined) return;
    const prev = names.get(f.name);
    if (prev !== undefined) issues.push({ path: `flows[${i}].name`, message: `'${f.name}' is already used by flows[${prev}]` });
    else names.set(f.name, i);
  });
  if (issues.length) throw new PolicyValidationError(issues, 'invalid config');
  return spec;
}
