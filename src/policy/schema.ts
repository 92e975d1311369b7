/**
 * The policy model: one zod schema per policy type, shared by the library,
 * the CLI and the config file, so all three reject bad input with the same
 * messages. Parsing yields normalized specs (endpoints parsed, defaults
 * filled); see docs/POLICY.md for every field.
 */
import { z } from 'zod';
import { parseEndpointInput, type Endpoint } from '../wire/endpoint.js';
import { MAX_UDP_PAYLOAD } from '../wire/udp.js';
import { PAYLOAD_FORMATS } from '../wire/payload-format.js';
import { parseSourceRule, type SourceFilter, type SourceRule } from './source-filter.js';
import { multicastIssues, multicastOutSchema, multicastSchema } from './multicast.js';

/** Most subscribers one replicate flow may list. */
export const MAX_SUBSCRIBERS = 65536;
/** Most messages one aggregate may carry. */
export const MAX_AGGREGATE_MESSAGES = 65536;
/** Most bytes one aggregate or segmented write may carry (64 MiB). */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024;

export const TIER_NAMES = ['kernel', 'batched', 'portable'] as const;
export type TierName = (typeof TIER_NAMES)[number];
export type TierChoice = TierName | 'auto';
/**
 * The engines one-shot sends (aggregates, segmented writes, stream
 * schedulers) run on. A tier names the engine it uses (the kernel tier has
 * none of its own and uses the batched one); results name both.
 */
export type SendEngineName = 'portable' | 'batched';

const endpointInput = z.union([z.string(), z.strictObject({ host: z.string(), port: z.number().int() })], {
  error: (iss) => (iss.input === undefined ? undefined : "expected 'udp://HOST:PORT' or { host, port }"),
});

/**
 * Parsed endpoint strings, per port-zero rule. An aggregate names the same
 * few destinations thousands of times; parsing each string once keeps
 * validation from dominating the cost of a send. Bounded: cleared when full.
 */
const parsedStrings = [new Map<string, ReturnType<typeof parseEndpointInput>>(), new Map<string, ReturnType<typeof parseEndpointInput>>()];
const PARSED_MAX = 4096;

function parseCached(value: z.infer<typeof endpointInput>, opts: { allowPortZero: boolean }): ReturnType<typeof parseEndpointInput> {
  if (typeof value !== 'string') return parseEndpointInput(value, opts);
  const cache = parsedStrings[opts.allowPortZero ? 1 : 0]!;
  let r = cache.get(value);
  if (!r) {
    if (cache.size >= PARSED_MAX) cache.clear();
    r = parseEndpointInput(value, opts);
    cache.set(value, r);
  }
  return r;
}

function endpointSchema(opts: { allowPortZero: boolean }) {
  return endpointInput.transform((value, ctx): Endpoint => {
    const parsed = parseCached(value, opts);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: parsed.reason, input: value });
      return z.NEVER;
    }
    return parsed.endpoint;
  });
}

/** A destination or subscriber: port 1..65535. */
export const destinationSchema = endpointSchema({ allowPortZero: false });
/** A listen address: port 0 asks the OS for a free port. */
export const listenSchema = endpointSchema({ allowPortZero: true });

/**
 * Allowed sources: `any`, one `ADDRESS[/PREFIX]`, or a list of them. Required:
 * a relay must never forward for strangers, so "everyone" has to be written
 * down as `any`.
 */
export const allowSchema = z
  .union([z.string(), z.array(z.string())], {
    error: (iss) =>
      iss.input === undefined
        ? "required: list the sources to relay (address or CIDR prefix), or write 'any'"
        : "must be 'any', an address or CIDR prefix, or a list of them",
  })
  .transform((value, ctx): SourceFilter => {
    if (value === 'any') return { any: true };
    const list = Array.isArray(value) ? value : [value];
    if (list.length === 0) {
      ctx.addIssue({ code: 'custom', message: "list at least one source, or write 'any'", input: value });
      return z.NEVER;
    }
    const rules: SourceRule[] = [];
    list.forEach((text, i) => {
      const parsed = parseSourceRule(text);
      if (parsed.ok) rules.push(parsed.rule);
      else {
        const message = text.trim() === 'any' ? "'any' must stand alone (allow: any)" : parsed.reason;
        ctx.addIssue({ code: 'custom', message, input: text, path: Array.isArray(value) ? [i] : [] });
      }
    });
    return rules.length === list.length ? { any: false, rules } : z.NEVER;
  });

const flowName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'use 1-64 letters, digits, dot, underscore or dash, starting with a letter or digit');

