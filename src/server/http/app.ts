/**
 * The daemon's HTTP server (fastify): the /v1 API and /metrics behind the
 * bearer token and the per-token rate limit, the dashboard's static files
 * (when a dashboard plugin is given) without them, one error mapping for
 * everything (errors.ts).
 *
 * Bounded by construction: a body over `maxBodyBytes` is refused (413)
 * from its Content-Length, or as soon as that many bytes arrived, and its
 * connection closed — never read whole; a request must arrive within
 * REQUEST_TIMEOUT_MS; event-stream clients have bounded queues (sse.ts).
 * Request logs are at debug level: an API call is not worth an info line.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { SluiceService } from '../service.js';
import type { ApiToken } from '../token.js';
import { nestingProblem } from '../../policy/config.js';
import { apiError, sendApiError, toApiError } from './errors.js';
import { EventHub, type SseOptions } from './sse.js';
import { flowRoutes } from './routes-flows.js';
import { serviceRoutes } from './routes-service.js';
import { tpoRoutes } from './routes-tpo.js';
import { clusterRoutes } from './routes-cluster.js';
import type { ClusterNode } from '../cluster-node.js';

/** What /metrics serves: the metrics module's registry (src/server/metrics.ts, `createMetrics`). */
export interface MetricsModule {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface ApiAppOptions {
  readonly service: SluiceService;
  readonly token: ApiToken;
  readonly log: Logger;
  readonly maxBodyBytes: number;
  readonly rateLimit: { readonly perSecond: number; readonly burst: number };
  /** PEM certificate chain and key: HTTPS. */
  readonly https?: { readonly cert: Buffer; readonly key: Buffer };
  /** Mounted at /metrics (with the token) when given. */
  readonly metrics?: MetricsModule;
  /** The dashboard's fastify plugin (`/`, `/assets/*`, no token: no data in them), when given. */
  readonly dashboard?: FastifyPluginAsync;
  readonly sse?: SseOptions;
  /** The node's cluster side (`sluice serve --cluster`): /v1/cluster answers 404 without it. */
  readonly cluster?: ClusterNode;
}

/** Longest time a client may take to send its whole request, ms (headers and body). */
export const REQUEST_TIMEOUT_MS = 60_000;

const BEARER = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i;

/**
 * `Expect: 100-continue` (curl sends it with large bodies): a body
 * announced larger than the limit is refused (413) before the client
 * sends a byte of it; any other goes on as usual.
 */
function refuseLargeBodiesEarly(app: FastifyInstance, maxBodyBytes: number): void {
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (Number.isFinite(length) && length > maxBodyBytes) {
      const body = JSON.stringify(apiError(413, 'body_too_large', `request body too large (${length} bytes; at most ${maxBodyBytes})`).body);
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
      res.end(body);
      return;
    }
    res.writeContinue();
    app.server.emit('request', req, res);
  });
}

export async function buildApp(opts: ApiAppOptions): Promise<{ app: FastifyInstance; hub: EventHub }> {
  // Our request lines go through this child, not req.log: fastify gives each request's logger the level in force at
  // registration, while a pino child follows its parent's level, so a reload's level reaches them.
  const log = opts.log.child({ component: 'http' });
  const app = Fastify({
    loggerInstance: log,
    // Fastify's own per-request lines off: ours (onResponse) are at debug level.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.maxBodyBytes,
    requestTimeout: REQUEST_TIMEOUT_MS,
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {}),
  }) as unknown as FastifyInstance;
  const hub = new EventHub(opts.service, log, opts.sse);
  refuseLargeBodiesEarly(app, opts.maxBodyBytes);

  app.setErrorHandler((err, req, reply) => {
    const e = toApiError(err);
    if (e.status >= 500) log.error({ err, method: req.method, url: req.url }, 'request failed');
    return sendApiError(req, reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendApiError(req, reply, apiError(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`)));
  app.addHook('onResponse', async (req, reply) => {
    log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });
  // Event streams never end on their own: end them first, so close() does not wait for them.
  app.addHook('preClose', async () => hub.close());

  await app.register(async (api) => {
    api.addHook('onRequest', async (req, reply) => {
      const header = req.headers.authorization;
      const m = header === undefined ? null : BEARER.exec(header);
      if (!m || !opts.token.matches(m[1]!)) {
        const message =
          header === undefined ? 'missing Authorization: Bearer <token> (the token is in the file `sluice serve` printed at start)' : 'wrong token';
        return sendApiError(req, reply, apiError(401, 'unauthorized', message));
      }
    });
    // Registered after the token check: the limit counts authenticated requests, per token (there is one).
    await api.register(rateLimit, {
      max: opts.rateLimit.burst,
      timeWindow: Math.max(1, Math.ceil((opts.rateLimit.burst / opts.rateLimit.perSecond) * 1000)),
      keyGenerator: () => 'api-token',
      errorResponseBuilder: (_req, ctx) =>
        Object.assign(new Error(`more than ${ctx.max} requests in ${ctx.after === '' ? 'the window' : `the last window; retry in ${ctx.after}`}`), {
          statusCode: 429,
        }),
    });
    api.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, api.getDefaultJsonParser('error', 'error'));
    // JSON.parse does not recurse, but what reads the body afterwards may: refuse absurd nesting up front.
    api.addHook('preValidation', async (req, reply) => {
      const deep = req.body === undefined ? undefined : nestingProblem(req.body);
      if (deep) return sendApiError(req, reply, apiError(400, 'invalid_json', `the body is ${deep}`));
    });
    flowRoutes(api, opts.service);
    serviceRoutes(api, opts.service, hub);
    tpoRoutes(api, opts.service);
    clusterRoutes(api, opts.cluster);
    const metrics = opts.metrics;
    if (metrics) api.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
  });
  if (opts.dashboard) await app.register(opts.dashboard);
  return { app, hub };
}
