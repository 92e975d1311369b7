/**
 * The gateways' handshake codec (docs/WIRE.md 3.5): two datagrams that
 * agree on a session (both connection ids, both session nonces, hence the
 * keys of tpo/protocol/datagram-crypto.ts) between two gateways that share
 * a pre-shared key.
 *
 *   initiate (kind 2)  initiator -> responder, padded to 1200 bytes
 *   respond  (kind 3)  responder -> initiator, 60 bytes
 *
 * Both are authenticated with HMAC-SHA-256 under the pair's key; the
 * response's MAC covers the initiation's MAC too, so it answers exactly
 * that initiation. The responder answers only what authenticates, is not
 * stale and is newer than what it answered before
 * (tpo/protocol/initiation-guard.ts), and its answer is 20 times smaller
 * than the initiation: the gateway cannot be used to amplify traffic
 * towards a forged source. Pure codec.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { WireError } from './errors.js';
import { Reader, Writer } from './cursor.js';
import { DatagramKind } from './kind.js';

export const HANDSHAKE_VERSION = 1;
/** Bytes of a session nonce, each side's fresh randomness the session keys are derived from (datagram-crypto.ts). */
export const SESSION_NONCE_LENGTH = 16;
const MAC_LENGTH = 32;
/** An initiation is padded to this size (anti-amplification: the answer is 60 bytes). */
export const INITIATE_LENGTH = 1200;
export const RESPOND_LENGTH = 28 + MAC_LENGTH;
/** Initiations whose timestamp is further than this from the responder's clock are ignored. */
export const MAX_CLOCK_SKEW_MS = 30_000;

export interface Initiation {
  /** The initiator's connection id (the responder puts it in what it sends). */
  readonly initiatorId: number;
  /** Which pre-shared key (peer entry) the initiator used. */
  readonly keyId: number;
  /** ms since the epoch when sent. */
  readonly timestamp: number;
  readonly nonce: Uint8Array;
}

export interface Response {
  readonly initiatorId: number;
  readonly responderId: number;
  readonly nonce: Uint8Array;
}

function mac(psk: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', psk);
  for (const p of parts) h.update(p);
  return h.digest();
}

function prefix(w: Writer, kind: number): void {
  w.u8(HANDSHAKE_VERSION).u8(kind).u8(0).u8(0);
}

export function encodeInitiate(psk: Uint8Array, i: Initiation): Uint8Array {
  if (i.nonce.length !== SESSION_NONCE_LENGTH) throw new WireError('length', `initiate: the nonce has ${SESSION_NONCE_LENGTH} bytes`, 'nonce');
  const out = new Uint8Array(INITIATE_LENGTH);
  const w = new Writer(out);
  prefix(w, DatagramKind.initiate);
  w.u32(i.initiatorId).u32(i.keyId).u64(i.timestamp).bytesOf(i.nonce);
  // Zero padding up to the MAC.
  out.set(mac(psk, out.subarray(0, INITIATE_LENGTH - MAC_LENGTH)), INITIATE_LENGTH - MAC_LENGTH);
  return out;
}

function header(r: Reader, kind: number): void {
  const version = r.u8('version');
  if (version !== HANDSHAKE_VERSION) throw new WireError('version', `handshake: version ${version}`, 'version');
  const k = r.u8('kind');
  if (k !== kind) throw new WireError('type', `handshake: kind ${k}, expected ${kind}`, 'kind');
  if (r.u8('flags') !== 0 || r.u8('reserved') !== 0) throw new WireError('value', 'handshake: reserved bits set', 'flags');
}

/** The key id of an initiation, read before authenticating it (to pick the key). */
export function peekKeyId(datagram: Uint8Array): number {
  const r = new Reader(datagram, 'initiate');
  header(r, DatagramKind.initiate);
  r.u32('initiatorId');
  return r.u32('keyId');
}

/** An initiation, authenticated with `psk`; throws a WireError ('checksum' when the MAC fails). */
export function decodeInitiate(psk: Uint8Array, datagram: Uint8Array): Initiation {
  if (datagram.length !== INITIATE_LENGTH)
    throw new WireError(
      datagram.length < INITIATE_LENGTH ? 'truncated' : 'length',
      `initiate: ${datagram.length} bytes, expected ${INITIATE_LENGTH}`,
      'length',
    );
  const body = datagram.subarray(0, INITIATE_LENGTH - MAC_LENGTH);
  if (!timingSafeEqual(mac(psk, body), datagram.subarray(INITIATE_LENGTH - MAC_LENGTH)))
    throw new WireError('checksum', 'initiate: MAC does not verify', 'mac');
  const r = new Reader(datagram, 'initiate');
  header(r, DatagramKind.initiate);
  const initiatorId = r.u32('initiatorId');
  const keyId = r.u32('keyId');
  const timestamp = r.u64('timestamp');
  const nonce = Uint8Array.from(r.bytesOf(SESSION_NONCE_LENGTH, 'nonce'));
  const padding = r.bytesOf(INITIATE_LENGTH - MAC_LENGTH - r.offset, 'padding');
  if (padding.some((b) => b !== 0)) throw new WireError('value', 'initiate: padding is not zero', 'padding');
  return { initiatorId, keyId, timestamp, nonce };
}

/** The answer to `initiation` (the datagram as received: its MAC is bound in). */
export function encodeRespond(psk: Uint8Array, initiation: Uint8Array, r: Response): Uint8Array {
  if (r.nonce.length !== SESSION_NONCE_LENGTH) throw new WireError('length', `respond: the nonce has ${SESSION_NONCE_LENGTH} bytes`, 'nonce');
  const out = new Uint8Array(RESPOND_LENGTH);
  const w = new Writer(out);
  prefix(w, DatagramKind.respond);
  w.u32(r.initiatorId).u32(r.responderId).bytesOf(r.nonce);
  out.set(mac(psk, out.subarray(0, 28), initiation.subarray(INITIATE_LENGTH - MAC_LENGTH)), 28);
  return out;
}

/** A response to the initiation `sent` (the initiator's own datagram), authenticated; throws a WireError otherwise. */
export function decodeRespond(psk: Uint8Array, sent: Uint8Array, datagram: Uint8Array): Response {
  if (datagram.length !== RESPOND_LENGTH)
    throw new WireError(datagram.length < RESPOND_LENGTH ? 'truncated' : 'length', `respond: ${datagram.length} bytes, expected ${RESPOND_LENGTH}`, 'length');
  const expected = mac(psk, datagram.subarray(0, 28), sent.subarray(INITIATE_LENGTH - MAC_LENGTH));
  if (!timingSafeEqual(expected, datagram.subarray(28)))
    throw new WireError('checksum', 'respond: MAC does not verify (another key, or an answer to another initiation)', 'mac');
  const r = new Reader(datagram, 'respond');
  header(r, DatagramKind.respond);
  return { initiatorId: r.u32('initiatorId'), responderId: r.u32('responderId'), nonce: Uint8Array.from(r.bytesOf(SESSION_NONCE_LENGTH, 'nonce')) };
}
