/**
 * Where the kernel tier hooks in, and how it stays there across restarts.
 *
 * - tcx egress of lo: datagrams local applications send to a flow address
 *   (every locally addressed packet crosses lo), so one send becomes N copies.
 * - tcx ingress of every other Ethernet-like interface: datagrams from the
 *   network.
 * Links are made with BPF_LINK_CREATE (no netlink, no tc). When a pin
 * directory is given, maps and links are pinned under
 * `<dir>/net-<netns inode>/` (ifindexes are per network namespace), and a
 * later process adopts them: it swaps its freshly loaded program into the
 * pinned links with BPF_LINK_UPDATE, so forwarding never stops.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, closeFd, linkDetach, linkInfo, linkUpdate, objGet, objPin, tcxLinkCreate } from '../../sys/bpf.js';
import { mountBpffs } from '../../sys/mount.js';
import type { LoadedPrograms } from './program.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/sluice';
const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;

export interface Interface {
  readonly name: string;
  readonly ifindex: number;
  readonly type: number;
}

/** Interfaces of this network namespace, from /sys/class/net. */
export function listInterfaces(): Interface[] {
  const out: Interface[] = [];
  for (const name of readdirSync('/sys/class/net')) {
    try {
      const read = (f: string) => Number(readFileSync(`/sys/class/net/${name}/${f}`, 'utf8').trim());
      out.push({ name, ifindex: read('ifindex'), type: read('type') });
    } catch {
      // Vanished while listing.
    }
  }
  return out.sort((a, b) => a.ifindex - b.ifindex);
}

export interface Hook {
  readonly iface: Interface;
  readonly direction: 'ingress' | 'egress';
}

/**
 * The hooks for this host: lo egress plus ingress of each Ethernet-like
 * interface (the program reads an Ethernet header; tun/wireguard devices
 * carry none and are left alone). `only` restricts to named interfaces.
 */
export function chooseHooks(only?: readonly string[]): { hooks: Hook[]; skipped: string[] } {
  const hooks: Hook[] = [];
  const skipped: string[] = [];
  for (const iface of listInterfaces()) {
    if (iface.type === ARPHRD_LOOPBACK) {
      hooks.push({ iface, direction: 'egress' });
      continue;
    }
    if (only && !only.includes(iface.name)) continue;
    if (iface.type !== ARPHRD_ETHER) {
      skipped.push(`${iface.name} (link type ${iface.type}, no Ethernet header)`);
      continue;
    }
    hooks.push({ iface, direction: 'ingress' });
  }
  return { hooks, skipped };
}

/** This process's network namespace, as bpffs path component. */
export function netnsId(): string {
  return `net-${statSync('/proc/self/ns/net').ino}`;
}

/** Mounts bpffs at `root`'s mount point (/sys/fs/bpf) when nothing is mounted there. */
export function ensureBpffs(root: string): void {
  const mountPoint = root.startsWith('/sys/fs/bpf') ? '/sys/fs/bpf' : root;
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  const mounted = mounts.split('\n').some((l) => {
    const [, target, type] = l.split(' ');
    return type === 'bpf' && (target === mountPoint || mountPoint.startsWith(`${target}/`));
  });
  if (mounted) return;
  mkdirSync(mountPoint, { recursive: true });
  mountBpffs(mountPoint);
}

/** The directory for this namespace's pins under `root`. */
export function pinDirFor(root: string): string {
  return join(root, netnsId());
}

function linkPinName(h: Hook): string {
  return `link_${h.iface.name}_${h.direction}`;
}

export interface Attachment {
  readonly hook: Hook;
  readonly linkFd: number;
  /** True when an earlier process's pinned link was taken over. */
  readonly adopted: boolean;
}

/** Attaches (or re-programs pinned links for) every hook. */
export function attachAll(hooks: readonly Hook[], progs: LoadedPrograms, pinDir: string | undefined): Attachment[] {
  const done: Attachment[] = [];
  try {
    for (const hook of hooks) {
      const prog = hook.direction === 'ingress' ? progs.ingress : progs.egress;
      const what = `tcx ${hook.direction} of ${hook.iface.name}`;
      const path = pinDir ? join(pinDir, linkPinName(hook)) : undefined;
      const pinned = path && existsSync(path) ? objGet(path) : undefined;
      if (pinned !== undefined) {
        const info = linkInfo(pinned);
        if (info.ifindex === hook.iface.ifindex) {
          linkUpdate(pinned, prog, what);
          done.push({ hook, linkFd: pinned, adopted: true });
          continue;
        }
        // Same name, different interface (recreated): the old link is dead.
        closeFd(pinned);
        unlinkSync(path!);
      }
      const fd = tcxLinkCreate(prog, hook.iface.ifindex, hook.direction === 'ingress' ? BPF_TCX_INGRESS : BPF_TCX_EGRESS, what);
      done.push({ hook, linkFd: fd, adopted: false });
      if (path) objPin(fd, path);
    }
  } catch (err) {
    for (const a of done) if (!a.adopted) closeFd(a.linkFd);
    throw err;
  }
  return done;
}

/**
 * Removes everything Sluice pinned in `dir` (one namespace): detaches each
 * pinned link, even if a running process still holds it, then unlinks maps.
 * Returns what was removed, for `sluice detach`.
 */
export function detachPinned(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (name.startsWith('link_')) {
      const fd = objGet(path);
      if (fd !== undefined) {
        try {
          linkDetach(fd, name);
        } catch {
          // Already detached (interface gone): unlinking is all that is left.
        }
        closeFd(fd);
      }
    }
    unlinkSync(path);
    removed.push(path);
  }
  rmdirSync(dir);
  return removed;
}
