/**
 * TPO mesh keys (issue 21): no key ever goes to the cluster store. Every
 * site holds the same cluster key in a file (mode 600, as a peer's
 * keyFile), and each pair of gateways derives its own pre-shared key from
 * it with HKDF-SHA256, bound to the key's name and the two gateway names.
 * The store carries only the key's NAME (`keyRef`), so a site can tell a
 * peer that uses another cluster key (rotation half done, a typo) from a
 * peer that is merely down, without anything secret in etcd.
 *
 * Why derive per pair rather than share one key: the handshake picks a
 * peer by key id, and a pair key bound to both names means a datagram
 * sealed for pair (a, b) authenticates nowhere else; a leaked pair key
 * (say from a memory dump of a peer config) opens that pair only.
 * Anyone who holds the cluster key can derive every pair key: the cluster
 * key is the mesh's secret, deployed as carefully as an ssh host key.
 *
 * Key ids: each gateway has a mesh key id (1..65535, unique in the mesh);
 * the pair's key id, which both sides must agree on and which must differ
 * among one gateway's peers, is low × 65536 + high of the two. It is at
 * least 65536 + 2, so static peers in a gateway's config file keep key ids
 * below 65536 and never clash with the mesh's.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { basename, extname } from 'node:path';
import { keyFromFile, readKeyFile } from '../tpo/config/config.js';
import { InvalidArgumentError } from '../errors.js';
import { MAX_MESH_KEY_ID } from './tpo-mesh-record.js';

/** The cluster key: its name (stored, compared between sites) and its bytes (never stored). */
export interface ClusterKey {
  readonly ref: string;
  readonly key: Uint8Array;
}

const HKDF_SALT = 'sluice tpo mesh pair key v1';

/**
 * Reads the cluster key file, with a peer keyFile's rules (regular file,
 * at most 1 KiB, mode 600, hex text or 16..64 raw bytes). `ref` defaults
 * to the file's name without its extension (`/etc/sluice/mesh-2025.key`
 * → `mesh-2025`).
 */
export function readClusterKey(path: string, ref?: string): ClusterKey {
  let raw: Buffer;
  try {
    raw = readKeyFile(path);
  } catch (err) {
    throw new InvalidArgumentError(`TPO mesh cluster key ${path}: ${(err as Error).message}`);
  }
  const k = keyFromFile(raw);
  if ('error' in k) throw new InvalidArgumentError(`TPO mesh cluster key ${path}: ${k.error}`);
  const name = ref ?? basename(path, extname(path));
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name))
    throw new InvalidArgumentError(`TPO mesh cluster key ${path}: its name '${name}' is not letters, digits, _ . - (1..64): give keyRef`);
  return { ref: name, key: k.key };
}

/** The pre-shared key of the pair (a, b): the same whichever side computes it. */
export function pairKey(cluster: ClusterKey, a: string, b: string): Buffer {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  // NUL separates: gateway names cannot contain it, so (ab, c) and (a, bc) differ.
  return Buffer.from(hkdfSync('sha256', cluster.key, HKDF_SALT, `${cluster.ref}\0${lo}\0${hi}`, 32));
}

/** The pair's handshake key id: both sides compute the same; distinct for each peer of one gateway when mesh ids are unique. */
export function pairKeyId(a: number, b: number): number {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  return lo * 0x10000 + hi;
}

/**
 * A gateway's default mesh key id, from its name (1..65535). Two names
 * may collide (about 0.3 % for 20 sites): the later one is refused and
 * reported by the others, and its operator gives `keyId` explicitly.
 */
export function defaultMeshKeyId(name: string): number {
  return (createHash('sha256').update(name).digest().readUInt16BE(0) % MAX_MESH_KEY_ID) + 1;
}

/** Which side of a pair starts the handshake (has the peer's address): the lower name. Both sides decide alike. */
export const initiates = (self: string, other: string): boolean => self < other;
