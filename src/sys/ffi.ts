/**
 * The one FFI module: the Linux calls Node does not expose, bound from libc
 * with koffi. Everything here is a thin, typed binding; callers get raw
 * return codes and read errno right after the call (`lastErrno`) because
 * errno is per thread and any later FFI call may overwrite it.
 *
 * Pointer arguments are declared `void *` and take ArrayBuffers, Buffers or
 * TypedArrays: koffi passes their backing store without copying. Structures
 * that hold pointers (msghdr, iovec) live in long-lived ArrayBuffers whose
 * addresses are taken once with `addressOf` (V8 never moves an off-heap
 * backing store), so the hot path allocates nothing.
 *
 * Loading is lazy and may fail (not Linux, no koffi binary for this
 * platform): `loadFfi()` reports why instead of throwing at import time.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

/** The bound functions. Signatures follow the C prototypes. */
export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: ArrayBufferView | ArrayBuffer, addrlen: number): number;
  getsockname(fd: number, addr: ArrayBufferView, addrlen: ArrayBufferView): number;
  setsockopt(fd: number, level: number, name: number, value: ArrayBufferView, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: ArrayBufferView, len: ArrayBufferView): number;
  /** `vec` and `timeout` are raw addresses (number) so a slice of a ring can be passed without a view. */
  recvmmsg(fd: number, vec: number, vlen: number, flags: number, timeout: number): number;
  sendmmsg(fd: number, vec: number, vlen: number, flags: number): number;
  /** One message (`msg`: a msghdr's raw address); with MSG_ERRQUEUE reads the error queue. */
  recvmsg(fd: number, msg: number, flags: number): number;
  /** One datagram: buffer and sockaddr as raw addresses (the bench's one-call-per-packet baseline). */
  sendto(fd: number, buf: number, len: number, flags: number, addr: number, addrlen: number): number;
  /** `fds` address, count, timespec address (0 = block), sigmask (0). */
  ppoll(fds: number, nfds: number, timeout: number, sigmask: number): number;
  close(fd: number): number;
  eventfd(initval: number, flags: number): number;
  read(fd: number, buf: ArrayBufferView, count: number): number;
  write(fd: number, buf: ArrayBufferView, count: number): number;
  /** recv(2) into a buffer; with MSG_TRUNC a datagram/netlink socket returns the full message length. */
  recv(fd: number, buf: ArrayBufferView, len: number, flags: number): number;
  /** memcpy(p, p, 0) returns p: how we learn a buffer's address. */
  memcpyAddr(dst: ArrayBufferView | ArrayBuffer, src: ArrayBufferView | ArrayBuffer, n: number): number;
  /** syscall(nr, a, b, c) for calls glibc has no wrapper for (bpf). */
  syscall3(nr: number, a: number, b: number, c: number): number;
  /** The calling thread's id (for per-thread calls such as setpriority). */
  gettid(): number;
  /** setpriority(which, who, prio): with PRIO_PROCESS and a thread id, that thread's nice value. */
  setpriority(which: number, who: number, prio: number): number;
  /** prctl(option, arg) for the calling thread (e.g. PR_SET_TIMERSLACK). */
  prctl(option: number, arg: number): number;
  /** mount(2), for bpffs. `data` may be null. */
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): number;
  /** clock_gettime(clock, ts): `ts` is a BigInt64Array(2) {tv_sec, tv_nsec}. */
  clock_gettime(clock: number, ts: BigInt64Array): number;
  /** clock_nanosleep(clock, flags, req, rem); returns 0 or an error number (not -1/errno). The bench's pacing baseline. */
  clock_nanosleep(clock: number, flags: number, req: BigInt64Array, rem: BigInt64Array | null): number;
  /** sched_setscheduler(tid, policy, param): `param` is an Int32Array(1) {sched_priority}. */
  sched_setscheduler(pid: number, policy: number, param: Int32Array): number;
  /** Interface index of a name in the calling thread's network namespace; 0 if there is none. */
  if_nametoindex(name: string): number;
  /** pthread_sigmask(how, set, oldset): the calling thread's blocked signals; returns 0 or an error number. */
  pthread_sigmask(how: number, set: ArrayBufferView | null, oldset: ArrayBufferView | null): number;
  /** pipe2(fds, flags): `fds` is an Int32Array(2) {read end, write end}. */
  pipe2(fds: Int32Array, flags: number): number;
  /** splice(in, NULL, out, NULL, len, flags): offsets always NULL (pipes and sockets). */
  splice(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): number;
  /** shutdown(fd, how): SHUT_WR sends the FIN of a half-close. */
  shutdown(fd: number, how: number): number;
  /** tee(in, out, len, flags): duplicates pipe buffers (page references) from one pipe into another. */
  tee(fdIn: number, fdOut: number, len: number, flags: number): number;
  /** fcntl(fd, cmd, arg) with an int argument (F_SETPIPE_SZ, F_GETPIPE_SZ). */
  fcntlInt(fd: number, cmd: number, arg: number): number;
  /** ioctl(fd, request, int *) (FIONREAD). */
  ioctlInt(fd: number, request: number, value: Int32Array): number;
  /** errno of the calling thread, as left by the last call. */
  errno(): number;
}

