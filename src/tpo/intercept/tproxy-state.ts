/**
 * The kernel state of transparent interception that outlives a listener
 * (see tproxy-interceptor.ts): the instance's nf_tables table and its
 * TPROXY policy routing, their deterministic names, and the removal of
 * what a crashed predecessor left.
 */
import { ConflictError, SyscallError } from '../../errors.js';
import { NetlinkSocket } from '../../sys/netlink/socket.js';
import { NETLINK_NETFILTER, NETLINK_ROUTE } from '../../sys/constants.js';
import { removeTproxyRouting, type TproxyRouting } from '../../sys/netlink/policy-routing.js';
import { encodeDelete, tableName } from './nftables.js';

/** What cleanupStale found and removed. */
export interface StaleCleanup {
  readonly table: boolean;
  readonly routing: number;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Default policy routing of an instance: table and fwmark 0x534c_xxxx
 * ("SL" + 16 bits of the instance name's hash, clear of the reserved
 * tables 0 and 253-255), rule priority 100 (after `local`, before `main`).
 * Deterministic, so a restart after a crash finds its predecessor's.
 */
export function tproxyRoutingFor(instance: string, over: Partial<TproxyRouting> = {}): TproxyRouting {
  tableName(instance);
  const v = (0x534c0000 | (fnv1a(instance) & 0xffff)) >>> 0;
  return { mark: over.mark ?? v, table: over.table ?? v, priority: over.priority ?? 100 };
}

/** Deletes the table; false if there was none. ConflictError if a live process owns it. */
export function deleteTable(sock: NetlinkSocket, table: string): boolean {
  const batch = encodeDelete(table, () => sock.nextSeq());
  try {
    sock.request(batch.bytes, batch.pending, 'NFT_MSG_DELTABLE');
    return true;
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 'ENOENT') return false;
    // An owned table may only be deleted by its owner: a live process has it.
    if (err instanceof SyscallError && err.errno === 'EPERM') {
      throw new ConflictError(`nf_tables table inet ${table} belongs to a running Sluice (or another process holding it): stop that instance first`);
    }
    throw err;
  }
}

/**
 * The crash case: removes what an earlier process of this instance left
 * (its table if it somehow outlived its owner, and its policy-routing rule
 * and routes). A table owned by a live process is not touched:
 * ConflictError. Returns what was removed.
 */
export function cleanupStale(instance: string, tproxy: Partial<TproxyRouting> = {}): StaleCleanup {
  const table = tableName(instance);
  const nf = NetlinkSocket.open(NETLINK_NETFILTER, 'NETLINK_NETFILTER');
  let removedTable: boolean;
  try {
    removedTable = deleteTable(nf, table);
  } finally {
    nf.close();
  }
  const rt = NetlinkSocket.open(NETLINK_ROUTE, 'NETLINK_ROUTE');
  try {
    return { table: removedTable, routing: removeTproxyRouting(rt, tproxyRoutingFor(instance, tproxy)) };
  } finally {
    rt.close();
  }
}
