/**
 * The bpf(2) system call, for the kernel tier: maps, program loading, tcx
 * links and pinning in bpffs. Each command fills a `union bpf_attr` in a
 * native region (pointers inside it must stay put while the kernel reads
 * them) and fails with a SyscallError naming the command and errno, e.g.
 * `bpf(BPF_PROG_LOAD) failed: EACCES (verifier log ...)`.
 *
 * These are control-plane calls (a map update per policy change, a counter
 * read per stats call), so clarity wins over avoiding allocations here.
 */
import { readFileSync } from 'node:fs';
import { libc } from './ffi.js';
import { NativeRegion } from './memory.js';
import { syscallError } from './errno.js';
import { SyscallError } from '../errors.js';

export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERCPU_ARRAY: 6, LPM_TRIE: 11 } as const;
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_TCX_INGRESS = 46;
export const BPF_TCX_EGRESS = 47;
export const BPF_ANY = 0;

const CMD = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  OBJ_GET_INFO_BY_FD: 15,
  RAW_TRACEPOINT_OPEN: 17,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_DETACH: 34,
} as const;
type Command = keyof typeof CMD;

const ATTR_SIZE = 144;

/** __NR_bpf differs per architecture. */
function bpfSyscallNumber(): number {
  switch (process.arch) {
    case 'x64':
      return 321;
    case 'arm64':
    case 'riscv64':
    case 'loong64':
      return 280;
    case 'ia32':
      return 357;
    case 'arm':
      return 386;
    default:
      throw new Error(`bpf(2) syscall number unknown for ${process.arch}`);
  }
}

let nr: number | undefined;

/** Raw bpf(cmd, attr, size); returns the result or throws SyscallError. */
function bpf(cmd: Command, attr: NativeRegion, detail?: () => string): number {
  nr ??= bpfSyscallNumber();
  const c = libc();
  const rc = c.syscall3(nr, CMD[cmd], attr.address, ATTR_SIZE);
  if (rc < 0) {
    const errno = c.errno();
    throw syscallError(`bpf(BPF_${cmd})`, errno, detail?.());
  }
  return rc;
}

/** True when `err` is this module's SyscallError with errno `name` (e.g. ENOENT: no such key or pin). */
function failedWith(err: unknown, name: string): boolean {
  return err instanceof SyscallError && err.errno === name;
}

/** A region that holds `bytes`, for pointers in bpf_attr. */
function regionOf(bytes: Uint8Array): NativeRegion {
  const r = new NativeRegion(bytes.length);
  r.bytes.set(bytes);
  return r;
}

function cString(s: string): NativeRegion {
  return regionOf(Buffer.from(`${s}\0`, 'utf8'));
}

function newAttr(): NativeRegion {
  return new NativeRegion(ATTR_SIZE);
}

const SCRATCH_KEY = 0;
const SCRATCH_VALUE = 1;
const SCRATCH_ATTR = 2;
/** Per-thread regions reused by the hot calls (a module instance per thread, and bpf() is synchronous). */
const scratch: (NativeRegion | undefined)[] = [];

/** Scratch region `slot`, at least `size` bytes (its contents are whatever the last call left). */
function scratchRegion(slot: number, size: number): NativeRegion {
  const r = scratch[slot];
  if (r && r.size >= size) return r;
  return (scratch[slot] = new NativeRegion(size));
}

export interface MapSpec {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** Up to 15 characters are kept by the kernel. */
  readonly name: string;
}

/** BPF_MAP_CREATE; returns the map fd. */
export function mapCreate(spec: MapSpec): number {
  const a = newAttr();
  const v = a.view;
  v.setUint32(0, spec.type, true);
  v.setUint32(4, spec.keySize, true);
  v.setUint32(8, spec.valueSize, true);
  v.setUint32(12, spec.maxEntries, true);
  v.setUint32(16, spec.flags, true);
  a.bytes.set(Buffer.from(spec.name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15)), 28);
  return bpf('MAP_CREATE', a, () => `map ${spec.name}`);
}

function elemAttr(fd: number, key: NativeRegion, value: NativeRegion | undefined, flags: number): NativeRegion {
  return fillElemAttr(newAttr(), fd, key, value, flags);
}

function fillElemAttr(a: NativeRegion, fd: number, key: NativeRegion, value: NativeRegion | undefined, flags: number): NativeRegion {
  a.view.setUint32(0, fd, true);
  a.setPointer(8, key.address);
  if (value) a.setPointer(16, value.address);
  a.view.setUint32(24, flags, true);
  return a;
}

/** BPF_MAP_UPDATE_ELEM. */
export function mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags = BPF_ANY, what = 'map'): void {
  const k = regionOf(key);
  const val = regionOf(value);
  bpf('MAP_UPDATE_ELEM', elemAttr(fd, k, val, flags), () => what);
}

