/**
 * Batched receive: a pool of fixed-size slots plus one recvmmsg vector.
 * Each call fills up to `batch` free slots from one socket; the caller owns
 * the returned slots until it releases them (after the copies that point
 * into them have been sent), so replicated packets are never copied.
 *
 * Slots are 64 KiB: room for the largest UDP datagram and for a UDP GRO
 * super-buffer. Only the bytes the kernel writes are ever touched, so the
 * pool costs address space, not resident memory.
 */
import { libc } from './ffi.js';
import { EAGAIN, EINTR, syscallError } from './errno.js';
import { STALE_SOCKET_ERRNOS } from './error-queue.js';
import { CMSG_SPACE_INT, MMSG, MSG_DONTWAIT, MSG_TRUNC, SIZEOF_IOVEC, SIZEOF_MMSGHDR, SOCKADDR_SPACE, SOL_UDP, UDP_GRO } from './constants.js';
import { NativeRegion } from './memory.js';

export const SLOT_SIZE = 65536;

export class RecvRing {
  readonly slotCount: number;
  readonly batch: number;
  /** Payload bytes of every slot; slot i starts at i * SLOT_SIZE. */
  readonly data: NativeRegion;
  /** Per slot: its iovec, its sockaddr and its cmsg space. */
  readonly #meta: NativeRegion;
  /** The recvmmsg vector (batch entries). */
  readonly #vec: NativeRegion;
  readonly #free: Int32Array;
  #freeCount: number;
  /** Slot index of each vector entry of the last receive. */
  readonly #entrySlot: Int32Array;
  readonly #metaNameOff: number;
  readonly #metaCtlOff: number;

  constructor(slotCount: number, batch: number) {
    this.slotCount = slotCount;
    this.batch = batch;
    this.data = new NativeRegion(slotCount * SLOT_SIZE);
    this.#metaNameOff = slotCount * SIZEOF_IOVEC;
    this.#metaCtlOff = this.#metaNameOff + slotCount * SOCKADDR_SPACE;
    this.#meta = new NativeRegion(this.#metaCtlOff + slotCount * CMSG_SPACE_INT);
    this.#vec = new NativeRegion(batch * SIZEOF_MMSGHDR);
    this.#free = new Int32Array(slotCount);
    for (let i = 0; i < slotCount; i++) this.#free[i] = slotCount - 1 - i;
    this.#freeCount = slotCount;
    this.#entrySlot = new Int32Array(batch);
    for (let i = 0; i < slotCount; i++) {
      this.#meta.setPointer(i * SIZEOF_IOVEC, this.data.address + i * SLOT_SIZE);
      this.#meta.setSize(i * SIZEOF_IOVEC + 8, SLOT_SIZE);
    }
  }

  get freeSlots(): number {
    return this.#freeCount;
  }

  /** Address of slot `slot`'s payload. */
  slotAddress(slot: number): number {
    return this.data.address + slot * SLOT_SIZE;
  }

  /** Byte offset of slot `slot`'s source sockaddr inside `metaBytes`. */
  nameOffset(slot: number): number {
    return this.#metaNameOff + slot * SOCKADDR_SPACE;
  }

  get metaBytes(): Uint8Array {
    return this.#meta.bytes;
  }

  /**
   * recvmmsg(MSG_DONTWAIT) into up to `max` free slots. Returns the number
   * of datagrams (0 when nothing is waiting). Results are read with
   * `slotOf`, `lengthOf`, `truncated`, `groSegment`.
   */
  receive(fd: number, max: number, wantGro: boolean): number {
    const n = Math.min(max, this.batch, this.#freeCount);
    if (n === 0) return 0;
    const vec = this.#vec;
    const meta = this.#meta;
    for (let j = 0; j < n; j++) {
      const slot = this.#free[this.#freeCount - 1 - j]!;
      this.#entrySlot[j] = slot;
      const base = j * SIZEOF_MMSGHDR;
      vec.setPointer(base + MMSG.name, meta.address + this.#metaNameOff + slot * SOCKADDR_SPACE);
      vec.view.setUint32(base + MMSG.namelen, SOCKADDR_SPACE, true);
      vec.setPointer(base + MMSG.iov, meta.address + slot * SIZEOF_IOVEC);
      vec.setSize(base + MMSG.iovlen, 1);
      if (wantGro) {
        vec.setPointer(base + MMSG.control, meta.address + this.#metaCtlOff + slot * CMSG_SPACE_INT);
        vec.setSize(base + MMSG.controllen, CMSG_SPACE_INT);
      } else {
        vec.setPointer(base + MMSG.control, 0);
        vec.setSize(base + MMSG.controllen, 0);
      }
      vec.view.setInt32(base + MMSG.flags, 0, true);
    }
    const c = libc();
    for (let stale = 0; ;) {
      // MSG_TRUNC: msg_len reports the datagram's real length, so an
      // oversized one is recognised (and counted) rather than cut silently.
      const r = c.recvmmsg(fd, vec.address, n, MSG_DONTWAIT | MSG_TRUNC, 0);
      if (r >= 0) {
        this.#freeCount -= r;
        return r;
      }
      const e = c.errno();
      if (e === EAGAIN) return 0;
      if (e === EINTR) continue;
      // A socket with IP_RECVERR reports an ICMP error about something it
      // sent once, as the next call's error (error-queue.ts): the datagrams
      // are still there. The error itself is read from the error queue.
      if (STALE_SOCKET_ERRNOS.has(e) && stale++ < 4) continue;
      throw syscallError('recvmmsg', e);
    }
  }

  slotOf(entry: number): number {
    return this.#entrySlot[entry]!;
  }

  /** Datagram length as sent (may exceed the slot when truncated). */
  lengthOf(entry: number): number {
    return this.#vec.view.getUint32(entry * SIZEOF_MMSGHDR + MMSG.len, true);
  }

  truncated(entry: number): boolean {
    return (this.#vec.view.getInt32(entry * SIZEOF_MMSGHDR + MMSG.flags, true) & MSG_TRUNC) !== 0;
  }

  /**
   * The GRO segment size when the kernel coalesced several datagrams into
   * this entry (cmsg SOL_UDP/UDP_GRO), else 0.
   */
  groSegment(entry: number): number {
    const base = entry * SIZEOF_MMSGHDR;
    const ctlLen = this.#vec.view.getUint32(base + MMSG.controllen, true);
    if (ctlLen < CMSG_SPACE_INT) return 0;
    const off = this.#metaCtlOff + this.#entrySlot[entry]! * CMSG_SPACE_INT;
    const v = this.#meta.view;
    if (v.getInt32(off + 8, true) !== SOL_UDP || v.getInt32(off + 12, true) !== UDP_GRO) return 0;
    return v.getInt32(off + 16, true);
  }

  /** Returns a slot to the pool. */
  release(slot: number): void {
    this.#free[this.#freeCount++] = slot;
  }
}
