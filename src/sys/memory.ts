/**
 * Native-memory regions for structures the kernel reads through pointers
 * (msghdr, iovec, sockaddr, cmsg). A region is one off-heap ArrayBuffer
 * whose address is taken once: V8 never moves such a backing store, so
 * pointers written into other regions stay valid for the region's life.
 * The caller keeps the region referenced for as long as the kernel may use it.
 */
import { libc } from './ffi.js';

/** Smaller ArrayBuffers may live on V8's heap and move; never go below this. */
const MIN_REGION = 256;

export class NativeRegion {
  readonly buffer: ArrayBuffer;
  /** Address of byte 0 (a safe integer: user-space addresses are < 2^47). */
  readonly address: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** For writing pointers as two 32-bit halves without BigInt allocation. */
  readonly u32: Uint32Array;

  constructor(size: number) {
    const n = Math.max(MIN_REGION, (size + 7) & ~7);
    this.buffer = new ArrayBuffer(n);
    this.bytes = new Uint8Array(this.buffer);
    this.view = new DataView(this.buffer);
    this.u32 = new Uint32Array(this.buffer);
    this.address = libc().memcpyAddr(this.bytes, this.bytes, 0);
  }

  get size(): number {
    return this.buffer.byteLength;
  }

  /** Writes a 64-bit pointer at a byte offset (8-aligned). */
  setPointer(offset: number, address: number): void {
    const i = offset >>> 2;
    this.u32[i] = address % 0x1_0000_0000;
    this.u32[i + 1] = Math.floor(address / 0x1_0000_0000);
  }

  /** Writes a 64-bit length (size_t) below 2^32 at a byte offset (8-aligned). */
  setSize(offset: number, value: number): void {
    const i = offset >>> 2;
    this.u32[i] = value;
    this.u32[i + 1] = 0;
  }
}

/**
 * Address of a view's first byte, for passing the caller's own buffers to a
 * worker that sends from them (one process). Only for off-heap backing
 * stores (an ArrayBuffer that V8 does not move, as for every buffer larger
 * than a few hundred bytes); 0 for an empty view.
 */
export function addressOf(view: ArrayBufferView): number {
  return view.byteLength ? libc().memcpyAddr(view, view, 0) : 0;
}
