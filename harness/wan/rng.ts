/**
 * A small seeded PRNG for reproducible test and bench impairments:
 * xoshiro128** (Blackman and Vigna, 2018) with its 128-bit state expanded
 * from a 32-bit seed by splitmix32. Pure: no globals, no clock; the same
 * seed always gives the same sequence. Not for cryptography.
 *
 * Why xoshiro128**: all-32-bit arithmetic (Math.imul, no BigInt), so a draw
 * costs a few nanoseconds, and the link emulator makes several per datagram.
 */

export type RngState = [number, number, number, number];

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/** splitmix32: spreads a (possibly small or sequential) seed over 128 state bits. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** From a 32-bit seed (any number; taken modulo 2^32). */
  static fromSeed(seed: number): Rng {
    const next = splitmix32(seed);
    return new Rng([next(), next(), next(), next()]);
  }

  /** From a raw state (for reference vectors); the all-zero state is refused, it never leaves zero. */
  constructor(state: RngState) {
    this.#s0 = state[0] | 0;
    this.#s1 = state[1] | 0;
    this.#s2 = state[2] | 0;
    this.#s3 = state[3] | 0;
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) throw new RangeError('Rng: the all-zero state is not allowed');
  }

  /** Next unsigned 32-bit output. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const t = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution (plenty for probabilities down to ~1e-9). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n), n ≤ 2^32 (tiny modulo bias from the float multiply is irrelevant here). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  state(): RngState {
    return [this.#s0 >>> 0, this.#s1 >>> 0, this.#s2 >>> 0, this.#s3 >>> 0];
  }
}
