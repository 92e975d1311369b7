/**
 * `/v1/tpo`: the TPO gateways' status (as `sluice status --json` shows
 * it), their peers and table entries as configured now, and changes to
 * them at run time (through the service's queue, persisted in the state
 * file, replayed at the next start).
 */
import type { FastifyInstance } from 'fastify';
import type { SluiceService } from '../service.js';

interface Gw {
  gateway: string;
}

export function tpoRoutes(app: FastifyInstance, service: SluiceService): void {
  app.get('/v1/tpo', async () => ({ gateways: service.gateways() }));
  app.get<{ Params: Gw }>('/v1/tpo/:gateway', async (req) => service.gateway(req.params.gateway));

  app.get<{ Params: Gw }>('/v1/tpo/:gateway/peers', async (req) => ({ peers: service.gatewayPeers(req.params.gateway) }));
  app.post<{ Params: Gw }>('/v1/tpo/:gateway/peers', async (req, reply) => reply.code(201).send(await service.addPeer(req.params.gateway, req.body)));
  app.delete<{ Params: Gw & { peer: string } }>('/v1/tpo/:gateway/peers/:peer', async (req) => service.removePeer(req.params.gateway, req.params.peer));

  app.get<{ Params: Gw }>('/v1/tpo/:gateway/table', async (req) => ({ table: service.gatewayTable(req.params.gateway) }));
  app.post<{ Params: Gw }>('/v1/tpo/:gateway/table', async (req, reply) => reply.code(201).send(await service.addTableEntry(req.params.gateway, req.body)));
  app.delete<{ Params: Gw & { entry: string }; Querystring: { resetFlows?: string } }>('/v1/tpo/:gateway/table/:entry', async (req) =>
    service.removeTableEntry(req.params.gateway, req.params.entry, { resetFlows: req.query.resetFlows === 'true' || req.query.resetFlows === '1' }),
  );
}
