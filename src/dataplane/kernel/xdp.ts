/**
 * The kernel tier's XDP hook (option kernelHook): the `xdp` program of
 * bpf/sluice.o, attached in the driver's receive path of the interfaces
 * whose tcx ingress runs the tcx program, reading the same maps. It carries
 * redirect (one non-local subscriber) flows completely: rewrite, checksums,
 * out through XDP_TX or the `xdp_tx` device map. Everything else it passes
 * untouched to tcx, which handles it as without XDP.
 *
 * - 'tcx' (the default): no XDP program; pinned XDP links of an earlier
 *   process are detached.
 * - 'xdp': native (driver) mode, generic (skb) mode where the driver has none.
 * - 'auto': native mode only; an interface without it stays on tcx alone.
 *
 * Native redirect into a veth (XDP_TX included) needs the peer end to be
 * able to take XDP frames (an XDP program or GRO on the peer); otherwise the
 * driver drops them, after the program counted them sent. So a veth is a
 * redirect target (in `xdp_tx`) only with 'xdp', the explicit choice, and
 * the notes say what it needs; with 'auto' frames bound for a veth stay on
 * tcx. `sluice doctor` and the plane's notes say which mode each interface got.
 */
import { existsSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { closeFd, linkDetach, linkInfo, linkUpdate, mapLookup, mapUpdate, objGet, objPin, xdpLinkCreate } from '../../sys/bpf.js';
import { loadXdpProgram, type LoadedMaps } from './program.js';
import type { Hook, Interface } from './attach.js';
import { slotKey, sumPerCpu } from './layout.js';
import { dumpLinkXdp } from '../../sys/netlink/link-xdp.js';

export type KernelHook = 'xdp' | 'tcx' | 'auto';
export const KERNEL_HOOKS: readonly KernelHook[] = ['xdp', 'tcx', 'auto'];

/** struct xdp_counters, u64 each. */
export const XDP_COUNTERS = ['packets', 'bytes', 'passed'] as const;
export const XDP_COUNTERS_SIZE = XDP_COUNTERS.length * 8;
export type XdpCounters = Record<(typeof XDP_COUNTERS)[number], number>;

export interface XdpAttachment {
  readonly iface: Interface;
  readonly linkFd: number;
  /** 'adopted': an earlier process's pinned link, re-programmed (its mode is kept). */
  readonly mode: 'native' | 'generic' | 'adopted';
}

function pinName(iface: Interface): string {
  return `link_${iface.name}_xdp`;
}

/** The interface's MAC as the `ifmac` value (6 bytes + 2 zero), or undefined when it has none readable. */
function macValue(iface: Interface): Uint8Array | undefined {
  try {
    const text = readFileSync(`/sys/class/net/${iface.name}/address`, 'utf8').trim();
    const bytes = text.split(':').map((h) => parseInt(h, 16));
    if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) return undefined;
    const v = new Uint8Array(8);
    v.set(bytes);
    return v;
  } catch {
    return undefined;
  }
}

/** The driver behind a hardware interface (for doctor); undefined for a virtual one (its link kind says what it is). */
export function driverOf(name: string): string | undefined {
  try {
    return basename(readlinkSync(`/sys/class/net/${name}/device/driver`));
  } catch {
    return undefined;
  }
}

/** Detaches and unlinks pinned XDP links in `pinDir` (an earlier process ran with kernelHook 'xdp'). */
function dropPinned(pinDir: string | undefined, ifaces: readonly Interface[]): void {
  if (!pinDir) return;
  for (const iface of ifaces) {
    const path = join(pinDir, pinName(iface));
    const fd = existsSync(path) ? objGet(path) : undefined;
    if (fd === undefined) continue;
    try {
      linkDetach(fd, path);
    } catch {
      // Already detached (interface gone).
    }
    closeFd(fd);
    unlinkSync(path);
  }
}

/** Attaches (or adopts) one XDP link; undefined when 'auto' finds no native mode. */
function attachOne(hook: KernelHook, prog: number, iface: Interface, pinDir: string | undefined): XdpAttachment | undefined {
  const what = `xdp of ${iface.name}`;
  const path = pinDir ? join(pinDir, pinName(iface)) : undefined;
  const pinned = path && existsSync(path) ? objGet(path) : undefined;
  if (pinned !== undefined) {
    if (linkInfo(pinned).ifindex === iface.ifindex) {
      linkUpdate(pinned, prog, what);
      return { iface, linkFd: pinned, mode: 'adopted' };
    }
    closeFd(pinned);
    unlinkSync(path!);
  }
  let mode: 'native' | 'generic' = 'native';
  let fd: number;
  try {
    fd = xdpLinkCreate(prog, iface.ifindex, 'native', what);
  } catch (err) {
    if (hook === 'auto') return undefined;
    mode = 'generic';
    try {
      fd = xdpLinkCreate(prog, iface.ifindex, 'generic', what);
    } catch {
      throw err;
    }
  }
  if (path) objPin(fd, path);
  return { iface, linkFd: fd, mode };
}