let loaded: { ok: true; libc: Libc } | { ok: false; reason: string } | undefined;

/** Binds libc once per thread (koffi is loaded per worker). */
export function loadFfi(): { ok: true; libc: Libc } | { ok: false; reason: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { ok: false, reason: `needs Linux (this is ${process.platform})` });
  let koffi: typeof Koffi;
  try {
    // koffi ships prebuilt binaries for common platforms; a missing one is a
    // reason to fall back to the portable tier, not a crash.
    koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
  } catch (err) {
    return (loaded = { ok: false, reason: `the koffi FFI module could not be loaded: ${(err as Error).message}` });
  }
  try {
    const lib = koffi.load('libc.so.6');
    // Integer-typed pointers (uintptr_t) let callers pass an address plus an
    // offset into a ring without creating a view per call.
    const libc: Libc = {
      socket: lib.func('int socket(int, int, int)'),
      bind: lib.func('int bind(int, void *, uint32_t)'),
      getsockname: lib.func('int getsockname(int, void *, void *)'),
      setsockopt: lib.func('int setsockopt(int, int, int, void *, uint32_t)'),
      getsockopt: lib.func('int getsockopt(int, int, int, void *, void *)'),
      recvmmsg: lib.func('int recvmmsg(int, uintptr_t, unsigned int, int, uintptr_t)'),
      sendmmsg: lib.func('int sendmmsg(int, uintptr_t, unsigned int, int)'),
      recvmsg: lib.func('long recvmsg(int, uintptr_t, int)'),
      sendto: lib.func('long sendto(int, uintptr_t, size_t, int, uintptr_t, uint32_t)'),
      ppoll: lib.func('int ppoll(uintptr_t, unsigned long, uintptr_t, uintptr_t)'),
      close: lib.func('int close(int)'),
      eventfd: lib.func('int eventfd(unsigned int, int)'),
      read: lib.func('long read(int, void *, size_t)'),
      write: lib.func('long write(int, void *, size_t)'),
      recv: lib.func('long recv(int, void *, size_t, int)'),
      memcpyAddr: lib.func('uintptr_t memcpy(void *, void *, size_t)'),
      syscall3: (() => {
        // syscall() is variadic; koffi passes each extra argument with the type named before it.
        const fn = lib.func('long syscall(long, ...)');
        return (nr: number, a: number, b: number, c: number) => Number(fn(nr, 'long', a, 'uintptr_t', b, 'long', c));
      })(),
      gettid: lib.func('int gettid(void)'),
      setpriority: lib.func('int setpriority(int, unsigned int, int)'),
      prctl: (() => {
        const fn = lib.func('int prctl(int, ...)');
        return (option: number, arg: number) => Number(fn(option, 'unsigned long', arg, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0));
      })(),
      mount: lib.func('int mount(const char *, const char *, const char *, unsigned long, const char *)'),
      clock_gettime: lib.func('int clock_gettime(int, void *)'),
      clock_nanosleep: lib.func('int clock_nanosleep(int, int, void *, void *)'),
      sched_setscheduler: lib.func('int sched_setscheduler(int, int, void *)'),
      if_nametoindex: lib.func('unsigned int if_nametoindex(const char *)'),
      pthread_sigmask: lib.func('int pthread_sigmask(int, void *, void *)'),
      pipe2: lib.func('int pipe2(void *, int)'),
      splice: lib.func('long splice(int, uintptr_t, int, uintptr_t, size_t, unsigned int)'),
      shutdown: lib.func('int shutdown(int, int)'),
      tee: lib.func('long tee(int, int, size_t, unsigned int)'),
      fcntlInt: (() => {
        const fn = lib.func('int fcntl(int, int, ...)');
        return (fd: number, cmd: number, arg: number) => Number(fn(fd, cmd, 'int', arg));
      })(),
      ioctlInt: (() => {
        const fn = lib.func('int ioctl(int, unsigned long, ...)');
        return (fd: number, request: number, value: Int32Array) => Number(fn(fd, request, 'void *', value));
      })(),
      errno: () => koffi.errno(),
    };
    return (loaded = { ok: true, libc });
  } catch (err) {
    return (loaded = { ok: false, reason: `libc bindings failed: ${(err as Error).message}` });
  }
}

