/**
 * Can the kernel pace for us? With SO_TXTIME a socket attaches a send time
 * to each datagram (SCM_TXTIME), but only some root qdiscs honour it: fq
 * (holds each packet until its time; expects CLOCK_MONOTONIC) and etf
 * (expects the clock it was configured with, and drops packets that carry
 * no time), directly or as every child of mq/mqprio (one per tx queue).
 * Any other qdisc sends at once and the times are ignored, so pacing stays
 * in Sluice's send worker. Detected, never assumed: `usable` needs both
 * the socket option accepted and every UP non-loopback interface of the
 * current network namespace with such a root (a flow's egress interface is
 * not known at probe time; `perInterface` lets a caller decide per device).
 *
 * Interfaces come from /sys/class/net (which shows the namespace sysfs was
 * mounted in: `ip netns exec` remounts it), qdiscs from rtnetlink
 * (src/sys/netlink/rtnetlink.ts). `txtimeSupport()` never throws.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { libc } from './ffi.js';
import { errnoName } from './errno.js';
import { CLOCK_MONOTONIC, SIZEOF_SOCK_TXTIME, SOL_SOCKET, SO_TXTIME } from './constants.js';
import { RawUdpSocket } from './udp-socket.js';
import { TC_H_INGRESS, TC_H_ROOT, dumpQdiscs, tcMajor, type QdiscInfo } from './netlink/rtnetlink.js';

/** Qdiscs that release each packet at its SO_TXTIME time. */
const HONOURING = new Set(['fq', 'etf']);
/** Multi-queue roots: they honour it when every per-queue child does. */
const MULTIQUEUE = new Set(['mq', 'mqprio']);
const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const FALLBACK = 'Sluice paces in its send worker';
const NEEDS = ' (needs fq or etf)';

export interface InterfaceTxtime {
  name: string;
  ifindex: number;
  /** Root qdisc kind; undefined when the dump listed no root for this interface. */
  root: string | undefined;
  /** Kinds of the root's children (mq/mqprio), in dump order. */
  children: string[];
  honours: boolean;
  /** e.g. "root qdisc is fq", "root qdisc is pfifo_fast (needs fq or etf)". */
  reason: string;
}

export interface TxtimeSupport {
  usable: boolean;
  /** One line for `sluice doctor`: what was found and, if not usable, why. */
  detail: string;
  /** setsockopt(SO_TXTIME) on a UDP socket. */
  socketOption: { accepted: boolean; reason: string };
  perInterface: InterfaceTxtime[];
}

export interface NetInterface {
  name: string;
  ifindex: number;
}

/**
 * UP, non-loopback interfaces from /sys/class/net. "UP" is operstate `up`,
 * or `unknown` with IFF_UP set (drivers that report no carrier, e.g. tun).
 */
export function upInterfaces(root = '/sys/class/net'): NetInterface[] {
  const out: NetInterface[] = [];
  for (const name of readdirSync(root)) {
    try {
      const read = (f: string) => readFileSync(`${root}/${name}/${f}`, 'utf8').trim();
      const flags = Number.parseInt(read('flags'), 16);
      const state = read('operstate');
      if (flags & IFF_LOOPBACK) continue;
      if (state !== 'up' && !(state === 'unknown' && flags & IFF_UP)) continue;
      out.push({ name, ifindex: Number(read('ifindex')) });
    } catch {
      /* vanished while we looked */
    }
  }
  return out.sort((a, b) => a.ifindex - b.ifindex);
}

/** Whether the kernel accepts SO_TXTIME {CLOCK_MONOTONIC, flags 0} on a UDP socket (Linux 4.19+). */
export function txtimeOptionAccepted(): { accepted: boolean; reason: string } {
  let sock: RawUdpSocket | undefined;
  try {
    sock = RawUdpSocket.open(4);
    const c = libc();
    const opt = new Int32Array([CLOCK_MONOTONIC, 0]); // struct sock_txtime {clockid, flags}
    if (c.setsockopt(sock.fd, SOL_SOCKET, SO_TXTIME, opt, SIZEOF_SOCK_TXTIME) < 0) {
      return { accepted: false, reason: `the kernel refused setsockopt(SO_TXTIME): ${errnoName(c.errno())}` };
    }
    return { accepted: true, reason: 'setsockopt(SO_TXTIME) accepted' };
  } catch (e) {
    return { accepted: false, reason: `could not try setsockopt(SO_TXTIME): ${(e as Error).message}` };
  } finally {
    sock?.close();
  }
}

