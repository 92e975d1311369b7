/**
 * `GET /v1/openapi.json`: an OpenAPI 3.1 document generated from the zod
 * schemas that validate the requests (and those that describe the
 * responses), with z.toJSONSchema — so the document cannot drift from
 * what the server accepts. Built once, on first request.
 */
import { z } from 'zod';
import { tpoPeerSchema, tpoTableEntrySchema } from '../../tpo/index.js';
import { tcpRedirectSchema } from '../../policy/tcp-redirect.js';
import {
  errorSchema,
  flowPolicySchema,
  flowStatsSchema,
  flowViewSchema,
  healthSchema,
  sendJobSchema,
  sendRequestSchema,
  subscriberBodySchema,
  destinationStatsSchema,
} from './schemas.js';

type Json = Record<string, unknown>;

const component = (schema: z.ZodType, io: 'input' | 'output'): Json => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  return rest;
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json) => ({ 'application/json': { schema } });
const ok = (description: string, schema?: Json) => ({ description, ...(schema ? { content: json(schema) } : {}) });
const err = (description: string) => ok(description, ref('Error'));
const gwParam = { name: 'gateway', in: 'path', required: true, schema: { type: 'string' }, description: 'the gateway name' };
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' }, description: 'the flow name' };
const std = { '400': err('invalid_json, invalid_policy or invalid_request'), '401': err('unauthorized'), '429': err('rate_limited') };
const notFound = { '404': err('flow_not_found') };
const anyPolicy = { oneOf: [ref('FlowPolicy'), ref('TcpRedirectPolicy')] };
const anyView = { oneOf: [ref('FlowView'), ref('TcpFlowView')] };

