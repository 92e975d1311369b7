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
  segmentObjectSchema,
  segmentIssues,
  MAX_SUBSCRIBERS,
  type AggregateSpec,
  type SendableAggregate,
  type ConfigSpec,
  type FlowPolicySpec,
  type PolicySpec,
  type SegmentSpec,
} from './schema.js';
import { flowSetIssues, NO_HOST_ADDRESSES, type HostAddresses } from './flow-set.js';

/** `flows[1].to[0]` style path, as users write it in YAML or JS. */
export function formatPath(path: readonly PropertyKey[], base = ''): string {
  let out = base;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/** The value at `path` in `input`, if the path leads anywhere. */
function valueAt(input: unknown, path: readonly PropertyKey[]): { found: boolean; value?: unknown } {
  let v: unknown = input;
  for (const key of path) {
    if (typeof v !== 'object' || v === null || !Object.prototype.hasOwnProperty.call(v, key)) return { found: false };
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return { found: true, value: v };
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `a string ('${v.length > 20 ? `${v.slice(0, 20)}…` : v}')`;
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

/**
 * One zod issue as a user should read it. The value is looked up in the
 * input (zod does not report it): a missing field is "required", a number
 * that is not finite (YAML `.inf`, or `1e400` which parses as Infinity)
 * "must be a finite number", a fraction where an integer belongs "must be
 * an integer".
 */
export function describeIssue(iss: z.core.$ZodIssue, input: unknown, base = ''): PolicyIssue {
  const path = formatPath(iss.path, base);
  if (iss.code === 'unrecognized_keys') {
    const keys = iss.keys.map((k) => `'${k}'`).join(', ');
    return { path, message: `unknown field${iss.keys.length > 1 ? 's' : ''} ${keys}` };
  }
  if (iss.code === 'invalid_union' && iss.message === 'Invalid input') {
    // A union without a message of its own: say what was found.
    const at = valueAt(input, iss.path);
    if (!at.found || at.value === undefined) return { path, message: 'required' };
    if (typeof at.value === 'number' && !Number.isFinite(at.value)) return { path, message: `must be a finite number (got ${String(at.value)})` };
    return { path, message: `not valid here: ${describeValue(at.value)}` };
  }
  if (iss.code === 'invalid_type') {
    const at = valueAt(input, iss.path);
    if (!at.found || at.value === undefined) return { path, message: `required (expected ${iss.expected})` };
    const v = at.value;
    if (typeof v === 'number' && !Number.isFinite(v)) return { path, message: `must be a finite number (got ${String(v)})` };
    if (typeof v === 'number' && iss.expected === 'int') return { path, message: `must be an integer (got ${v})` };
    return { path, message: `expected ${iss.expected}, got ${describeValue(v)}` };
  }
  return { path, message: iss.message };
}

function toIssues(error: z.ZodError, input: unknown, base: string): PolicyIssue[] {
  return error.issues.map((iss) => describeIssue(iss, input, base));
}

function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string, base: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw new PolicyValidationError(toIssues(r.error, input, base), what);
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
  const fast = fastAggregate(input);
  if (!fast) return parseAggregateSlow(input);
  const { to, messages, ...rest } = fast;
  return {
    type: 'aggregate',
    ...rest,
    messages: messages.map((m, i) => (m.stream === undefined ? { to: to[i]!, data: m.data } : { to: to[i]!, data: m.data, stream: m.stream })),
  };
}

/**
 * Validates an aggregate for sending: the same rules and errors as
 * parseAggregate, in the engines' column form. A large aggregate's message
 * objects are the caller's own (checked, read while sending, never
 * changed); nothing is built per message but its parsed destination.
 */
export function parseAggregateForSend(input: unknown): SendableAggregate {
  const fast = fastAggregate(input);
  if (fast) return fast;
  const { type: _type, ...spec } = parseAggregateSlow(input);
  return { ...spec, to: spec.messages.map((m) => m.to) };
}

function parseAggregateSlow(input: unknown): AggregateSpec {
  return parseWith(aggregateSchema, { type: 'aggregate', ...(input as object) }, 'invalid aggregate', '');
}

/** Below this many messages the schema alone is fast enough. */
const FAST_PATH_MIN_MESSAGES = 64;
/** The aggregate's fields but its messages (built once: omit() makes a new schema). */
const aggregateHeadSchema = aggregateObjectSchema.omit({ messages: true });

/**
 * The happy path of a large aggregate without a schema object per message:
 * the same rules (destination strings, through the schema's own cached
 * parser; data a Uint8Array; stream 1..64 characters; no other keys), the
 * other fields through the schema, the cross-field checks through the same
 * aggregateIssues. Anything unusual, including any error, returns
 * undefined and the full schema runs, so errors read the same either way.
 */
function fastAggregate(input: unknown): SendableAggregate | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const { messages, ...rest } = input as { messages?: unknown };
  if (!Array.isArray(messages) || messages.length < FAST_PATH_MIN_MESSAGES || messages.length > MAX_AGGREGATE_MESSAGES) return undefined;
  const to: SendableAggregate['to'][number][] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as { to?: unknown; data?: unknown; stream?: unknown } | null;
    if (typeof m !== 'object' || m === null || Object.getPrototypeOf(m) !== Object.prototype) return undefined;
    for (const k in m) if (k !== 'to' && k !== 'data' && k !== 'stream') return undefined;
    if (typeof m.to !== 'string' || !(m.data instanceof Uint8Array)) return undefined;
    const parsed = parseDestinationString(m.to);
    if (!parsed) return undefined;
    if (m.stream !== undefined && (typeof m.stream !== 'string' || m.stream.length < 1 || m.stream.length > 64)) return undefined;
    to[i] = parsed;
  }
  // The schedule's per-message array is checked here by the schema's own
  // rules, and the schema sees the rest: it would copy 65,536 numbers.
  const schedule = (rest as { schedule?: unknown }).schedule;
  const field = perMessageField(schedule);
  if (field === null) return undefined;
  const values = field ? (schedule as Record<string, unknown>)[field] : undefined;
  if (field && !numbersFit(values, field)) return undefined;
  const head = aggregateHeadSchema.safeParse({ type: 'aggregate', ...rest, ...(field ? { schedule: { ...(schedule as object), [field]: [] } } : {}) });
  if (!head.success) return undefined;
  if (field) (head.data.schedule as Record<string, unknown>)[field] = values;
  const checked = messages as SendableAggregate['messages'];
  if (aggregateIssues({ messages: checked, schedule: head.data.schedule }).length) return undefined;
  const { type: _type, ...fields } = head.data;
  return { ...fields, messages: checked, to };
}

