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
import { EAGAIN, EINTR } from './errno.js';
import { CMSG_LEN_U16, CMSG_SPACE_INT, MMSG, MSG_DONTWAIT, SIZEOF_IOVEC, SIZEOF_MMSGHDR, SOL_UDP, UDP_SEGMENT } from './constants.js';
import { NativeRegion } from './memory.js';

/**
 * How a vector reaches the kernel: sendmmsg of `vlen` messages at
 * `address`, with `flags` besides MSG_DONTWAIT (0 or MSG_ZEROCOPY).
 * Returns the number sent or the negated errno. Replaceable so tests can
 * inject partial sends and errors.
 */
export type SendmmsgFn = (fd: number, address: number, vlen: number, flags: number) => number;

const realSendmmsg: SendmmsgFn = (fd, address, vlen, flags) => {
  const c = libc();
  for (;;) {
    const r = c.sendmmsg(fd, address, vlen, MSG_DONTWAIT | flags);
    if (r >= 0) return r;
    const e = c.errno();
    if (e !== EINTR) return -e;
  }
};

/** What one queued message holds (for tests and diagnostics). */
export interface MessageInfo {
  readonly nameAddress: number;
  readonly iovecs: number;
  readonly bytes: number;
  /** UDP_SEGMENT size, 0 for a plain datagram. */
  readonly segmentSize: number;
}

export class SendVector {
  readonly maxMessages: number;
  readonly maxIovecs: number;
  readonly #vec: NativeRegion;
  readonly #iov: NativeRegion;
  readonly #ctl: NativeRegion;
  #count = 0;
  #iovUsed = 0;

  readonly #sendmmsg: SendmmsgFn;

  constructor(maxMessages: number, maxIovecs: number, sendmmsg: SendmmsgFn = realSendmmsg) {
    this.#sendmmsg = sendmmsg;
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

  /**
   * Writes `count` iovecs (buffers `first`.. of the given arrays) without
   * starting a message; returns the index of the first. Several messages
   * may then point at the same iovecs (`beginWith`): the kernel only reads
   * them, so a replicate writes a run's iovecs once for all destinations.
   */
  addIovecs(addresses: Float64Array, lengths: Int32Array, first: number, count: number): number {
    const start = this.#iovUsed;
    const iov = this.#iov;
    for (let k = 0; k < count; k++) {
      const o = (start + k) * SIZEOF_IOVEC;
      iov.setPointer(o, addresses[first + k]!);
      iov.setSize(o + 8, lengths[first + k]!);
    }
    this.#iovUsed += count;
    return start;
  }

  /** True when another message fits (its iovecs were written already). */
  hasMessageRoom(): boolean {
    return this.#count < this.maxMessages;
  }

  /** Starts a message whose iovecs are `iovCount` already written from `iovIndex`. */
  beginWith(nameAddress: number, nameLength: number, segmentSize: number, iovIndex: number, iovCount: number): number {
    const i = this.begin(nameAddress, nameLength, segmentSize);
    const base = i * SIZEOF_MMSGHDR;
    this.#vec.setPointer(base + MMSG.iov, this.#iov.address + iovIndex * SIZEOF_IOVEC);
    this.#vec.setSize(base + MMSG.iovlen, iovCount);
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
   * sendmmsg(MSG_DONTWAIT | `flags`) of messages [start, end) (default:
   * to the last queued). Returns the number sent (≥ 1), or the negated
   * errno of message `start` when the kernel took none of them (a return
   * of 0 is reported as EAGAIN). sendmmsg's flags cover the whole call, so
   * messages that need different flags (MSG_ZEROCOPY or not) go in
   * separate calls over sub-ranges.
   */
  send(fd: number, start: number, flags = 0, end = this.#count): number {
    const r = this.#sendmmsg(fd, this.#vec.address + start * SIZEOF_MMSGHDR, Math.min(end, this.#count) - start, flags);
    return r === 0 ? -EAGAIN : r;
  }

  /** Message `i` as queued. */
  messageInfo(i: number): MessageInfo {
    const base = i * SIZEOF_MMSGHDR;
    const v = this.#vec.view;
    const iovecs = v.getUint32(base + MMSG.iovlen, true);
    const first = (Number(v.getBigUint64(base + MMSG.iov, true)) - this.#iov.address) / SIZEOF_IOVEC;
    let bytes = 0;
    for (let k = 0; k < iovecs; k++) bytes += this.#iov.view.getUint32((first + k) * SIZEOF_IOVEC + 8, true);
    const hasCtl = v.getUint32(base + MMSG.controllen, true) > 0;
    return {
      nameAddress: Number(v.getBigUint64(base + MMSG.name, true)),
      iovecs,
      bytes,
      segmentSize: hasCtl ? this.#ctl.view.getUint16(i * CMSG_SPACE_INT + 16, true) : 0,
    };
  }
}
