/**
 * Which XDP mode each interface of this network namespace has a program
 * attached in, from an RTM_GETLINK dump (what `ip link` prints as
 * xdp/xdpgeneric/xdpoffload): for `sluice doctor`, which reports whether
 * the kernel tier's XDP hook runs in the driver (native) or generic mode.
 *
 *   struct ifinfomsg { u8 ifi_family; u8 pad; u16 ifi_type; s32 ifi_index;
 *                      u32 ifi_flags; u32 ifi_change; }                      16 bytes
 *   IFLA_IFNAME (3): string; IFLA_XDP (43, nested): IFLA_XDP_ATTACHED (2): u8;
 *   IFLA_LINKINFO (18, nested): IFLA_INFO_KIND (1): string ("veth", ...; none for hardware)
 *
 * The parse is pure and bounded as every dump parse here (./message.ts).
 */
import { NETLINK_ROUTE } from '../constants.js';
import { LE, NLM_F_DUMP, NLM_F_REQUEST, cString, nlmsg, parseDump, walkAttrs, type NlMsgView } from './message.js';
import { NetlinkSocket } from './socket.js';

const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const SIZEOF_IFINFOMSG = 16;
const IFLA_IFNAME = 3;
const IFLA_XDP = 43;
const IFLA_XDP_ATTACHED = 2;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
/** XDP_ATTACHED_* of include/uapi/linux/if_link.h. */
const MODES = ['none', 'native', 'generic', 'offload', 'multiple'] as const;
export type XdpAttachMode = (typeof MODES)[number];

export interface LinkXdp {
  readonly ifindex: number;
  readonly name: string;
  readonly xdp: XdpAttachMode;
  /** Link kind of a virtual device ("veth", "bridge", ...); '' for hardware. */
  readonly kind: string;
}

function decodeLink(buf: Uint8Array, v: DataView, m: NlMsgView): LinkXdp | string {
  if (m.end - m.body < SIZEOF_IFINFOMSG) return `RTM_NEWLINK of ${m.len} bytes is shorter than nlmsghdr + ifinfomsg`;
  let name = '';
  let xdp: XdpAttachMode = 'none';
  let kind = '';
  const malformed = walkAttrs(buf, v, m.body + SIZEOF_IFINFOMSG, m.end, 'rtattr', (type, value) => {
    if (type === IFLA_IFNAME) name = cString(value);
    if (type !== IFLA_XDP && type !== IFLA_LINKINFO) return;
    const nv = new DataView(value.buffer, value.byteOffset, value.byteLength);
    walkAttrs(value, nv, 0, value.byteLength, 'rtattr', (t, x) => {
      if (type === IFLA_XDP && t === IFLA_XDP_ATTACHED && x.length >= 1) xdp = MODES[x[0]!] ?? 'multiple';
      if (type === IFLA_LINKINFO && t === IFLA_INFO_KIND) kind = cString(x);
    });
  });
  return malformed ?? { ifindex: v.getInt32(m.body + 4, LE), name, xdp, kind };
}

/** Parses one read of an RTM_GETLINK dump (never throws). */
export const parseLinkChunk = (buf: Uint8Array, seq?: number) => parseDump(buf, seq, RTM_NEWLINK, decodeLink);

/** Every interface of the caller's namespace with its attached XDP mode. Throws SyscallError naming the call and errno. */
export function dumpLinkXdp(): LinkXdp[] {
  const sock = NetlinkSocket.open(NETLINK_ROUTE);
  try {
    const seq = sock.nextSeq();
    return sock.dump(nlmsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, new Uint8Array(SIZEOF_IFINFOMSG)), seq, 'RTM_GETLINK', parseLinkChunk);
  } finally {
    sock.close();
  }
}