/** Judges one interface from the dump (pure). */
export function interfaceTxtime(iface: NetInterface, qdiscs: readonly QdiscInfo[]): InterfaceTxtime {
  const mine = qdiscs.filter((q) => q.ifindex === iface.ifindex);
  const root = mine.find((q) => q.parent === TC_H_ROOT);
  const base = { name: iface.name, ifindex: iface.ifindex, root: root?.kind, children: [] as string[] };
  if (!root) return { ...base, honours: false, reason: 'root qdisc is not listed (noop, or another namespace?)' };
  if (HONOURING.has(root.kind)) return { ...base, honours: true, reason: `root qdisc is ${root.kind}` };
  if (!MULTIQUEUE.has(root.kind)) return { ...base, honours: false, reason: `root qdisc is ${root.kind || '(unnamed)'}${NEEDS}` };
  // Per-queue children hang off classes of the root: parent = <root major>:<queue>.
  const children = mine
    .filter((q) => q !== root && q.parent !== TC_H_ROOT && q.parent !== TC_H_INGRESS && tcMajor(q.parent) === tcMajor(root.handle))
    .map((q) => q.kind);
  const other = [...new Set(children.filter((k) => !HONOURING.has(k)))];
  if (children.length > 0 && other.length === 0) {
    return { ...base, children, honours: true, reason: `root qdisc is ${root.kind} of ${children.length} ${[...new Set(children)].join('/')}` };
  }
  return {
    ...base,
    children,
    honours: false,
    reason:
      children.length === 0 ? `root qdisc is ${root.kind} with no child qdisc listed` : `root qdisc is ${root.kind} with ${other.join('/')} children${NEEDS}`,
  };
}

/** Combines the findings into the verdict and its one-line detail (pure). */
export function assessTxtime(
  interfaces: readonly NetInterface[],
  qdiscs: readonly QdiscInfo[],
  socketOption: { accepted: boolean; reason: string },
): TxtimeSupport {
  const perInterface = interfaces.map((i) => interfaceTxtime(i, qdiscs));
  const why: string[] = [];
  if (!socketOption.accepted) why.push(socketOption.reason);
  if (perInterface.length === 0) why.push('no UP non-loopback interface to check');
  // "(needs ...)" once for the whole list, not after every interface.
  const failing = perInterface.filter((i) => !i.honours);
  if (failing.length > 0) {
    const list = failing.map((i) => `${i.name}'s ${i.reason.replace(NEEDS, '')}`).join(', ');
    why.push(failing.some((i) => i.reason.endsWith(NEEDS)) ? `${list}${NEEDS}` : list);
  }
  if (why.length > 0) return { usable: false, detail: `SO_TXTIME: not used — ${why.join('; ')}; ${FALLBACK}`, socketOption, perInterface };
  const roots = perInterface.map((i) => `${i.name}: ${i.reason.replace(/^root qdisc is /, '')}`).join(', ');
  return {
    usable: true,
    detail: `SO_TXTIME: usable — every interface's root qdisc honours send times (${roots}); the kernel could pace instead of the worker`,
    socketOption,
    perInterface,
  };
}

/** The detection, in the current network namespace. Never throws. */
export function txtimeSupport(): TxtimeSupport {
  const socketOption = txtimeOptionAccepted();
  let interfaces: NetInterface[];
  let qdiscs: QdiscInfo[];
  try {
    interfaces = upInterfaces();
    qdiscs = dumpQdiscs();
  } catch (e) {
    const why = [...(socketOption.accepted ? [] : [socketOption.reason]), `could not list qdiscs: ${(e as Error).message}`];
    return { usable: false, detail: `SO_TXTIME: not used — ${why.join('; ')}; ${FALLBACK}`, socketOption, perInterface: [] };
  }
  return assessTxtime(interfaces, qdiscs, socketOption);
}

/** `detail` as a doctor note; a failure of the detection itself becomes the note. Never throws. */
export function txtimeNote(): string {
  try {
    return txtimeSupport().detail;
  } catch (e) {
    return `SO_TXTIME: not used — detection failed: ${(e as Error)?.message ?? String(e)}; ${FALLBACK}`;
  }
}
