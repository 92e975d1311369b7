/**
 * /v1/cluster: the cluster as this node sees it (nodes, flows, where each
 * subscriber is served from, refusals, and the node's own store link),
 * and the cluster's flows, written to the store through any node.
 */
import type { FastifyInstance } from 'fastify';
import type { ClusterNode } from '../cluster-node.js';
import { ServiceError } from '../service-error.js';

export function clusterRoutes(app: FastifyInstance, cluster: ClusterNode | undefined): void {
  const node = (): ClusterNode => {
    if (!cluster) throw new ServiceError('not_found', 'this daemon is not a cluster node (start it with --cluster etcd://HOST:PORT --node NAME --address IP)');
    return cluster;
  };
  app.get('/v1/cluster', async () => node().status());
  app.get('/v1/cluster/flows', async () => ({ flows: node().status().flows }));
  app.get<{ Params: { name: string } }>('/v1/cluster/flows/:name', async (req) => {
    const flow = node()
      .status()
      .flows.find((f) => f.name === req.params.name);
    if (!flow) throw new ServiceError('flow_not_found', `no cluster flow '${req.params.name}'`);
    return flow;
  });
  app.put<{ Params: { name: string } }>('/v1/cluster/flows/:name', async (req) => node().putFlow(req.params.name, req.body));
  app.delete<{ Params: { name: string } }>('/v1/cluster/flows/:name', async (req) => node().deleteFlow(req.params.name));
}
