/**
 * ChaCha20-Poly1305 through two reused OpenSSL EVP contexts per thread (one
 * sealing, one opening): the same algorithm, nonce and tag as node:crypto,
 * so either side may use either implementation, at a quarter of the cost
 * per datagram (ffi.ts says why). The key is passed with every call (a key
 * set-up costs the same as an IV set-up for ChaCha20), so no context
 * belongs to a session and none needs freeing.
 *
 * Inputs are copied into one native region and the result is copied out
 * (or, for a caller that copies it itself at once, lent as a view of the
 * region: one allocation less per datagram): the EVP calls take addresses,
 * and a region's address is fixed.
 */
import { loadLibCrypto, type LibCrypto } from './ffi.js';
import { NativeRegion } from './memory.js';

const TAG = 16;
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
/** The largest datagram (field + segment + tag) handled here; larger ones go to node:crypto. */
const EVP_AEAD_MAX_DATAGRAM = 65_600;

// Region layout: nonce, output length, key, the input (the segment to seal, the datagram to open), the output.
const IV = 0;
const OUTL = 16;
const KEY = 32;
const IN = 64;
const OUT = IN + EVP_AEAD_MAX_DATAGRAM + 64;

export interface DatagramAead {
  /**
   * `field` in clear (authenticated), `segment` encrypted, then the tag;
   * undefined if too large for the region. `transient`: the result is a
   * view into this thread's scratch region, valid only until the next
   * seal (for a caller that copies it at once, e.g. into a send stage),
   * instead of a new Buffer.
   */
  seal(key: Uint8Array, nonce: Uint8Array, field: Uint8Array, segment: Uint8Array, transient?: boolean): Buffer | Uint8Array | undefined;
  /**
   * The plaintext after `fieldLength`, or null when the tag does not
   * authenticate; undefined if the datagram is too large for the region.
   * `transient`: a view into the scratch region, valid only until the next
   * open (for a caller that copies it at once).
   */
  open(key: Uint8Array, nonce: Uint8Array, datagram: Uint8Array, fieldLength: number, transient?: boolean): Buffer | Uint8Array | null | undefined;
}

class EvpChaCha20Poly1305 implements DatagramAead {
  readonly #c: LibCrypto;
  readonly #r = new NativeRegion(OUT + EVP_AEAD_MAX_DATAGRAM + 64);
  /** The region as a Buffer: results are copied out with Buffer#copy (no intermediate view per datagram). */
  readonly #rb = Buffer.from(this.#r.buffer);
  readonly #enc: unknown;
  readonly #dec: unknown;

  constructor(c: LibCrypto) {
    this.#c = c;
    const cipher = c.chacha20Poly1305();
    this.#enc = c.cipherCtxNew();
    this.#dec = c.cipherCtxNew();
    if (!this.#enc || !this.#dec) throw new Error('EVP_CIPHER_CTX_new failed');
    if (c.encryptInitCipher(this.#enc, cipher, null, null, null) !== 1 || c.decryptInitCipher(this.#dec, cipher, null, null, null) !== 1)
      throw new Error('EVP_EncryptInit_ex/EVP_DecryptInit_ex failed to set ChaCha20-Poly1305');
  }

  #load(key: Uint8Array, nonce: Uint8Array): void {
    const b = this.#r.bytes;
    b.set(key, KEY);
    b.set(nonce, IV);
  }

  seal(key: Uint8Array, nonce: Uint8Array, field: Uint8Array, segment: Uint8Array, transient = false): Buffer | Uint8Array | undefined {
    const f = field.length;
    const s = segment.length;
    const n = f + s + TAG;
    if (n > EVP_AEAD_MAX_DATAGRAM) return undefined;
    const c = this.#c;
    const a = this.#r.address;
    const b = this.#r.bytes;
    this.#load(key, nonce);
    // The field goes where the datagram is built and is authenticated from there; the segment is
    // encrypted from the input area into the bytes after it; the tag follows.
    b.set(field, OUT);
    b.set(segment, IN);
    const ok =
      c.encryptInit(this.#enc, 0, 0, a + KEY, a + IV) === 1 &&
      (f === 0 || c.encryptUpdate(this.#enc, 0, a + OUTL, a + OUT, f) === 1) &&
      (s === 0 || c.encryptUpdate(this.#enc, a + OUT + f, a + OUTL, a + IN, s) === 1) &&
      c.encryptFinal(this.#enc, a + OUT + f + s, a + OUTL) === 1 &&
      c.ctrl(this.#enc, EVP_CTRL_AEAD_GET_TAG, TAG, a + OUT + f + s) === 1;
    if (!ok) throw new Error('EVP ChaCha20-Poly1305 sealing failed');
    if (transient) return b.subarray(OUT, OUT + n);
    const out = Buffer.allocUnsafe(n);
    this.#rb.copy(out, 0, OUT, OUT + n);
    return out;
  }

  open(key: Uint8Array, nonce: Uint8Array, datagram: Uint8Array, fieldLength: number, transient = false): Buffer | Uint8Array | null | undefined {
    const n = datagram.length;
    if (n > EVP_AEAD_MAX_DATAGRAM) return undefined;
    const body = n - fieldLength - TAG;
    if (body < 0) return null;
    const c = this.#c;
    const a = this.#r.address;
    this.#load(key, nonce);
    this.#r.bytes.set(datagram, IN);
    const set =
      c.decryptInit(this.#dec, 0, 0, a + KEY, a + IV) === 1 &&
      (fieldLength === 0 || c.decryptUpdate(this.#dec, 0, a + OUTL, a + IN, fieldLength) === 1) &&
      (body === 0 || c.decryptUpdate(this.#dec, a + OUT, a + OUTL, a + IN + fieldLength, body) === 1) &&
      c.ctrl(this.#dec, EVP_CTRL_AEAD_SET_TAG, TAG, a + IN + fieldLength + body) === 1;
    if (!set) throw new Error('EVP ChaCha20-Poly1305 opening failed');
    if (c.decryptFinal(this.#dec, a + OUT + body, a + OUTL) <= 0) return null;
    if (transient) return this.#r.bytes.subarray(OUT, OUT + body);
    const out = Buffer.allocUnsafe(body);
    this.#rb.copy(out, 0, OUT, OUT + body);
    return out;
  }
}

let aead: DatagramAead | null | undefined;

/**
 * This thread's EVP-backed AEAD, or null where libcrypto's symbols cannot
 * be bound (the caller then uses node:crypto, which interoperates).
 */
export function evpChaCha20Poly1305(): DatagramAead | null {
  if (aead !== undefined) return aead;
  const r = loadLibCrypto();
  try {
    aead = r.ok ? new EvpChaCha20Poly1305(r.crypto) : null;
  } catch {
    aead = null;
  }
  return aead;
}
