/** mount(2) for the one filesystem Sluice mounts itself: bpffs, where it pins the kernel tier's maps. */
import { libc } from './ffi.js';
import { syscallError } from './errno.js';

/** Mounts a bpffs at `mountPoint` (mode 0700: only root reads the pins). Throws a SyscallError naming mount(2). */
export function mountBpffs(mountPoint: string): void {
  const c = libc();
  if (c.mount('bpf', mountPoint, 'bpf', 0, 'mode=0700') !== 0) throw syscallError('mount', c.errno(), `bpffs at ${mountPoint}`);
}