const flowCommon = {
  name: flowName.optional(),
  listen: listenSchema,
  allow: allowSchema,
  /** Datagrams longer than this are dropped and counted as tooLarge. */
  maxDatagramSize: z.number().int().min(1).max(MAX_UDP_PAYLOAD).default(MAX_UDP_PAYLOAD),
  /**
   * `mpegts`: only whole 188-byte TS packets with sync bytes are relayed;
   * `rtp` and `rtp-mpegts` (TS inside RTP): only datagrams with an RTP
   * version 2 header. Others count as malformed. The three media formats
   * are also monitored (see `monitor`).
   */
  payload: z.enum(PAYLOAD_FORMATS).default('any'),
  /**
   * Media payloads: watch the stream (RTP sequence, loss, jitter; MPEG-TS
   * after TR 101 290) from one extra copy of each datagram sent to Sluice
   * itself, with counters in stats().media and 'alarm' events. Default on
   * for media payloads; ignored for `any`.
   */
  monitor: z.boolean().default(true),
  /** RTP clock rate for the interarrival jitter, Hz (90000: video and TS over RTP). */
  rtpClockRate: z.number().int().min(1000).max(1_000_000).default(90_000),
  /**
   * RTP: `port+1` carries the stream's RTCP too — sender reports from the
   * allowed sources on listen port+1 go to each subscriber's port+1, and
   * the subscribers' receiver reports arriving there are read (never
   * forwarded). `none`: only the RTP port is relayed.
   */
  rtcp: z.enum(['none', 'port+1']).default('none'),
  /**
   * With rtcp port+1: a subscriber that sends no RTCP report for this long
   * is suspended (sent nothing) until it reports again, ms. Default: never.
   */
  subscriberTimeoutMs: z.number().int().min(1000).max(3_600_000).optional(),
  /** Copies waiting in the send queue beyond this are dropped and counted as queueFull. */
  maxQueuedPackets: z.number().int().min(1).max(1_000_000).default(4096),
  /**
   * Suspend a subscriber once the network has reported this many of its
   * copies undeliverable (ICMP errors, no gap over 10 s between them);
   * default: never. See docs/POLICY.md, "Unreachable subscribers".
   */
  suspendAfterErrors: z.number().int().min(1).max(1_000_000).optional(),
  /** First wait before a suspended subscriber is tried again, ms; doubles after each failed retry up to 60 s (or this, if longer). */
  suspendRetryMs: z.number().int().min(100).max(3_600_000).default(1000),
  /** A listen address that is a group (224.0.0.0/4, ff00::/8) joins it; this says how (SSM sources, interface). */
  multicast: multicastSchema.optional(),
  /** How copies to group subscribers leave: TTL (default 1), interface, loopback (default off). */
  multicastOut: multicastOutSchema.optional(),
};

const flowChecks = (flow: Parameters<typeof multicastIssues>[0], ctx: z.RefinementCtx): void => {
  for (const issue of multicastIssues(flow)) ctx.addIssue({ code: 'custom', ...issue });
};

/**
 * Fast channel change (docs/POLICY.md): a subscriber added while the flow
 * runs first gets the stream from its last random access point, as a burst.
 */
export const fastChannelChangeSchema = z.strictObject({
  /** The burst's speed, as a multiple of the stream's own rate. */
  burstRate: z.number().min(1).max(16).default(4),
  /** Most bytes cached; a longer group of pictures drops the cache and the join is live. */
  maxCacheBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(256 * 1024 * 1024)
    .default(8 * 1024 * 1024),
});

export const redirectSchema = z
  .strictObject({
    type: z.literal('redirect'),
    ...flowCommon,
    to: destinationSchema,
  })
  .superRefine(flowChecks);

export const replicateSchema = z
  .strictObject({
    type: z.literal('replicate'),
    ...flowCommon,
    /** Subscribers; may start empty and be filled while the flow runs. */
    to: z.array(destinationSchema).max(MAX_SUBSCRIBERS),
    fastChannelChange: fastChannelChangeSchema.optional(),
  })
  .superRefine((flow, ctx) => {
    flowChecks(flow, ctx);
    if (flow.fastChannelChange && flow.payload === 'any') {
      ctx.addIssue({ code: 'custom', path: ['fastChannelChange'], message: "needs a media payload (payload: 'mpegts', 'rtp' or 'rtp-mpegts')" });
    }
    // The cache reads the stream from the monitor's copy.
    if (flow.fastChannelChange && flow.monitor === false) {
      ctx.addIssue({ code: 'custom', path: ['fastChannelChange'], message: 'needs the monitor copy (monitor: true)' });
    }
  });

const byteData = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'must be a Uint8Array (or Buffer)');

