/**
 * Where a gateway thread's CPU goes, from a `perf` sampling run (issue 18's
 * profile tables): each sample is put in one category by its leaf frame
 * (kernel time by the system call in its stack), as a share of that
 * thread's samples. Unlike a V8 CPU profile this counts CPU time only
 * (a thread preempted inside a system call is not sampled) and sees the
 * kernel and native code.
 *
 *   NODE_OPTIONS=--perf-basic-prof node --import tsx bench/tools/tpo-loopback.ts --mb 800 &
 *   perf record -F 1999 -g -p GATEWAY_PIDS -o p.data -- sleep 5
 *   perf script -i p.data -F tid,ip,sym > p.txt
 *   node --import tsx bench/tools/perf-categories.ts p.txt TID[,TID...]
 */
import { readFileSync } from 'node:fs';

const [file, tidList] = process.argv.slice(2);
if (!file || !tidList) {
  process.stderr.write('usage: perf-categories.ts PERF_SCRIPT_OUTPUT TID[,TID...]\n');
  process.exit(2);
}

const USER_LEAVES = new Set(['epoll_pwait', 'read', '__sendmmsg', '__GI___writev', 'unlink_chunk.constprop.0']);

function kernelCategory(stack: string): string {
  if (stack.includes('__sendmmsg')) return 'kernel: send path (sendmmsg)';
  if (/writev|__GI___libc_write/.test(stack)) return 'kernel: TCP write (writev/write)';
  if (/\sread\n|uv__read|__GI___libc_read|\sread$/.test(stack)) return 'kernel: TCP read';
  return 'kernel: epoll/other';
}

function category(leaf: string, stack: string): string {
  const plainSymbol = /^[a-z_0-9.]+$/.test(leaf) && !/^crc32|^poly|memset|memcpy|memmove/.test(leaf) && !USER_LEAVES.has(leaf);
  if (leaf.includes('[k]') || plainSymbol) return kernelCategory(stack);
  if (/ChaCha20|poly1305/.test(leaf)) return 'AEAD (ChaCha20/Poly1305 in OpenSSL)';
  if (leaf.startsWith('crc32')) return 'CRC-32 of driver buffers (zlib)';
  if (leaf.includes('memset')) return 'memset (zero-filled allocations)';
  if (/memcpy|memmove/.test(leaf)) return 'memcpy';
  if (/Scaveng|MarkCompact|Heap::|Evacuat|GarbageColl|Sweep|Marking|MinorMC/.test(leaf)) return 'GC';
  if (leaf.startsWith('JS:') || leaf.startsWith('RegExp:')) return 'JIT-compiled JS';
  if (leaf.startsWith('Builtins_')) return 'V8 builtins (ICs, calls, typed arrays)';
  if (leaf.startsWith('K::') || /napi|Napi/.test(leaf)) return 'koffi/N-API (FFI calls)';
  if (leaf.startsWith('v8::')) return 'V8 runtime (other)';
  if (/^node::|^uv_|^uv__/.test(leaf)) return 'node/libuv';
  if (leaf === 'epoll_pwait') return 'epoll_pwait';
  return `other: ${leaf.slice(0, 40)}`;
}

process.stdout.on('error', () => process.exit(0));
const samples = readFileSync(file, 'utf8').split('\n\n');
for (const tid of tidList.split(',')) {
  const counts = new Map<string, number>();
  let total = 0;
  for (const s of samples) {
    const lines = s
      .trim()
      .split('\n')
      .filter((l) => l.trim());
    if (lines.length < 2 || lines[0]!.trim().split(/\s+/)[0] !== tid) continue;
    total++;
    const leaf = lines[1]!.trim().split(' ').slice(1).join(' ');
    const k = category(leaf, lines.slice(1).join('\n'));
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  process.stdout.write(`${tid} samples ${total}\n`);
  for (const [k, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 22)) process.stdout.write(`  ${((100 * n) / total).toFixed(1).padStart(5)}% ${k}\n`);
}