/**
 * Attaches the XDP program per `hook` to the ingress hooks' interfaces
 * (lo is never one: it has no driver receive path for local sockets).
 * `prog` is the loaded XDP program (the caller closes it). Writes `ifmac`
 * and `xdp_tx` for them.
 */
export function attachXdp(
  hook: KernelHook,
  prog: number | undefined,
  maps: LoadedMaps,
  hooks: readonly Hook[],
  pinDir: string | undefined,
): { attachments: XdpAttachment[]; notes: string[] } {
  const ifaces = hooks.filter((h) => h.direction === 'ingress').map((h) => h.iface);
  if (hook === 'tcx' || prog === undefined) {
    dropPinned(pinDir, ifaces);
    return { attachments: [], notes: [] };
  }
  const macFd = maps.fds.get('ifmac');
  const txFd = maps.fds.get('xdp_tx');
  if (macFd === undefined || txFd === undefined) throw new Error("kernel tier: maps 'ifmac'/'xdp_tx' missing from bpf/sluice.o");
  const attachments: XdpAttachment[] = [];
  const notes: string[] = [];
  const noTx: string[] = [];
  const veths = new Set(dumpLinkXdp().flatMap((l) => (l.kind === 'veth' ? [l.ifindex] : [])));
  const vethTargets: string[] = [];
  try {
    for (const iface of ifaces) {
      const mac = macValue(iface);
      if (!mac) {
        notes.push(`xdp: ${iface.name} has no readable MAC address; left to tcx`);
        continue;
      }
      // Out-interface first: a redirect may go out of any hooked interface (a veth: see above).
      if (veths.has(iface.ifindex) && hook === 'auto') noTx.push(`${iface.name} (veth, kernelHook 'auto')`);
      else {
        try {
          const v = slotKey(iface.ifindex);
          mapUpdate(txFd, v, v, 0, `xdp_tx ${iface.name}`);
          if (veths.has(iface.ifindex)) vethTargets.push(iface.name);
        } catch {
          noTx.push(`${iface.name} (the device map refused it)`);
        }
      }
      mapUpdate(macFd, slotKey(iface.ifindex), mac, 0, `ifmac ${iface.name}`);
      const a = attachOne(hook, prog, iface, pinDir);
      if (a) attachments.push(a);
      else notes.push(`xdp: ${iface.name} has no native XDP (driver ${driverOf(iface.name) ?? 'virtual'}); left to tcx (kernelHook 'auto')`);
    }
  } catch (err) {
    for (const a of attachments) if (a.mode !== 'adopted') closeFd(a.linkFd);
    throw err;
  }
  if (!ifaces.length) notes.push('xdp: no interface but lo here; everything runs at tcx');
  if (attachments.length) notes.push(`xdp (redirect in the driver): ${attachments.map((a) => `${a.iface.name} ${a.mode}`).join(', ')}`);
  if (noTx.length) notes.push(`xdp: not a redirect target: ${noTx.join(', ')}; redirects out of it stay on tcx`);
  if (vethTargets.length && attachments.some((a) => a.mode !== 'generic'))
    notes.push(
      `xdp: redirects into veth ${vethTargets.join(', ')} in native mode need the peer end to take XDP frames (an XDP program or GRO on it), else the driver drops them`,
    );
  return { attachments, notes };
}

/** The XDP program's counters of one flow slot. */
export function readXdpCounters(fd: number | undefined, cpus: number, slot: number): XdpCounters {
  const raw = fd === undefined ? undefined : mapLookup(fd, slotKey(slot), XDP_COUNTERS_SIZE * cpus, 'xdp_stats');
  return sumPerCpu(raw ?? new Uint8Array(XDP_COUNTERS_SIZE * cpus), XDP_COUNTERS, cpus);
}

/** Loads the XDP program (unless `hook` is 'tcx') and attaches it as attachXdp does; the links hold it afterwards. */
export function startXdp(
  hook: KernelHook,
  maps: LoadedMaps,
  hooks: readonly Hook[],
  pinDir: string | undefined,
): { attachments: XdpAttachment[]; notes: string[] } {
  const prog = hook === 'tcx' ? undefined : loadXdpProgram(maps);
  try {
    return attachXdp(hook, prog, maps, hooks, pinDir);
  } finally {
    if (prog !== undefined) closeFd(prog);
  }
}
