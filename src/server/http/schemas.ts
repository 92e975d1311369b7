/**
 * The zod schemas of the API's bodies. Requests are validated by the
 * very schemas the library and the CLI use (flowPolicySchema through
 * parseFlowPolicy; the send request's own); the response schemas here
 * only describe what the service returns, for the OpenAPI document
 * (openapi.ts turns all of them into JSON Schema with z.toJSONSchema).
 */
import { z } from 'zod';
import { flowPolicySchema } from '../../policy/schema.js';
import { FLOW_DROP_REASONS, DESTINATION_DROP_REASONS } from '../../index.js';
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