const sequenceSchedule = z.strictObject({
  kind: z.literal('sequence'),
  /** One distinct integer per message; messages leave in ascending order. */
  sequence: z.array(z.number().int().min(0)),
  /** Spacing between consecutive messages, ms. */
  tickMs: z.number().min(0).max(60_000).default(1),
});
const delaysSchedule = z.strictObject({
  kind: z.literal('delays'),
  /** One delay per message, ms after the aggregate starts. */
  delaysMs: z.array(z.number().min(0).max(3_600_000)),
});
const rangeSchedule = z.strictObject({
  kind: z.literal('range'),
  /** Start, ms since the Unix epoch; default: when the engine receives the aggregate. */
  startAt: z.number().min(0).optional(),
  /** First to last message, ms. */
  durationMs: z.number().min(0).max(3_600_000),
  /** Optional explicit offsets within [0, durationMs]; default: spread evenly. */
  offsetsMs: z.array(z.number().min(0)).optional(),
});

export const scheduleSchema = z.discriminatedUnion('kind', [sequenceSchedule, delaysSchedule, rangeSchedule]);

/** An aggregate's fields, before the checks that span them (aggregateIssues). */
export const aggregateObjectSchema = z.strictObject({
  type: z.literal('aggregate'),
  name: flowName.optional(),
  /** Local address to send from; default: any address, ephemeral port. */
  from: listenSchema.optional(),
  messages: z
    .array(
      z.strictObject({
        to: destinationSchema,
        data: byteData,
        /** Stream id for per-stream counters. */
        stream: z.string().min(1).max(64).optional(),
      }),
    )
    .min(1)
    .max(MAX_AGGREGATE_MESSAGES),
  schedule: scheduleSchema,
  /** Send what is addressed to `from` to `to` instead. */
  remap: z.array(z.strictObject({ from: destinationSchema, to: destinationSchema })).optional(),
  /** A message later than this past its time is dropped (counted), otherwise sent late (counted). */
  maxLatenessMs: z.number().min(0).max(60_000).default(50),
  /**
   * Messages due at the same time: at most this many in a row to one
   * destination (destinations take turns). 64 bounds a burst while each
   * turn still fills a UDP GSO message: a send call costs microseconds,
   * so 16 instead of 64 per call costs about twice the CPU per message.
   */
  burst: z.number().int().min(1).max(64).default(64),
});

type AggregateObject = z.output<typeof aggregateObjectSchema>;

/** Furthest ahead an aggregate's range schedule may start: a day. */
export const MAX_START_AHEAD_MS = 86_400_000;

/** Checks across an aggregate's fields: sizes, totals, one schedule entry per message. */
export function aggregateIssues(agg: {
  readonly messages: readonly { readonly data: Uint8Array }[];
  readonly schedule: AggregateObject['schedule'];
}): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  agg.messages.forEach((m, i) => {
    if (m.data.byteLength > MAX_UDP_PAYLOAD) {
      issues.push({ path: ['messages', i, 'data'], message: `${m.data.byteLength} bytes exceeds the UDP maximum of ${MAX_UDP_PAYLOAD}` });
    }
  });
  const total = agg.messages.reduce((n, m) => n + m.data.byteLength, 0);
  if (total > MAX_BATCH_BYTES) {
    issues.push({ path: ['messages'], message: `${total} bytes in all exceeds the aggregate maximum of ${MAX_BATCH_BYTES}` });
  }
  const n = agg.messages.length;
  const s = agg.schedule;
  const perMessage = s.kind === 'sequence' ? s.sequence : s.kind === 'delays' ? s.delaysMs : s.offsetsMs;
  const field = s.kind === 'sequence' ? 'sequence' : s.kind === 'delays' ? 'delaysMs' : 'offsetsMs';
  if (perMessage && perMessage.length !== n) {
    issues.push({ path: ['schedule', field], message: `has ${perMessage.length} entries for ${n} messages` });
  }
  if (s.kind === 'sequence' && new Set(s.sequence).size !== s.sequence.length) {
    issues.push({ path: ['schedule', 'sequence'], message: 'sequence numbers must be distinct' });
  }
  if (s.kind === 'range' && s.offsetsMs?.some((o) => o > s.durationMs)) {
    issues.push({ path: ['schedule', 'offsetsMs'], message: `offsets must lie within 0..durationMs (${s.durationMs})` });
  }
  // A send that starts years ahead would hold its engine that long (and overflow Node's timers).
  if (s.kind === 'range' && s.startAt !== undefined && s.startAt > Date.now() + MAX_START_AHEAD_MS) {
    issues.push({ path: ['schedule', 'startAt'], message: `${s.startAt} is more than a day ahead (ms since the epoch)` });
  }
  return issues;
}

/**
 * An aggregate as the send engines take it: destinations as a column
 * beside the messages (payload and stream id), so that a large aggregate
 * is validated without building a new object per message.
 */
