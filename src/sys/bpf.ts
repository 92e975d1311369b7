/**
 * The bpf(2) system call, for the kernel tier: maps and program loading here;
 * tcx links, pinning in bpffs and object info in bpf-links.ts (re-exported);
 * the call itself in bpf-call.ts. Each command fills a `union bpf_attr` in a
 * native region (pointers inside it must stay put while the kernel reads
 * them) and fails with a SyscallError naming the command and errno, e.g.
 * `bpf(BPF_PROG_LOAD) failed: EACCES (verifier log ...)`.
 *
 * These are control-plane calls (a map update per policy change, a counter
 * read per stats call), so clarity wins over avoiding allocations, except
 * in mapLookup and mapLookupArrayRange, which a metrics scrape calls for
 * every flow and subscriber.
 */
import { readFileSync } from 'node:fs';
import { libc } from './ffi.js';
import { NativeRegion } from './memory.js';
import { withSignalsBlocked } from './thread.js';
import { ATTR_SIZE, bpf, cString, failedWith, newAttr, regionOf } from './bpf-call.js';

export * from './bpf-links.js';

export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERCPU_ARRAY: 6, LPM_TRIE: 11 } as const;
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_TCX_INGRESS = 46;
export const BPF_TCX_EGRESS = 47;
export const BPF_PROG_TYPE_XDP = 6;
/** Attach type of XDP programs and links. */
export const BPF_XDP = 37;
export const BPF_ANY = 0;

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

/**
 * The values of entries 0..count-1 of an array map (per-CPU arrays too:
 * `valueSize` is then the per-CPU size times the CPUs, as for mapLookup), in
 * as few BPF_MAP_LOOKUP_BATCH calls as the kernel needs: one system call
 * instead of `count` lookups. Value i is at i * valueSize of the result.
 */
export function mapLookupArrayRange(fd: number, valueSize: number, count: number, what = 'map'): Uint8Array {
  const out = new Uint8Array(valueSize * count);
  if (count === 0) return out;
  const keys = new NativeRegion(4 * count);
  const values = new NativeRegion(valueSize * count);
  const position = new NativeRegion(8); // in_batch and out_batch: for an array map, the next index (u32)
  let done = 0;
  while (done < count) {
    const a = newAttr();
    if (done > 0) a.setPointer(0, position.address);
    a.setPointer(8, position.address);
    a.setPointer(16, keys.address);
    a.setPointer(24, values.address);
    a.view.setUint32(32, count - done, true);
    a.view.setUint32(36, fd, true);
    let end = false;
    try {
      bpf('MAP_LOOKUP_BATCH', a, () => what);
    } catch (err) {
      if (!failedWith(err, 'ENOENT')) throw err;
      end = true; // past the map's last entry: `count` says how many were read before it
    }
    const n = a.view.getUint32(32, true);
    out.set(values.bytes.subarray(0, n * valueSize), done * valueSize);
    done += n;
    if (end || n === 0) break;
  }
  return out;
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
  return withSignalsBlocked(() => {
    try {
      return attempt();
    } catch (err) {
      if (failedWith(err, 'EPERM')) throw err;
      return attempt(new NativeRegion(4 * 1024 * 1024));
    }
  });
}

/** close(2) for bpf object fds. */
export function closeFd(fd: number): void {
  libc().close(fd);
}