export function buildOpenApi(version: string): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sluice control API',
      version,
      description: 'The HTTP API of `sluice serve` (docs/HTTP-API.md). Every request needs `Authorization: Bearer <token>` (the token file).',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        FlowPolicy: component(flowPolicySchema, 'input'),
        TcpRedirectPolicy: component(tcpRedirectSchema, 'input'),
        TcpFlowView: {
          type: 'object',
          description:
            "a tcp-redirect as GET shows it: name, type 'tcp-redirect', listen, to, mode (the path in use), source ('config' or 'api'), policy, stats, failure",
        },
        FlowPatch: { type: 'object', description: 'fields of a FlowPolicy (JSON merge patch: null puts a field back to its default)' },
        Subscriber: component(subscriberBodySchema, 'input'),
        SendRequest: component(sendRequestSchema, 'input'),
        FlowView: component(flowViewSchema, 'output'),
        FlowStats: component(flowStatsSchema, 'output'),
        DestinationStats: component(destinationStatsSchema, 'output'),
        Health: component(healthSchema, 'output'),
        SendJob: component(sendJobSchema, 'output'),
        Error: component(errorSchema, 'output'),
        TpoPeer: component(tpoPeerSchema, 'input'),
        TpoTableEntry: component(tpoTableEntrySchema, 'input'),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/health': { get: { summary: 'service health', responses: { '200': ok('ok or degraded', ref('Health')), '503': ok('stopping', ref('Health')) } } },
      '/v1/fanout': {
        get: {
          summary: "the config file's fan-out: addresses, settings and counters (docs/HTTP-API.md, Fan-out)",
          responses: { '200': ok('the fan-out', { type: 'object' }), '404': err('not_found') },
        },
      },
      '/v1/fanout/inputs/{name}': {
        parameters: [{ ...nameParam, description: 'the input name (GET /NAME on the fan-out front)' }],
        put: {
          summary: 'add a named input, or point it at another URL; only streams of an input no longer allowed end',
          requestBody: {
            required: true,
            content: json({
              type: 'object',
              required: ['input'],
              additionalProperties: false,
              properties: { input: { type: 'string', description: 'udp://GROUP:PORT or rtp://GROUP:PORT' } },
            }),
          },
          responses: { '201': ok('added', { type: 'object' }), '200': ok('changed', { type: 'object' }), ...std, '404': err('not_found (no fan-out)') },
        },
        delete: {
          summary: 'remove a named input; its streams end unless an allow rule still covers its URL',
          responses: { '200': ok('the fan-out after', { type: 'object' }), '401': err('unauthorized'), '404': err('not_found') },
        },
      },
      '/v1/flows': {
        get: {
          summary: 'every flow (tcp-redirects last, type tcp-redirect: docs/HTTP-API.md)',
          responses: {
            '200': ok('flows', { type: 'object', properties: { flows: { type: 'array', items: { oneOf: [ref('FlowView'), ref('TcpFlowView')] } } } }),
          },
        },
        post: {
          summary: 'create a flow, UDP or tcp-redirect (name required)',
          requestBody: { required: true, content: json(anyPolicy) },
          responses: {
            '201': ok('created; Location names it', anyView),
            ...std,
            '409': err('flow_exists or address_in_use'),
            '413': err('body_too_large'),
          },
        },
      },
      '/v1/flows/{name}': {
        parameters: [nameParam],
        get: { summary: 'one flow', responses: { '200': ok('the flow', anyView), ...notFound } },
        put: {
          summary: 'replace the policy (a type or listen change restarts a UDP flow; any change restarts a tcp-redirect, closing its connections)',
          requestBody: { required: true, content: json(anyPolicy) },
          responses: { '200': ok('replaced', anyView), ...std, ...notFound, '409': err('address_in_use') },
        },
        patch: {
          summary: 'merge fields into the policy, then validate it whole',
          requestBody: { required: true, content: { ...json(ref('FlowPatch')), 'application/merge-patch+json': { schema: ref('FlowPatch') } } },
          responses: { '200': ok('changed', anyView), ...std, ...notFound, '409': err('address_in_use') },
        },
        delete: {
          summary: 'stop and remove the flow',
          responses: {
            '200': ok('its final counters', { type: 'object', properties: { name: { type: 'string' }, stats: ref('FlowStats') } }),
            ...notFound,
          },
        },
      },
      '/v1/flows/{name}/stats': { parameters: [nameParam], get: { summary: 'counters', responses: { '200': ok('counters', ref('FlowStats')), ...notFound } } },
      '/v1/flows/{name}/subscribers': {
        parameters: [nameParam],
        post: {
          summary: 'add one subscriber (replicate flows)',
          requestBody: { required: true, content: json(ref('Subscriber')) },
          responses: { '201': ok('added', ref('FlowView')), ...std, ...notFound, '409': err('subscriber_exists') },
        },
        delete: {
          summary: 'remove one subscriber: ?to=udp://HOST:PORT (or a body {to})',
          parameters: [{ name: 'to', in: 'query', required: false, schema: { type: 'string' } }],
          responses: { '200': ok('removed', ref('FlowView')), ...std, '404': err('flow_not_found or subscriber_not_found') },
        },
      },
      '/v1/tpo': { get: { summary: 'TPO gateways', responses: { '200': ok('gateways', { type: 'object' }) } } },
      '/v1/tpo/{gateway}': {
        parameters: [gwParam],
        get: {
          summary: "a gateway's status (as `sluice status --json`)",
          responses: { '200': ok('status', { type: 'object' }), '404': err('gateway_not_found') },
        },
      },
      '/v1/tpo/{gateway}/peers': {
        parameters: [gwParam],
        get: { summary: 'the peers as configured now (never a key)', responses: { '200': ok('peers', { type: 'object' }), '404': err('gateway_not_found') } },
        post: {
          summary: 'add a peer at run time',
          requestBody: { required: true, content: json(ref('TpoPeer')) },
          responses: {
            '201': ok('the peer as configured', { type: 'object' }),
            ...std,
            '404': err('gateway_not_found'),
            '409': err('conflict (name or keyId taken)'),
          },
        },
      },
      '/v1/tpo/{gateway}/peers/{peer}': {
        parameters: [gwParam, { name: 'peer', in: 'path', required: true, schema: { type: 'string' } }],
        delete: {
          summary: 'remove a peer (its flows are reset)',
          responses: {
            '200': ok('{name, flowsReset}', { type: 'object' }),
            '404': err('gateway_not_found or peer_not_found'),
            '409': err('conflict (a table entry names it)'),
          },
        },
      },
      '/v1/tpo/{gateway}/table': {
        parameters: [gwParam],
        get: { summary: 'the interception table as configured now', responses: { '200': ok('entries', { type: 'object' }), '404': err('gateway_not_found') } },
        post: {
          summary: 'add a table entry at run time (explicit interception)',
          requestBody: { required: true, content: json(ref('TpoTableEntry')) },
          responses: {
            '201': ok('the entry as configured', { type: 'object' }),
            ...std,
            '404': err('gateway_not_found'),
            '409': err('conflict (name taken) or address_in_use (its listener)'),
          },
        },
      },
      '/v1/tpo/{gateway}/table/{entry}': {
        parameters: [gwParam, { name: 'entry', in: 'path', required: true, schema: { type: 'string' } }],
        delete: {
          summary: 'remove a table entry (?resetFlows=true also resets its TCP flows)',
          parameters: [{ name: 'resetFlows', in: 'query', required: false, schema: { type: 'boolean' } }],
          responses: { '200': ok('{name, flowsEnded}', { type: 'object' }), '404': err('gateway_not_found or entry_not_found') },
        },
      },
      '/v1/sends': {
        get: { summary: 'send jobs (running, and the last 100 finished)', responses: { '200': ok('jobs', { type: 'object' }) } },
        post: {
          summary: 'start an aggregate or a stream job',
          requestBody: { required: true, content: json(ref('SendRequest')) },
          responses: { '202': ok('started', ref('SendJob')), ...std, '409': err('too_many_sends'), '413': err('body_too_large') },
        },
      },
      '/v1/sends/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: 'one job', responses: { '200': ok('the job', ref('SendJob')), '404': err('send_not_found') } },
        delete: {
          summary: 'cancel a stream job',
          responses: { '200': ok('the job', ref('SendJob')), '404': err('send_not_found'), '409': err('not_cancellable') },
        },
      },
      '/v1/events': {
        get: {
          summary:
            'server-sent events: flowadded, flowremoved, flowchanged, subscriberadded, subscriberremoved, subscribersuspended, peerup, peerdown, alarm, enginefailed, sendstarted, senddone, stats (1/s)',
          responses: { '200': { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } } },
        },
      },
      '/v1/openapi.json': { get: { summary: 'this document', responses: { '200': ok('OpenAPI 3.1', { type: 'object' }) } } },
    },
  };
}