/** BPF_MAP_LOOKUP_ELEM; undefined when the key is absent. */
export function mapLookup(fd: number, key: Uint8Array, valueSize: number, what = 'map'): Uint8Array | undefined {
  // Scratch regions: a scrape of 100 flows x 100 subscribers makes 10,100
  // lookups, and three fresh regions each (an FFI call apiece for their
  // addresses) were most of its time. The value is copied out before return.
  const k = scratchRegion(SCRATCH_KEY, key.length);
  k.bytes.set(key);
  const val = scratchRegion(SCRATCH_VALUE, valueSize);
  const a = scratchRegion(SCRATCH_ATTR, ATTR_SIZE);
  a.bytes.fill(0);
  try {
    bpf('MAP_LOOKUP_ELEM', fillElemAttr(a, fd, k, val, 0), () => what);
  } catch (err) {
    if (failedWith(err, 'ENOENT')) return undefined;
    throw err;
  }
  return val.bytes.slice(0, valueSize);
}

/** BPF_MAP_DELETE_ELEM; false when the key was absent. */
export function mapDelete(fd: number, key: Uint8Array, what = 'map'): boolean {
  const k = regionOf(key);
  try {
    bpf('MAP_DELETE_ELEM', elemAttr(fd, k, undefined, 0), () => what);
    return true;
  } catch (err) {
    if (failedWith(err, 'ENOENT')) return false;
    throw err;
  }
}

/** Every key of a hash map (BPF_MAP_GET_NEXT_KEY from no key). */
export function mapKeys(fd: number, keySize: number, what = 'map'): Uint8Array[] {
  const keys: Uint8Array[] = [];
  let prev: NativeRegion | undefined;
  for (;;) {
    const next = new NativeRegion(keySize);
    const a = newAttr();
    a.view.setUint32(0, fd, true);
    if (prev) a.setPointer(8, prev.address);
    a.setPointer(16, next.address);
    try {
      bpf('MAP_GET_NEXT_KEY', a, () => what);
    } catch (err) {
      if (failedWith(err, 'ENOENT')) return keys;
      throw err;
    }
    keys.push(next.bytes.slice(0, keySize));
    prev = next;
  }
}

/** Number of possible CPUs: per-CPU map values hold one slot for each. */
export function possibleCpus(): number {
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [lo, hi] = part.split('-').map(Number);
    n += (hi ?? lo!) - lo! + 1;
  }
  return n;
}

export interface ProgramSpec {
  readonly type: number;
  readonly insns: Uint8Array;
  readonly license: string;
  readonly name: string;
  readonly expectedAttachType: number;
}

/**
 * BPF_PROG_LOAD. Loads without a log first (fast); when the verifier
 * refuses, loads again with a log so the error says why.
 */
export function progLoad(spec: ProgramSpec): number {
  const insns = regionOf(spec.insns);
  const license = cString(spec.license);
  const attempt = (log?: NativeRegion): number => {
    const a = newAttr();
    const v = a.view;
    v.setUint32(0, spec.type, true);
    v.setUint32(4, spec.insns.length / 8, true);
    a.setPointer(8, insns.address);
    a.setPointer(16, license.address);
    if (log) {
      v.setUint32(24, 1, true);
      v.setUint32(28, log.size, true);
      a.setPointer(32, log.address);
    }
    a.bytes.set(Buffer.from(spec.name.slice(0, 15)), 48);
    v.setUint32(68, spec.expectedAttachType, true);
    return bpf('PROG_LOAD', a, () => {
      if (!log) return `program ${spec.name}`;
      const text = Buffer.from(log.bytes)
        .toString('utf8')
        .replace(/\0[\s\S]*$/, '');
      // The end of the log is where the verifier stopped.
      return `program ${spec.name}; verifier log (last lines):\n${text.split('\n').slice(-25).join('\n')}`;
    });
  };
  try {
    return attempt();
  } catch (err) {
    if (failedWith(err, 'EPERM')) throw err;
    return attempt(new NativeRegion(4 * 1024 * 1024));
  }
}

export const BPF_PROG_TYPE_RAW_TRACEPOINT = 17;

/** BPF_RAW_TRACEPOINT_OPEN: attaches `progFd` to the tracepoint `name`; closing the returned fd detaches. */
export function rawTracepointOpen(name: string, progFd: number): number {
  const n = cString(name);
  const a = newAttr();
  a.setPointer(0, n.address);
  a.view.setUint32(8, progFd, true);
  return bpf('RAW_TRACEPOINT_OPEN', a, () => `raw tracepoint ${name}`);
}

/** BPF_LINK_CREATE for tcx: attaches `progFd` at ifindex/direction; returns the link fd. */
export function tcxLinkCreate(progFd: number, ifindex: number, attachType: number, what: string): number {
  const a = newAttr();
  a.view.setUint32(0, progFd, true);
  a.view.setUint32(4, ifindex, true);
  a.view.setUint32(8, attachType, true);
  return bpf('LINK_CREATE', a, () => what);
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

/** close(2) for bpf object fds. */
export function closeFd(fd: number): void {
  libc().close(fd);
}
