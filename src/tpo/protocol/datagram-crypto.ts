/**
 * Authenticated encryption of every data mover datagram (docs/WIRE.md,
 * 3.4): ChaCha20-Poly1305 (node:crypto; fast without AES hardware, and
 * nonce misuse is ruled out by construction here) under a key per session
 * and direction. The nonce is the datagram's physical number, never reused
 * within a key; the data mover field travels in clear as associated data,
 * so its numbers and acknowledgements are authenticated, and the segment
 * after it is encrypted, followed by the 16-byte tag.
 *
 * The work is done by sys/aead.ts (OpenSSL's EVP through one reused
 * context per thread, a quarter of node:crypto's cost per datagram) where
 * it can be bound, else by node:crypto; the two interoperate. The
 * environment variable SLUICE_TPO_AEAD=node forces node:crypto (for
 * comparing the two in the bench).
 *
 * Keys: HKDF-SHA-256 from the pair's pre-shared key, salted with both
 * sides' session nonces (fresh random bytes each side sends in the
 * handshake), one key per direction: a new session never reuses a key, so
 * physical numbers may restart at 0.
 */
import { createCipheriv, createDecipheriv, hkdfSync, type CipherChaCha20Poly1305, type DecipherChaCha20Poly1305 } from 'node:crypto';
import { SESSION_NONCE_LENGTH } from '../../wire/tpo/handshake.js';
import { evpChaCha20Poly1305, type DatagramAead } from '../../sys/aead.js';

export const TAG_LENGTH = 16;
export const KEY_LENGTH = 32;
const ALGORITHM = 'chacha20-poly1305';

/** Keys of one session: what this side sends with, and what it receives with. */
export interface SessionKeys {
  readonly send: Buffer;
  readonly receive: Buffer;
}

/**
 * Both directions' keys from the pre-shared key and the two session nonces.
 * `initiator` says which side this is: the initiator's send key is the
 * responder's receive key.
 */
export function deriveSessionKeys(psk: Uint8Array, initiatorNonce: Uint8Array, responderNonce: Uint8Array, initiator: boolean): SessionKeys {
  if (psk.length < 16) throw new RangeError('the pre-shared key must have at least 16 bytes');
  if (initiatorNonce.length !== SESSION_NONCE_LENGTH || responderNonce.length !== SESSION_NONCE_LENGTH)
    throw new RangeError(`session nonces have ${SESSION_NONCE_LENGTH} bytes`);
  const salt = Buffer.concat([initiatorNonce, responderNonce]);
  const key = (info: string) => Buffer.from(hkdfSync('sha256', psk, salt, `sluice tpo v1 ${info}`, KEY_LENGTH));
  const i2r = key('initiator to responder');
  const r2i = key('responder to initiator');
  return initiator ? { send: i2r, receive: r2i } : { send: r2i, receive: i2r };
}

function nonceOf(physical: number, into: Buffer = Buffer.alloc(12)): Buffer {
  into.writeUInt32BE(0, 0);
  into.writeUInt32BE(Math.floor(physical / 0x1_0000_0000), 4);
  into.writeUInt32BE(physical >>> 0, 8);
  return into;
}

const nonceScratch = Buffer.alloc(12);
let fast: DatagramAead | null | undefined;
function evp(): DatagramAead | null {
  if (fast === undefined) fast = process.env.SLUICE_TPO_AEAD === 'node' ? null : evpChaCha20Poly1305();
  return fast;
}

/** Which implementation seals and opens in this thread (the interoperability test asks). */
export function datagramAeadImplementation(): 'evp' | 'node' {
  return evp() ? 'evp' : 'node';
}

/**
 * The datagram: `field` (in clear, authenticated), the encrypted
 * `segment`, the tag. `physical` must be the field's physical number.
 * `transient`: the caller copies the datagram before the next seal in this
 * thread (a send stage does), so it may be a view of the AEAD's scratch
 * region rather than a new buffer.
 */
export function sealDatagram(key: Buffer, physical: number, field: Uint8Array, segment: Uint8Array, transient = false): Uint8Array {
  return evp()?.seal(key, nonceOf(physical, nonceScratch), field, segment, transient) ?? sealDatagramNode(key, physical, field, segment);
}

/** sealDatagram through node:crypto (the fallback; exported for the interoperability test). */
export function sealDatagramNode(key: Buffer, physical: number, field: Uint8Array, segment: Uint8Array): Buffer {
  const cipher = createCipheriv(ALGORITHM, key, nonceOf(physical), { authTagLength: TAG_LENGTH }) as CipherChaCha20Poly1305;
  cipher.setAAD(field, { plaintextLength: segment.length });
  const body = cipher.update(segment);
  cipher.final();
  return Buffer.concat([field, body, cipher.getAuthTag()]);
}

/**
 * The segment of a datagram whose field ends at `fieldLength`, or
 * undefined when it does not authenticate (forged, corrupted, wrong key):
 * the caller drops it and counts it, and never answers it. `transient`:
 * the caller copies what it keeps before the next open in this thread, so
 * the segment may be a view of the AEAD's scratch region.
 */
export function openDatagram(key: Buffer, physical: number, datagram: Uint8Array, fieldLength: number, transient = false): Uint8Array | undefined {
  if (datagram.length < fieldLength + TAG_LENGTH) return undefined;
  const opened = evp()?.open(key, nonceOf(physical, nonceScratch), datagram, fieldLength, transient);
  if (opened !== undefined) return opened ?? undefined;
  return openDatagramNode(key, physical, datagram, fieldLength);
}

/** openDatagram through node:crypto (the fallback; exported for the interoperability test). */
export function openDatagramNode(key: Buffer, physical: number, datagram: Uint8Array, fieldLength: number): Buffer | undefined {
  if (datagram.length < fieldLength + TAG_LENGTH) return undefined;
  const body = datagram.subarray(fieldLength, datagram.length - TAG_LENGTH);
  const decipher = createDecipheriv(ALGORITHM, key, nonceOf(physical), { authTagLength: TAG_LENGTH }) as DecipherChaCha20Poly1305;
  decipher.setAAD(datagram.subarray(0, fieldLength), { plaintextLength: body.length });
  decipher.setAuthTag(datagram.subarray(datagram.length - TAG_LENGTH));
  const plain = decipher.update(body);
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plain;
}