export interface SendableAggregate extends Omit<AggregateObject, 'type' | 'messages'> {
  readonly messages: readonly { readonly data: Uint8Array; readonly stream?: string | undefined }[];
  /** messages[i] goes to to[i] (before remapping). */
  readonly to: readonly Endpoint[];
}

export const aggregateSchema = aggregateObjectSchema.superRefine((agg, ctx) => {
  for (const issue of aggregateIssues(agg)) ctx.addIssue({ code: 'custom', ...issue });
});

/**
 * A destination string parsed (cached), or undefined when it is not a
 * valid destination: for validation fast paths that fall back to the
 * schema, and its messages, on anything unusual.
 */
export function parseDestinationString(value: string): Endpoint | undefined {
  const r = parseCached(value, { allowPortZero: false });
  return r.ok ? r.endpoint : undefined;
}

/** A segmented write's fields, before the check that spans them (segmentIssues). */
export const segmentObjectSchema = z.strictObject({
  type: z.literal('segment'),
  name: flowName.optional(),
  from: listenSchema.optional(),
  entries: z
    .array(z.strictObject({ to: destinationSchema, data: byteData }))
    .min(1)
    .max(MAX_SUBSCRIBERS),
  /** Largest datagram payload cut from each entry, bytes (1472 fits a 1500-byte IPv4 MTU). */
  packetSize: z.number().int().min(1).max(MAX_UDP_PAYLOAD).default(1472),
  /** Packets sent to one destination before moving to the next (1 = strict interleave). */
  burst: z.number().int().min(1).max(64).default(1),
  /** MSG_ZEROCOPY for large buffers where the kernel honours it. */
  zeroCopy: z.enum(['auto', 'never']).default('auto'),
  /** UDP GSO for runs of packets to one destination (burst > 1) where the kernel has it; 'never' sends one packet per message. */
  gso: z.enum(['auto', 'never']).default('auto'),
});

/** Checks across a write's fields: the total size. */
export function segmentIssues(seg: { readonly entries: readonly { readonly data: Uint8Array }[] }): { path: (string | number)[]; message: string }[] {
  let total = 0;
  for (const e of seg.entries) total += e.data.byteLength;
  return total > MAX_BATCH_BYTES ? [{ path: ['entries'], message: `${total} bytes in all exceeds the write maximum of ${MAX_BATCH_BYTES}` }] : [];
}

export const segmentSchema = segmentObjectSchema.superRefine((seg, ctx) => {
  for (const issue of segmentIssues(seg)) ctx.addIssue({ code: 'custom', ...issue });
});

const policyTypes = ['redirect', 'replicate', 'aggregate', 'segment'] as const;

/** Any policy the model knows. */
export const policySchema = z.discriminatedUnion('type', [redirectSchema, replicateSchema, aggregateSchema, segmentSchema], {
  error: (iss) =>
    iss.code === 'invalid_union' && iss.note === 'No matching discriminator'
      ? `type must be one of ${policyTypes.join(', ')}${iss.input === undefined ? ' (missing)' : ''}`
      : undefined,
});

/** Standing flow policies: the ones that run until removed (config files hold only these). */
export const flowPolicySchema = z.discriminatedUnion('type', [redirectSchema, replicateSchema], {
  error: (iss) =>
    iss.code === 'invalid_union' && iss.note === 'No matching discriminator'
      ? `type must be redirect or replicate (aggregate and segment are one-shot sends made through the library API)`
      : undefined,
});

export const configSchema = z.strictObject({
  /** Tier for every flow in the file (auto picks the fastest the host supports). */
  tier: z.enum(['auto', ...TIER_NAMES]).default('auto'),
  flows: z.array(flowPolicySchema).min(1, 'declare at least one flow'),
});

export type RedirectSpec = z.output<typeof redirectSchema>;
export type ReplicateSpec = z.output<typeof replicateSchema>;
export type AggregateSpec = z.output<typeof aggregateSchema>;
export type SegmentSpec = z.output<typeof segmentSchema>;
export type ScheduleSpec = z.output<typeof scheduleSchema>;
export type PolicySpec = z.output<typeof policySchema>;
export type FlowPolicySpec = RedirectSpec | ReplicateSpec;
export type ConfigSpec = z.output<typeof configSchema>;

/** What callers may pass in: endpoints as strings or {host, port}, defaults optional. */
export type RedirectPolicy = z.input<typeof redirectSchema>;
export type ReplicatePolicy = z.input<typeof replicateSchema>;
export type AggregatePolicy = z.input<typeof aggregateSchema>;
export type SegmentPolicy = z.input<typeof segmentSchema>;
export type Policy = z.input<typeof policySchema>;
export type FlowPolicy = z.input<typeof flowPolicySchema>;
export type ConfigFile = z.input<typeof configSchema>;
