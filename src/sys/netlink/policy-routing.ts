/**
 * The policy routing TPROXY needs, over rtnetlink (what `ip rule add fwmark
 * M lookup T priority P` and `ip route add local 0.0.0.0/0 dev lo table T`
 * would do, for IPv4 and IPv6): a packet TPROXY marked must be routed to
 * the local stack even though its destination address is not ours.
 *
 *   struct fib_rule_hdr { u8 family, dst_len, src_len, tos, table, res1, res2, action; u32 flags; }  12 bytes
 *   struct rtmsg        { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; } 12 bytes
 *
 * Attributes are host order here (unlike nf_tables). Message builders are
 * pure; add/remove take an open NETLINK_ROUTE socket.
 */
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NLM_F_EXCL, attr, ne32, nlmsg } from './message.js';
import type { NetlinkSocket } from './socket.js';
import { SyscallError } from '../../errors.js';
import { AF_INET, AF_INET6 } from '../constants.js';

export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
export const FRA_PRIORITY = 6;
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_FWMASK = 16;
export const FR_ACT_TO_TBL = 1;
export const RTA_OIF = 4;
export const RTA_TABLE = 15;
export const RTN_LOCAL = 2;
export const RT_SCOPE_HOST = 254;
export const RTPROT_STATIC = 4;
/** The loopback device is always ifindex 1 in every network namespace (LOOPBACK_IFINDEX). */
export const LOOPBACK_IFINDEX = 1;

export interface TproxyRouting {
  /** fwmark TPROXY sets. */
  readonly mark: number;
  /** Routing table holding the `local default dev lo` route. */
  readonly table: number;
  /** ip rule priority (lower runs first; the main table is 32766). */
  readonly priority: number;
}

const familyCode = (f: 4 | 6): number => (f === 4 ? AF_INET : AF_INET6);

/** The 12-byte fixed header shared (in layout) by fib_rule_hdr and rtmsg. */
function hdr12(bytes: readonly number[]): Uint8Array {
  const b = new Uint8Array(12);
  b.set(bytes);
  return b;
}

/** `ip rule add|del fwmark M/0xffffffff lookup T priority P`. Table numbers go in FRA_TABLE (the u8 field holds only < 256). */
export function ruleMessage(type: typeof RTM_NEWRULE | typeof RTM_DELRULE, seq: number, family: 4 | 6, r: TproxyRouting): Uint8Array {
  const flags = NLM_F_REQUEST | NLM_F_ACK | (type === RTM_NEWRULE ? NLM_F_CREATE | NLM_F_EXCL : 0);
  const table8 = r.table < 256 ? r.table : 0;
  return nlmsg(type, flags, seq, hdr12([familyCode(family), 0, 0, 0, table8, 0, 0, FR_ACT_TO_TBL]), [
    attr(FRA_PRIORITY, ne32(r.priority)),
    attr(FRA_FWMARK, ne32(r.mark)),
    attr(FRA_FWMASK, ne32(0xffffffff)),
    attr(FRA_TABLE, ne32(r.table)),
  ]);
}

/** `ip route add|del local 0.0.0.0/0 (or ::/0) dev lo table T`. */
export function routeMessage(type: typeof RTM_NEWROUTE | typeof RTM_DELROUTE, seq: number, family: 4 | 6, r: TproxyRouting): Uint8Array {
  const flags = NLM_F_REQUEST | NLM_F_ACK | (type === RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0);
  const table8 = r.table < 256 ? r.table : 0;
  return nlmsg(type, flags, seq, hdr12([familyCode(family), 0, 0, 0, table8, RTPROT_STATIC, RT_SCOPE_HOST, RTN_LOCAL]), [
    attr(RTA_TABLE, ne32(r.table)),
    attr(RTA_OIF, ne32(LOOPBACK_IFINDEX)),
  ]);
}

/**
 * Adds the rule and the route for each family. On failure, what this call
 * added is removed again before the error propagates.
 */
export function addTproxyRouting(sock: NetlinkSocket, r: TproxyRouting, families: readonly (4 | 6)[]): void {
  try {
    for (const f of families) {
      let seq = sock.nextSeq();
      sock.request(routeMessage(RTM_NEWROUTE, seq, f, r), [{ seq, what: `RTM_NEWROUTE local default dev lo table ${r.table} (IPv${f})` }], 'RTM_NEWROUTE');
      seq = sock.nextSeq();
      sock.request(ruleMessage(RTM_NEWRULE, seq, f, r), [{ seq, what: `RTM_NEWRULE fwmark ${r.mark} lookup ${r.table} (IPv${f})` }], 'RTM_NEWRULE');
    }
  } catch (err) {
    removeTproxyRouting(sock, r);
    throw err;
  }
}

/** Deletion found nothing to delete: the rule/route is already gone. */
const ABSENT = new Set(['ENOENT', 'ESRCH']);
/** A rule could exist several times only if something else added copies; bounded anyway. */
const MAX_COPIES = 8;

/**
 * Deletes the rule and the route for both families until the kernel says
 * there are none; absent is fine (crash cleanup calls this blind). Returns
 * how many objects it deleted; other failures throw SyscallError.
 */
export function removeTproxyRouting(sock: NetlinkSocket, r: TproxyRouting): number {
  let deleted = 0;
  for (const f of [4, 6] as const) {
    for (const [make, what] of [
      [(s: number) => ruleMessage(RTM_DELRULE, s, f, r), `RTM_DELRULE fwmark ${r.mark} lookup ${r.table} (IPv${f})`],
      [(s: number) => routeMessage(RTM_DELROUTE, s, f, r), `RTM_DELROUTE local default dev lo table ${r.table} (IPv${f})`],
    ] as const) {
      for (let i = 0; i < MAX_COPIES; i++) {
        const seq = sock.nextSeq();
        try {
          sock.request(make(seq), [{ seq, what }], what.split(' ')[0]);
          deleted++;
        } catch (err) {
          if (err instanceof SyscallError && ABSENT.has(err.errno)) break;
          // IPv6 disabled in this namespace/kernel: nothing of ours can exist there.
          if (f === 6 && err instanceof SyscallError && err.errno === 'EAFNOSUPPORT') break;
          throw err;
        }
      }
    }
  }
  return deleted;
}
