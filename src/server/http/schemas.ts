/**
 * The zod schemas of the API's bodies. Requests are validated by the
 * very schemas the library and the CLI use (flowPolicySchema through
 * parseFlowPolicy; the send request's own); the response schemas here
 * only describe what the service returns, for the OpenAPI document
 * (openapi.ts turns all of them into JSON Schema with z.toJSONSchema).
 */
import { z } from 'zod';
import { flowPolicySchema } from '../../policy/schema.js';
import { FLOW_DROP_REASONS, DESTINATION_DROP_REASONS, MEDIA_ALARM_KINDS } from '../../index.js';
import { sendRequestSchema } from '../send-request.js';

export { flowPolicySchema, sendRequestSchema };

export const subscriberBodySchema = z.strictObject({
  to: z.string().meta({ description: 'the subscriber, udp://HOST:PORT', example: 'udp://127.0.0.1:6000' }),
});

const counts = (reasons: readonly string[]) => z.object(Object.fromEntries(reasons.map((r) => [r, z.number().int()])));

export const destinationStatsSchema = z.object({
  to: z.string(),
  packetsOut: z.number().int(),
  bytesOut: z.number().int(),
  drops: counts(DESTINATION_DROP_REASONS),
  lastError: z.string().optional(),
  suspendedUntil: z.number().optional().meta({ description: 'ms since the epoch, while suspended' }),
});

const int = () => z.number().int();

export const mediaStatsSchema = z
  .object({
    payload: z.enum(['mpegts', 'rtp', 'rtp-mpegts']),
    datagrams: int(),
    unread: int().meta({ description: 'copies sent to the monitor it has not read (lost on the loopback or queued)' }),
    rtp: z
      .object({
        packets: int(),
        malformed: int(),
        rtcp: int(),
        ssrc: int().nullable(),
        ssrcChanges: int(),
        expected: int(),
        lost: int(),
        reordered: int(),
        duplicates: int(),
        jitterMs: z.number(),
        payloadType: int().nullable(),
      })
      .optional(),
    ts: z
      .object({
        packets: int(),
        tsSyncLoss: int(),
        syncByteError: int(),
        patError: int(),
        ccError: int(),
        pmtError: int(),
        pidError: int(),
        pcrRepetitionError: int(),
        pcrDiscontinuityError: int(),
        pcrAccuracyError: int(),
        transportError: int(),
        crcError: int(),
        sectionError: int(),
        bitrate: z.number(),
        pids: z.array(z.object({ pid: int(), kind: z.string(), packets: int(), ccErrors: int(), bitrate: z.number() })),
      })
      .optional(),
    activeAlarms: z.array(z.enum(MEDIA_ALARM_KINDS)),
  })
  .meta({ description: 'the stream monitor (payload mpegts, rtp or rtp-mpegts with monitor on): RFC 3550 receiver statistics, ETSI TR 101 290 indicators' });

export const flowStatsSchema = z.object({
  name: z.string(),
  type: z.enum(['redirect', 'replicate']),
  tier: z.string(),
  listen: z.string(),
  packetsIn: z.number().int(),
  bytesIn: z.number().int(),
  packetsOut: z.number().int(),
  bytesOut: z.number().int(),
  drops: counts(FLOW_DROP_REASONS),
  destinations: z.array(destinationStatsSchema),
  media: mediaStatsSchema.optional(),
  rtcp: z
    .object({ fromSources: int(), copies: int(), fromSubscribers: int(), dropped: int() })
    .optional()
    .meta({ description: "rtcp 'port+1': the RTCP relay's counters" }),
  fastChannelChange: z
    .object({
      cacheBytes: int(),
      cacheDatagrams: int(),
      randomAccessPoints: int(),
      cacheOverflows: int(),
      joins: int(),
      fastJoins: int(),
      fallbacks: int(),
      forcedJoins: int(),
    })
    .optional()
    .meta({ description: 'fastChannelChange: the cache and the joins' }),
});

export const flowViewSchema = z.object({
  name: z.string(),
  type: z.enum(['redirect', 'replicate']),
  tier: z.string(),
  listen: z.string().meta({ description: 'as bound (a requested port 0 shows the chosen port)' }),
  policy: z.record(z.string(), z.unknown()).meta({ description: 'the validated policy, every field filled: PUT takes it back unchanged' }),
  stats: flowStatsSchema,
});

export const healthSchema = z.object({
  status: z.enum(['ok', 'degraded', 'stopping']),
  tier: z.string(),
  version: z.string(),
  uptimeS: z.number(),
  flows: z.number().int(),
  gateways: z.number().int(),
  failures: z.array(z.object({ engine: z.string(), message: z.string(), at: z.string() })),
});

export const sendJobSchema = z.object({
  id: z.string(),
  kind: z.enum(['aggregate', 'stream']),
  state: z.enum(['running', 'done', 'failed', 'cancelled']),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  progress: z.object({ sent: z.number(), total: z.number().nullable() }),
  result: z.unknown().optional(),
  error: z.string().optional(),
});

export const errorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
