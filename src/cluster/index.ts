/**
 * The cluster layer's entry for the daemon (src/server), as the library's
 * src/index.ts is for relays: the agent, the store and what the API and
 * the CLI write and print.
 */
export { ClusterAgent, type ClusterAgentStatus, type LocalApplyReport } from './agent.js';
export { EtcdStore } from './etcd-store.js';
export { checkClusterFlow, deleteClusterFlow, putClusterFlows, storedFlows } from './flow-store.js';
export { DEFAULT_CLUSTER_PREFIX, normalizePrefix } from './keys.js';
export { CLUSTER_FLOW_PREFIX } from './plan.js';
export { clusterFlowJson } from './records.js';
export { clusterStatus, type ClusterStatusView } from './status.js';
export { StoreError, type ClusterStore, type StoreLease } from './store.js';
export { StoreView } from './store-view.js';
export { parseClusterUrl } from './url.js';
export { TpoMesh, type TpoMeshGateway, type TpoMeshLog, type TpoMeshOptions } from './tpo-mesh.js';
export { readClusterKey, type ClusterKey } from './tpo-mesh-keys.js';
export type { MeshRecord } from './tpo-mesh-record.js';
