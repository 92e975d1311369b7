/**
 * The body of `POST /v1/sends`: an aggregate (as `sluice send`'s JSON,
 * payloads inline as text, hex or base64: a request never names a file on
 * the daemon's host) or a set of paced streams (the stream scheduler).
 * The zod schemas check the shape and are what the OpenAPI document
 * shows; the library validates the aggregate itself (parseAggregate:
 * destinations, schedule, sizes), with paths under `aggregate.`.
 */
import { z } from 'zod';
import { MAX_UDP_PAYLOAD, PolicyValidationError, type AggregateInput, type PolicyIssue } from '../index.js';
import { MAX_AGGREGATE_MESSAGES, MAX_BATCH_BYTES } from '../policy/schema.js';

/** Most streams one stream job may run. */
export const MAX_JOB_STREAMS = 1000;

const message = z
  .object({
    to: z.string().meta({ description: 'udp://HOST:PORT' }),
    text: z.string().optional().meta({ description: 'payload as UTF-8 text' }),
    hex: z.string().optional().meta({ description: 'payload as hex digits' }),
    base64: z.string().optional().meta({ description: 'payload as base64' }),
    stream: z.string().min(1).max(64).optional(),
  })
  .meta({ description: 'one message: its destination and exactly one of text, hex or base64' });

export const aggregateSendSchema = z.strictObject({
  kind: z.literal('aggregate'),
  aggregate: z
    .looseObject({
      messages: z.array(message).min(1).max(MAX_AGGREGATE_MESSAGES),
      schedule: z.looseObject({ kind: z.enum(['sequence', 'delays', 'range']) }),
    })
    .meta({ description: 'an aggregate as in docs/POLICY.md (schedule, remap, maxLatenessMs, burst, from), payloads inline' }),
});

const streamEntry = z.strictObject({
  id: z.string().min(1).max(64).optional().meta({ description: 'default: s0, s1, ... in order' }),
  to: z.string().meta({ description: 'udp://HOST:PORT' }),
  bitrate: z.number().positive().max(100e9).optional().meta({ description: "bits per second of payload (required with pace 'bitrate', the default)" }),
  pace: z.enum(['bitrate', 'pcr', 'rtp']).default('bitrate').meta({
    description:
      "what paces the stream: its bitrate, or its own clock: 'pcr' (MPEG-TS PCRs), 'rtp' (RTP timestamps; payload = RTP packets each after a 16-bit length, RFC 4571)",
  }),
  clockRate: z.number().int().min(1).max(10_000_000).optional().meta({ description: "RTP clock rate, Hz (pace 'rtp'; default 90000)" }),
  payload: z.string().optional().meta({ description: 'the content, base64' }),
  bytes: z.number().int().min(1).max(MAX_BATCH_BYTES).optional().meta({ description: 'instead of payload: this many bytes of a filler pattern' }),
  loop: z.boolean().default(false).meta({ description: 'start over after the last byte until cancelled' }),
});

export const streamSendSchema = z.strictObject({
  kind: z.literal('stream'),
  packetSize: z.number().int().min(1).max(MAX_UDP_PAYLOAD).default(1316),
  burst: z.number().int().min(1).max(64).optional(),
  streams: z.array(streamEntry).min(1).max(MAX_JOB_STREAMS),
});

export const sendRequestSchema = z.discriminatedUnion('kind', [aggregateSendSchema, streamSendSchema]);
export type SendRequest = z.input<typeof sendRequestSchema>;
export type StreamSendRequest = z.output<typeof streamSendSchema>;

/** A stream of a job, ready for the scheduler. */
export interface JobStream {
  readonly id: string;
  readonly to: string;
  readonly bitrate?: number;
  readonly pace: 'bitrate' | 'pcr' | 'rtp';
  readonly clockRate?: number;
  readonly data: Uint8Array;
  readonly loop: boolean;
}

/** The aggregate with its payloads decoded into bytes, or issues with paths under `aggregate.messages[i]`. */
export function decodeAggregate(aggregate: { messages: readonly Record<string, unknown>[] } & Record<string, unknown>): AggregateInput {
  const issues: PolicyIssue[] = [];
  let total = 0;
  const messages = aggregate.messages.map((m, i) => {
    const { text, hex, base64, ...rest } = m;
    const given = [text, hex, base64].filter((x) => x !== undefined);
    const at = `aggregate.messages[${i}]`;
    if (given.length !== 1) {
      if (issues.length < 100) issues.push({ path: at, message: 'give the payload as exactly one of text, hex or base64' });
      return rest;
    }
    let data: Buffer;
    if (text !== undefined) data = Buffer.from(text as string, 'utf8');
    else if (hex !== undefined) {
      if (!/^([0-9a-fA-F]{2})*$/.test(hex as string) && issues.length < 100) issues.push({ path: `${at}.hex`, message: 'not an even number of hex digits' });
      data = Buffer.from(hex as string, 'hex');
    } else data = Buffer.from(base64 as string, 'base64');
    total += data.byteLength;
    return { ...rest, data };
  });
  if (total > MAX_BATCH_BYTES)
    issues.push({ path: 'aggregate.messages', message: `${total} bytes in all exceeds the aggregate maximum of ${MAX_BATCH_BYTES}` });
  if (issues.length) throw new PolicyValidationError(issues, 'invalid aggregate');
  return { ...aggregate, messages } as AggregateInput;
}

/** A filler pattern: bytes counting 0..255 (a receiver can check nothing was reordered within a stream). */
function filler(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = i & 0xff;
  return b;
}

/** The job's streams with their data decoded; issues with paths under `streams[i]`. */
export function decodeStreams(req: StreamSendRequest): JobStream[] {
  const issues: PolicyIssue[] = [];
  let total = 0;
  const ids = new Set<string>();
  const out = req.streams.map((s, i): JobStream => {
    const at = `streams[${i}]`;
    const id = s.id ?? `s${i}`;
    if (ids.has(id)) issues.push({ path: `${at}.id`, message: `'${id}' is used by another stream of this job` });
    ids.add(id);
    if ((s.payload === undefined) === (s.bytes === undefined)) issues.push({ path: at, message: 'give exactly one of payload (base64) or bytes' });
    const data = s.payload !== undefined ? Buffer.from(s.payload, 'base64') : filler(s.bytes ?? 0);
    if (s.loop && data.byteLength === 0) issues.push({ path: at, message: 'a looping stream needs data' });
    if (s.pace === 'bitrate' && s.bitrate === undefined)
      issues.push({ path: `${at}.bitrate`, message: "give the bitrate (or a pace by the stream's clock: 'pcr', 'rtp')" });
    total += data.byteLength;
    return {
      id,
      to: s.to,
      data,
      loop: s.loop,
      pace: s.pace,
      ...(s.bitrate !== undefined ? { bitrate: s.bitrate } : {}),
      ...(s.clockRate !== undefined ? { clockRate: s.clockRate } : {}),
    };
  });
  if (total > MAX_BATCH_BYTES) issues.push({ path: 'streams', message: `${total} bytes in all exceeds the maximum of ${MAX_BATCH_BYTES}` });
  if (issues.length) throw new PolicyValidationError(issues, 'invalid stream job');
  return out;
}
