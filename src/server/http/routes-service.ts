/**
 * The routes besides flows and TPO gateways: health, send jobs, the
 * fan-out's status and named inputs, the event stream and the OpenAPI
 * document.
 */
import type { FastifyInstance } from 'fastify';
import type { SluiceService } from '../service.js';
import type { EventHub } from './sse.js';
import { buildOpenApi } from './openapi.js';
import { packageVersion } from '../version.js';
import { ServiceError } from '../service-error.js';

export function serviceRoutes(app: FastifyInstance, service: SluiceService, hub: EventHub): void {
  app.get('/v1/health', async (_req, reply) => {
    const health = service.health();
    return reply.code(health.status === 'stopping' ? 503 : 200).send(health);
  });

  app.post('/v1/sends', async (req, reply) => reply.code(202).send(service.startSend(req.body)));
  app.get('/v1/sends', async () => ({ sends: service.sends() }));
  app.get<{ Params: { id: string } }>('/v1/sends/:id', async (req) => service.send(req.params.id));
  app.delete<{ Params: { id: string } }>('/v1/sends/:id', async (req) => service.cancelSend(req.params.id));

  // The serve config's `fanout:`: addresses, settings and counters (asked of the fan-out thread).
  app.get('/v1/fanout', async () => {
    const view = await service.fanoutStatus();
    if (!view) throw new ServiceError('not_found', "no fan-out: the config file has no 'fanout:' section");
    return view;
  });

  // Named inputs (`GET /NAME` on the fan-out's front) added, repointed or removed at run time.
  app.put<{ Params: { name: string } }>('/v1/fanout/inputs/:name', async (req, reply) => {
    const { created, view } = await service.putFanoutInput(req.params.name, req.body);
    return reply.code(created ? 201 : 200).send(view);
  });
  app.delete<{ Params: { name: string } }>('/v1/fanout/inputs/:name', async (req) => service.deleteFanoutInput(req.params.name));

  app.get('/v1/events', (req, reply) => {
    // The hub owns the response from here: fastify neither serializes nor ends it.
    reply.hijack();
    req.raw.socket.setNoDelay(true);
    hub.add(reply.raw);
  });

  let openapi: unknown;
  app.get('/v1/openapi.json', async () => (openapi ??= buildOpenApi(packageVersion())));
}
