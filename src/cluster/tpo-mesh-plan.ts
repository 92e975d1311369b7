/**
 * What a TPO mesh site applies to its own gateway for another site's
 * registration (issue 21): one peer, in the form TpoGateway.addPeer takes
 * (the config file's `peers[]` item), and one explicit table entry per
 * service that site publishes (a `table[]` item for addTableEntry). Pure:
 * the gateway validates them again as it would a config file.
 *
 * The peer's key is the pair key (tpo-mesh-keys.ts), handed to the
 * gateway in memory only; the stored record names the cluster key, never
 * holds one.
 */
import { initiates, pairKey, pairKeyId, type ClusterKey } from './tpo-mesh-keys.js';
import { meshEntryName, type MeshRecord } from './tpo-mesh-record.js';
import type { Endpoint } from '../wire/endpoint.js';

/** This site, as the plan needs it. */
export interface MeshSelf {
  readonly name: string;
  readonly keyId: number;
  readonly clusterKey: ClusterKey;
  /** Extra fields for every mesh peer (`maxRate`, `initialRate`, `mtu`: as in a config file's peers[]). */
  readonly peer?: Readonly<Record<string, unknown>>;
  /** Where this site opens listeners for the other sites' services; absent: it opens none (peers only). */
  readonly listen?: { readonly host: string; readonly src?: string };
}

const hostPort = (e: Endpoint) => (e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`);
const hostOf = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** The peer to add for `remote`: the lower name initiates (has the address), the other answers. */
export function meshPeerInput(self: MeshSelf, remote: MeshRecord): Record<string, unknown> {
  return {
    ...self.peer,
    name: remote.name,
    ...(initiates(self.name, remote.name) ? { address: hostPort(remote.address) } : {}),
    key: pairKey(self.clusterKey, self.name, remote.name).toString('hex'),
    keyId: pairKeyId(self.keyId, remote.keyId),
  };
}

/** The table entries for `remote`'s services at this site (none without `self.listen`). */
export function meshEntryInputs(self: MeshSelf, remote: MeshRecord): Record<string, unknown>[] {
  const listen = self.listen;
  if (!listen) return [];
  return remote.services.map((s) => ({
    name: meshEntryName(remote.name, s.name),
    protocol: s.protocol,
    listen: hostOf(listen.host, s.port),
    target: hostPort(s.target),
    peers: [remote.name],
    ...(listen.src !== undefined ? { src: listen.src } : {}),
  }));
}
