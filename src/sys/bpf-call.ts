/**
 * The bpf(2) system call itself, shared by the map and program calls
 * (bpf.ts) and the link, pin and info calls (bpf-links.ts): the command
 * numbers, `union bpf_attr` in a native region, and the SyscallError that
 * names the command and errno.
 */
import { libc } from './ffi.js';
import { NativeRegion } from './memory.js';
import { syscallError } from './errno.js';
import { SyscallError } from '../errors.js';

const CMD = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  MAP_LOOKUP_BATCH: 24,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_TEST_RUN: 10,
  OBJ_GET_INFO_BY_FD: 15,
  RAW_TRACEPOINT_OPEN: 17,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_DETACH: 34,
} as const;
export type Command = keyof typeof CMD;

export const ATTR_SIZE = 144;

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
export function bpf(cmd: Command, attr: NativeRegion, detail?: () => string): number {
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
export function failedWith(err: unknown, name: string): boolean {
  return err instanceof SyscallError && err.errno === name;
}

/** A region that holds `bytes`, for pointers in bpf_attr. */
export function regionOf(bytes: Uint8Array): NativeRegion {
  const r = new NativeRegion(bytes.length);
  r.bytes.set(bytes);
  return r;
}

export function cString(s: string): NativeRegion {
  return regionOf(Buffer.from(`${s}\0`, 'utf8'));
}

export function newAttr(): NativeRegion {
  return new NativeRegion(ATTR_SIZE);
}
