/**
 * bpf(2) calls on links, pins and object info: attaching programs (tcx
 * and XDP links, raw tracepoints), swapping a link's program, pinning in bpffs and
 * reading what the kernel says about a link or a map.
 */
import { NativeRegion } from './memory.js';
import { bpf, cString, failedWith, newAttr } from './bpf-call.js';

export const BPF_PROG_TYPE_RAW_TRACEPOINT = 17;

/** BPF_RAW_TRACEPOINT_OPEN: attaches `progFd` to the tracepoint `name`; closing the returned fd detaches. */
export function rawTracepointOpen(name: string, progFd: number): number {
  const n = cString(name);
  const a = newAttr();
  a.setPointer(0, n.address);
  a.view.setUint32(8, progFd, true);
  return bpf('RAW_TRACEPOINT_OPEN', a, () => `raw tracepoint ${name}`);
}

/**
 * BPF_LINK_CREATE on a target that is a descriptor: a sockmap (sk_skb
 * verdicts) or a cgroup directory (sock_ops); returns the link fd, whose
 * close detaches.
 */
export function linkCreate(progFd: number, targetFd: number, attachType: number, what: string): number {
  const a = newAttr();
  a.view.setUint32(0, progFd, true);
  a.view.setUint32(4, targetFd, true);
  a.view.setUint32(8, attachType, true);
  return bpf('LINK_CREATE', a, () => what);
}

/** BPF_LINK_CREATE for tcx: attaches `progFd` at ifindex/direction; returns the link fd. */
export function tcxLinkCreate(progFd: number, ifindex: number, attachType: number, what: string): number {
  const a = newAttr();
  a.view.setUint32(0, progFd, true);
  a.view.setUint32(4, ifindex, true);
  a.view.setUint32(8, attachType, true);
  return bpf('LINK_CREATE', a, () => what);
}

/** XDP attach modes (XDP_FLAGS_* of include/uapi/linux/if_link.h). */
export const XDP_MODE = { generic: 2, native: 4 } as const;

/** BPF_LINK_CREATE for XDP (attach type BPF_XDP = 37) at `ifindex` in `mode`; returns the link fd. */
export function xdpLinkCreate(progFd: number, ifindex: number, mode: keyof typeof XDP_MODE, what: string): number {
  const a = newAttr();
  a.view.setUint32(0, progFd, true);
  a.view.setUint32(4, ifindex, true);
  a.view.setUint32(8, 37, true);
  a.view.setUint32(12, XDP_MODE[mode], true);
  return bpf('LINK_CREATE', a, () => `${what} (${mode} mode)`);
}

/** BPF_LINK_UPDATE: swaps the program of a link atomically (no packet sees neither). */
export function linkUpdate(linkFd: number, progFd: number, what: string): void {
  const a = newAttr();
  a.view.setUint32(0, linkFd, true);
  a.view.setUint32(4, progFd, true);
  bpf('LINK_UPDATE', a, () => what);
}

/** BPF_LINK_DETACH: detaches even while other fds or pins hold the link. */
export function linkDetach(linkFd: number, what: string): void {
  const a = newAttr();
  a.view.setUint32(0, linkFd, true);
  bpf('LINK_DETACH', a, () => what);
}

export interface LinkInfo {
  readonly type: number;
  readonly id: number;
  readonly progId: number;
  /** tcx links: the interface and direction. */
  readonly ifindex: number;
  readonly attachType: number;
}

/** BPF_OBJ_GET_INFO_BY_FD for a link. */
export function linkInfo(linkFd: number): LinkInfo {
  const info = new NativeRegion(64);
  const a = newAttr();
  a.view.setUint32(0, linkFd, true);
  a.view.setUint32(4, 64, true);
  a.setPointer(8, info.address);
  bpf('OBJ_GET_INFO_BY_FD', a, () => 'link');
  const v = info.view;
  return {
    type: v.getUint32(0, true),
    id: v.getUint32(4, true),
    progId: v.getUint32(8, true),
    ifindex: v.getUint32(16, true),
    attachType: v.getUint32(20, true),
  };
}

export interface MapInfo {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
}

/** BPF_OBJ_GET_INFO_BY_FD for a map (struct bpf_map_info's leading fields). */
export function mapInfo(mapFd: number, what = 'map'): MapInfo {
  const info = new NativeRegion(80);
  const a = newAttr();
  a.view.setUint32(0, mapFd, true);
  a.view.setUint32(4, 80, true);
  a.setPointer(8, info.address);
  bpf('OBJ_GET_INFO_BY_FD', a, () => what);
  const v = info.view;
  return {
    type: v.getUint32(0, true),
    keySize: v.getUint32(8, true),
    valueSize: v.getUint32(12, true),
    maxEntries: v.getUint32(16, true),
    flags: v.getUint32(20, true),
  };
}

/** BPF_OBJ_PIN: makes `fd`'s object outlive the process at `path` (in bpffs). */
export function objPin(fd: number, path: string): void {
  const p = cString(path);
  const a = newAttr();
  a.setPointer(0, p.address);
  a.view.setUint32(8, fd, true);
  bpf('OBJ_PIN', a, () => path);
}

/** BPF_OBJ_GET: opens a pinned object; undefined when nothing is pinned there. */
export function objGet(path: string): number | undefined {
  const p = cString(path);
  const a = newAttr();
  a.setPointer(0, p.address);
  try {
    return bpf('OBJ_GET', a, () => path);
  } catch (err) {
    if (failedWith(err, 'ENOENT')) return undefined;
    throw err;
  }
}