/** The bound libc, or throws NotSupported-style Error with the reason. */
export function libc(): Libc {
  const r = loadFfi();
  if (!r.ok) throw new Error(r.reason);
  return r.libc;
}

/**
 * The few libcrypto (OpenSSL EVP) calls the TPO's datagram AEAD needs. Node
 * links OpenSSL and exports its symbols, so they are looked up in the
 * running program (`koffi.load(null)`), never in a separate library that a
 * host might lack. Why not node:crypto: it builds a new cipher object per
 * datagram, about 10 µs each, where one reused EVP context costs under
 * 3 µs (docs/BENCHMARKS.md, issue 18's profile). Pointer arguments are raw
 * addresses into a NativeRegion; `ctx` and `cipher` are koffi externals.
 */
export interface LibCrypto {
  cipherCtxNew(): unknown;
  chacha20Poly1305(): unknown;
  /** Sets the cipher on a new context (no key, no IV yet). */
  encryptInitCipher(ctx: unknown, cipher: unknown, engine: null, key: null, iv: null): number;
  decryptInitCipher(ctx: unknown, cipher: unknown, engine: null, key: null, iv: null): number;
  /** key and IV by address (0 keeps the current one); cipher and engine 0. */
  encryptInit(ctx: unknown, cipher: 0, engine: 0, key: number, iv: number): number;
  decryptInit(ctx: unknown, cipher: 0, engine: 0, key: number, iv: number): number;
  /** out 0 feeds associated data. */
  encryptUpdate(ctx: unknown, out: number, outl: number, input: number, inl: number): number;
  decryptUpdate(ctx: unknown, out: number, outl: number, input: number, inl: number): number;
  encryptFinal(ctx: unknown, out: number, outl: number): number;
  /** Returns > 0 only when the tag authenticates. */
  decryptFinal(ctx: unknown, out: number, outl: number): number;
  ctrl(ctx: unknown, type: number, arg: number, ptr: number): number;
}

let loadedCrypto: { ok: true; crypto: LibCrypto } | { ok: false; reason: string } | undefined;

/** Binds the EVP calls once per thread, or says why they are unavailable. */
export function loadLibCrypto(): { ok: true; crypto: LibCrypto } | { ok: false; reason: string } {
  if (loadedCrypto) return loadedCrypto;
  if (process.platform !== 'linux') return (loadedCrypto = { ok: false, reason: `needs Linux (this is ${process.platform})` });
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
    const lib = koffi.load(null as unknown as string);
    const crypto: LibCrypto = {
      cipherCtxNew: lib.func('void *EVP_CIPHER_CTX_new(void)'),
      chacha20Poly1305: lib.func('void *EVP_chacha20_poly1305(void)'),
      encryptInitCipher: lib.func('int EVP_EncryptInit_ex(void *, void *, void *, void *, void *)'),
      decryptInitCipher: lib.func('int EVP_DecryptInit_ex(void *, void *, void *, void *, void *)'),
      encryptInit: lib.func('int EVP_EncryptInit_ex(void *, uintptr_t, uintptr_t, uintptr_t, uintptr_t)'),
      decryptInit: lib.func('int EVP_DecryptInit_ex(void *, uintptr_t, uintptr_t, uintptr_t, uintptr_t)'),
      encryptUpdate: lib.func('int EVP_EncryptUpdate(void *, uintptr_t, uintptr_t, uintptr_t, int)'),
      decryptUpdate: lib.func('int EVP_DecryptUpdate(void *, uintptr_t, uintptr_t, uintptr_t, int)'),
      encryptFinal: lib.func('int EVP_EncryptFinal_ex(void *, uintptr_t, uintptr_t)'),
      decryptFinal: lib.func('int EVP_DecryptFinal_ex(void *, uintptr_t, uintptr_t)'),
      ctrl: lib.func('int EVP_CIPHER_CTX_ctrl(void *, int, int, uintptr_t)'),
    };
    return (loadedCrypto = { ok: true, crypto });
  } catch (err) {
    return (loadedCrypto = { ok: false, reason: `libcrypto bindings failed: ${(err as Error).message}` });
  }
}
