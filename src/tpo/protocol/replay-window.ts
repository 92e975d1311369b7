/**
 * Replay and duplicate filter for the data mover's physical numbers
 * (RFC 6479's sliding window): a number is accepted once, if it is above
 * the window or inside it and not seen yet; anything below the window is
 * refused. The window must cover the packets that can be in flight at
 * once (9,259 at 1 Gbit/s × 100 ms in 1350-byte packets): 16,384 here.
 * Check with `check()` before decrypting and `accept()` only after the
 * datagram authenticated, so a forged number cannot move the window.
 */
const BLOCK_BITS = 32;

export class ReplayWindow {
  readonly size: number;
  readonly #blocks: Uint32Array;
  /** Highest number accepted; -1 before the first. */
  #top = -1;

  constructor(size = 16_384) {
    if (!Number.isInteger(size) || size < BLOCK_BITS * 2 || size % BLOCK_BITS !== 0)
      throw new RangeError(`window size must be a multiple of ${BLOCK_BITS}, at least ${BLOCK_BITS * 2}`);
    this.size = size;
    this.#blocks = new Uint32Array(size / BLOCK_BITS);
  }

  get highest(): number {
    return this.#top;
  }

  /** Whether `n` would be accepted (new and not too old). */
  check(n: number): boolean {
    if (!Number.isSafeInteger(n) || n < 0) return false;
    if (n > this.#top) return true;
    // The window keeps one block of slack (RFC 6479): only size - 32 numbers behind the top are judged.
    if (this.#top - n >= this.size - BLOCK_BITS) return false;
    return (this.#blocks[this.#blockOf(n)]! & bit(n)) === 0;
  }

  /** Records `n` (after check() and authentication). Returns false if it was not acceptable. */
  accept(n: number): boolean {
    if (!this.check(n)) return false;
    if (n > this.#top) {
      // Clear the blocks the window slides over (all of them after a long jump).
      const from = this.#top < 0 ? 0 : Math.floor(this.#top / BLOCK_BITS) + 1;
      const to = Math.floor(n / BLOCK_BITS);
      const count = Math.min(to - from + 1, this.#blocks.length);
      for (let b = 0; b < count; b++) this.#blocks[(to - b) % this.#blocks.length] = 0;
      this.#top = n;
    }
    this.#blocks[this.#blockOf(n)]! |= bit(n);
    return true;
  }

  #blockOf(n: number): number {
    return Math.floor(n / BLOCK_BITS) % this.#blocks.length;
  }
}

function bit(n: number): number {
  return (1 << (n % BLOCK_BITS)) >>> 0;
}