/**
 * The per-message array field of a schedule: '' when it has none,
 * null when the schedule is not a plain object of a known kind (the
 * schema then explains).
 */
function perMessageField(schedule: unknown): 'sequence' | 'delaysMs' | 'offsetsMs' | '' | null {
  if (typeof schedule !== 'object' || schedule === null || Object.getPrototypeOf(schedule) !== Object.prototype) return null;
  const kind = (schedule as { kind?: unknown }).kind;
  if (kind === 'sequence') return 'sequence';
  if (kind === 'delays') return 'delaysMs';
  if (kind === 'range') return (schedule as { offsetsMs?: unknown }).offsetsMs === undefined ? '' : 'offsetsMs';
  return null;
}

/** The schema's rules for each per-message array (schema.ts: sequenceSchedule, delaysSchedule, rangeSchedule). */
function numbersFit(values: unknown, field: 'sequence' | 'delaysMs' | 'offsetsMs'): values is number[] {
  if (!Array.isArray(values)) return false;
  const max = field === 'delaysMs' ? 3_600_000 : Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) return false;
    // zod's int() is a safe integer: 2 ** 53 is not one.
    if (field === 'sequence' && !Number.isSafeInteger(v)) return false;
  }
  return true;
}

/** Validates a segmented multi-destination write. */
export function parseSegment(input: unknown): SegmentSpec {
  return fastSegment(input) ?? parseWith(segmentSchema, { type: 'segment', ...(input as object) }, 'invalid segment write', '');
}

const segmentHeadSchema = segmentObjectSchema.omit({ entries: true });

/**
 * The happy path of a write without a schema object per entry (the stream
 * scheduler writes every tick, with one entry per stream): the same rules,
 * destinations through the schema's cached parser; anything unusual
 * returns undefined and the schema runs, so errors read the same.
 */
function fastSegment(input: unknown): SegmentSpec | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const { entries, ...rest } = input as { entries?: unknown };
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_SUBSCRIBERS) return undefined;
  const out: SegmentSpec['entries'] = new Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as { to?: unknown; data?: unknown } | null;
    if (typeof e !== 'object' || e === null || Object.getPrototypeOf(e) !== Object.prototype) return undefined;
    for (const k in e) if (k !== 'to' && k !== 'data') return undefined;
    if (typeof e.to !== 'string' || !(e.data instanceof Uint8Array)) return undefined;
    const to = parseDestinationString(e.to);
    if (!to) return undefined;
    out[i] = { to, data: e.data };
  }
  if (segmentIssues({ entries: out }).length) return undefined;
  const head = segmentHeadSchema.safeParse({ type: 'segment', ...rest });
  if (!head.success) return undefined;
  return { ...head.data, entries: out };
}

/**
 * Validates a parsed config document (the YAML/JSON object, not the text):
 * each flow, then the checks across flows that `sluice run` would
 * otherwise meet only when it starts them (flowSetIssues: names, listen
 * overlaps, duplicate subscribers, relay loops through this host's
 * addresses `host`).
 */
export function parseConfig(input: unknown, host: HostAddresses = NO_HOST_ADDRESSES): ConfigSpec {
  const spec = parseWith(configSchema, input, 'invalid config', '');
  const issues = flowSetIssues(
    spec.flows.map((f, i) => ({ ...(f.name !== undefined ? { name: f.name } : {}), where: `flows[${i}]`, spec: f })),
    host,
  );
  if (issues.length)
    throw new PolicyValidationError(
      issues.map(({ path, message }) => ({ path, message })),
      'invalid config',
    );
  return spec;
}
