/**
 * Batched send: one sendmmsg vector whose messages each carry their own
 * destination, their own iovecs (pointing into receive slots: no copy) and,
 * when they hold several equal-size packets, their own UDP_SEGMENT cmsg so
 * the kernel splits them (UDP GSO). One call serves many destinations.
 *
 * Build with `clear()`, `begin()` + `addIov()`..., then `send()` from a
 * start index; `send` reports how many messages the kernel took or the
 * errno of the first one it refused.
 */
import { libc } from './ffi.js';
import { EINTR } from './errno.js';
import { CMSG_LEN_U16, CMSG_SPACE_INT, MMSG, MSG_DONTWAIT, SIZEOF_IOVEC, SIZEOF_MMSGHDR, SOL_UDP, UDP_SEGMENT } from './constants.js';
import { NativeRegion } from './memory.js';

export class SendVector {
  readonly maxMessages: number;
  readonly maxIovecs: number;
  readonly #vec: NativeRegion;
  readonly #iov: NativeRegion;
  readonly #ctl: NativeRegion;
  #count = 0;
  #iovUsed = 0;

  constructor(maxMessages: number, maxIovecs: number) {
    this.maxMessages = maxMessages;
    this.maxIovecs = maxIovecs;
    this.#vec = new NativeRegion(maxMessages * SIZEOF_MMSGHDR);
    this.#iov = new NativeRegion(maxIovecs * SIZEOF_IOVEC);
    this.#ctl = new NativeRegion(maxMessages * CMSG_SPACE_INT);
    // The cmsg headers never change; only the segment size does.
    for (let i = 0; i < maxMessages; i++) {
      const o = i * CMSG_SPACE_INT;
      this.#ctl.setSize(o, CMSG_LEN_U16);
      this.#ctl.view.setInt32(o + 8, SOL_UDP, true);
      this.#ctl.view.setInt32(o + 12, UDP_SEGMENT, true);
    }
  }

  get count(): number {
    return this.#count;
  }

  /** True when a message with `iovecs` more iovecs still fits. */
  hasRoom(iovecs: number): boolean {
    return this.#count < this.maxMessages && this.#iovUsed + iovecs <= this.maxIovecs;
  }

  clear(): void {
    this.#count = 0;
    this.#iovUsed = 0;
  }

  /**
   * Starts a message to the sockaddr at `nameAddress` (`nameLength` bytes).
   * `segmentSize` > 0 adds a UDP_SEGMENT cmsg (GSO); 0 sends one datagram.
   * Returns the message index.
   */
  begin(nameAddress: number, nameLength: number, segmentSize: number): number {
    const i = this.#count++;
    const base = i * SIZEOF_MMSGHDR;
    const v = this.#vec;
    v.setPointer(base + MMSG.name, nameAddress);
    v.view.setUint32(base + MMSG.namelen, nameLength, true);
    v.setPointer(base + MMSG.iov, this.#iov.address + this.#iovUsed * SIZEOF_IOVEC);
    v.setSize(base + MMSG.iovlen, 0);
    if (segmentSize > 0) {
      v.setPointer(base + MMSG.control, this.#ctl.address + i * CMSG_SPACE_INT);
      v.setSize(base + MMSG.controllen, CMSG_SPACE_INT);
      this.#ctl.view.setUint16(i * CMSG_SPACE_INT + 16, segmentSize, true);
    } else {
      v.setPointer(base + MMSG.control, 0);
      v.setSize(base + MMSG.controllen, 0);
    }
    v.view.setInt32(base + MMSG.flags, 0, true);
    return i;
  }

  /** Appends one buffer (address, length) to the message begun last. */
  addIov(address: number, length: number): void {
    const o = this.#iovUsed++ * SIZEOF_IOVEC;
    this.#iov.setPointer(o, address);
    this.#iov.setSize(o + 8, length);
    const base = (this.#count - 1) * SIZEOF_MMSGHDR + MMSG.iovlen;
    this.#vec.u32[base >>> 2]!++;
  }

  /**
   * sendmmsg(MSG_DONTWAIT) of messages [start, count). Returns the number
   * sent (≥ 1), or the negated errno of message `start` when the kernel
   * took none of them.
   */
  send(fd: number, start: number): number {
    const c = libc();
    for (;;) {
      const r = c.sendmmsg(fd, this.#vec.address + start * SIZEOF_MMSGHDR, this.#count - start, MSG_DONTWAIT);
      if (r > 0) return r;
      const e = r === 0 ? 0 : c.errno();
      if (e === EINTR) continue;
      return -(e || 1);
    }
  }
}
