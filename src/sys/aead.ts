/**
 * ChaCha20-Poly1305 through two reused OpenSSL EVP contexts per thread (one
 * sealing, one opening): the same algorithm, nonce and tag as node:crypto,
 * so either side may use either implementation, at a quarter of the cost
 * per datagram (ffi.ts says why). The key is passed with every call (a key
 * set-up costs the same as an IV set-up for ChaCha20), so no context
 * belongs to a session and none needs freeing.
 *
 * Inputs are copied into one native region and the result is copied out:
 * the EVP calls take addresses, and a region's address is fixed.
 */
import { loadLibCrypto, type LibCrypto } from './ffi.js';
import { NativeRegion } from './memory.js';

const TAG = 16;
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
/** The largest datagram (field + segment + tag) handled here; larger ones go to node:crypto. */
const EVP_AEAD_MAX_DATAGRAM = 65_600;

// Region layout: nonce, output length, key, the input, the output.
const IV = 0;
const OUTL = 16;
const KEY = 32;
const IN = 64;
const OUT = IN + EVP_AEAD_MAX_DATAGRAM + 64;

export interface DatagramAead {
  /** `field` in clear (authenticated), `segment` encrypted, then the tag; undefined if too large for the region. */
  seal(key: Uint8Array, nonce: Uint8Array, field: Uint8Array, segment: Uint8Array): Buffer | undefined;
  /**
   * The plaintext after `fieldLength`, or null when the tag does not
   * authenticate; undefined if the datagram is too large for the region.
   */
  open(key: Uint8Array, nonce: Uint8Array, datagram: Uint8Array, fieldLength: number): Buffer | null | undefined;
}

class EvpChaCha20Poly1305 implements DatagramAead {
  readonly #c: LibCrypto;
  readonly #r = new NativeRegion(OUT + EVP_AEAD_MAX_DATAGRAM + 64);
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

  seal(key: Uint8Array, nonce: Uint8Array, field: Uint8Array, segment: Uint8Array): Buffer | undefined {
    const f = field.length;
    const s = segment.length;
    if (f + s + TAG > EVP_AEAD_MAX_DATAGRAM) return undefined;
    const c = this.#c;
    const a = this.#r.address;
    const b = this.#r.bytes;
    this.#load(key, nonce);
    b.set(field, IN);
    b.set(segment, IN + f);
    const ok =
      c.encryptInit(this.#enc, 0, 0, a + KEY, a + IV) === 1 &&
      (f === 0 || c.encryptUpdate(this.#enc, 0, a + OUTL, a + IN, f) === 1) &&
      (s === 0 || c.encryptUpdate(this.#enc, a + OUT, a + OUTL, a + IN + f, s) === 1) &&
      c.encryptFinal(this.#enc, a + OUT + s, a + OUTL) === 1 &&
      c.ctrl(this.#enc, EVP_CTRL_AEAD_GET_TAG, TAG, a + OUT + s) === 1;
    if (!ok) throw new Error('EVP ChaCha20-Poly1305 sealing failed');
    const out = Buffer.allocUnsafe(f + s + TAG);
    out.set(field, 0);
    out.set(b.subarray(OUT, OUT + s + TAG), f);
    return out;
  }

  open(key: Uint8Array, nonce: Uint8Array, datagram: Uint8Array, fieldLength: number): Buffer | null | undefined {
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
    return Buffer.from(this.#r.bytes.subarray(OUT, OUT + body));
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
