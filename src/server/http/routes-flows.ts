/**
 * `/v1/flows`: list, create, read, replace, patch, delete; a flow's
 * counters; its subscribers one at a time. Every change goes through the
 * service's queue (in arrival order, validated whole), which persists it
 * and emits its event.
 */
import type { FastifyInstance } from 'fastify';
import type { SluiceService } from '../service.js';
import { ServiceError } from '../service-error.js';

interface NameParams {
  name: string;
}

function mustExist<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new ServiceError('flow_not_found', `no flow '${name}'`);
  return value;
}

export function flowRoutes(app: FastifyInstance, service: SluiceService): void {
  // tcp-redirects (from the config file) after the UDP flows, with `type: 'tcp-redirect'`.
  app.get('/v1/flows', async () => ({ flows: [...service.flows(), ...service.tcpFlows()] }));

  app.post('/v1/flows', async (req, reply) => {
    const view = await service.createFlow(req.body);
    return reply
      .code(201)
      .header('location', `/v1/flows/${encodeURIComponent(view.name)}`)
      .send(view);
  });

  app.get<{ Params: NameParams }>('/v1/flows/:name', async (req) =>
    mustExist(service.flow(req.params.name) ?? service.tcpFlow(req.params.name), req.params.name),
  );

  app.get<{ Params: NameParams }>('/v1/flows/:name/stats', async (req) => service.flowStats(req.params.name));

  app.put<{ Params: NameParams }>('/v1/flows/:name', async (req) => service.replaceFlow(req.params.name, req.body));

  app.patch<{ Params: NameParams }>('/v1/flows/:name', async (req) => service.patchFlow(req.params.name, req.body));

  app.delete<{ Params: NameParams }>('/v1/flows/:name', async (req) => service.deleteFlow(req.params.name));

  app.post<{ Params: NameParams }>('/v1/flows/:name/subscribers', async (req, reply) => {
    const body = req.body as { to?: unknown } | undefined;
    const view = await service.addSubscriber(req.params.name, typeof body === 'object' && body !== null ? body.to : undefined);
    return reply.code(201).send(view);
  });

  app.delete<{ Params: NameParams; Querystring: { to?: string } }>('/v1/flows/:name/subscribers', async (req) => {
    const body = req.body as { to?: unknown } | undefined;
    const to = req.query.to ?? (typeof body === 'object' && body !== null ? body.to : undefined);
    return service.removeSubscriber(req.params.name, to);
  });
}
