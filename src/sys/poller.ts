/**
 * ppoll over a fixed set of descriptors with a nanosecond-resolution
 * timeout, and an eventfd other threads write to wake the poller.
 */
import { libc } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, POLLIN, SIZEOF_POLLFD } from './constants.js';
import { NativeRegion } from './memory.js';

export class Poller {
  #fds: NativeRegion = new NativeRegion(SIZEOF_POLLFD);
  #count = 0;
  readonly #timeout = new NativeRegion(16);

  /** Replaces the watched set; each descriptor is watched for `events` (POLLIN by default). */
  set(fds: readonly number[], events: readonly number[] = []): void {
    if (this.#fds.size < fds.length * SIZEOF_POLLFD) this.#fds = new NativeRegion(fds.length * SIZEOF_POLLFD * 2);
    fds.forEach((fd, i) => {
      this.#fds.view.setInt32(i * SIZEOF_POLLFD, fd, true);
      this.#fds.view.setInt16(i * SIZEOF_POLLFD + 4, events[i] ?? POLLIN, true);
      this.#fds.view.setInt16(i * SIZEOF_POLLFD + 6, 0, true);
    });
    this.#count = fds.length;
  }

  /** Changes what entry `i` waits for (0: ignore it for now). */
  setEvents(i: number, events: number): void {
    this.#fds.view.setInt16(i * SIZEOF_POLLFD + 4, events, true);
  }

  /**
   * Waits until a descriptor is ready or `timeoutNs` passes (negative:
   * forever). Returns how many are ready; 0 on timeout or signal.
   */
  wait(timeoutNs: number): number {
    const c = libc();
    let tsAddr = 0;
    if (timeoutNs >= 0) {
      const sec = Math.floor(timeoutNs / 1e9);
      this.#timeout.setSize(0, sec);
      this.#timeout.setSize(8, Math.floor(timeoutNs - sec * 1e9));
      tsAddr = this.#timeout.address;
    }
    const r = c.ppoll(this.#fds.address, this.#count, tsAddr, 0);
    if (r >= 0) return r;
    const e = c.errno();
    if (e === EINTR) return 0;
    throw syscallError('ppoll', e);
  }

  /** revents of entry `i` after `wait`. */
  revents(i: number): number {
    return this.#fds.view.getInt16(i * SIZEOF_POLLFD + 6, true);
  }
}

/** An eventfd: `signal()` from any thread wakes a Poller watching `fd`. */
export class Waker {
  readonly fd: number;
  readonly #one = new BigUint64Array([1n]);
  readonly #sink = new BigUint64Array(1);

  constructor(fd?: number) {
    if (fd !== undefined) {
      this.fd = fd;
      return;
    }
    const c = libc();
    const r = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r < 0) throw syscallError('eventfd', c.errno());
    this.fd = r;
  }

  signal(): void {
    libc().write(this.fd, this.#one, 8);
  }

  /** Resets the counter; true if it had been signalled. */
  drain(): boolean {
    const c = libc();
    const r = c.read(this.fd, this.#sink, 8);
    if (r < 0 && c.errno() !== EAGAIN) throw syscallError('read(eventfd)', c.errno());
    return r === 8;
  }

  close(): void {
    libc().close(this.fd);
  }
}
