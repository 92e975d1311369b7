/**
 * The framing check a relay runs on every MPEG-TS datagram: a whole, non-zero
 * number of 188-byte packets, each starting with the sync byte. Only framing,
 * not header contents; allocation-free (relay hot path).
 */

import { TS_PACKET_SIZE, TS_SYNC_BYTE } from './packet.js';

/** Why a UDP payload is not a whole number of TS packets. */
export type TsDatagramReason = 'empty' | 'length' | 'sync';
export type TsDatagramResult = { readonly ok: true; readonly packets: number } | { readonly ok: false; readonly reason: TsDatagramReason };

// Results are shared frozen objects so the per-datagram check never allocates
// (a UDP payload holds at most 348 packets; larger inputs are rare enough to allocate).
const MAX_CACHED_PACKETS = Math.floor(65_535 / TS_PACKET_SIZE);
const OK_RESULTS: TsDatagramResult[] = [];
for (let n = 0; n <= MAX_CACHED_PACKETS; n++) OK_RESULTS.push(Object.freeze({ ok: true, packets: n }));
const EMPTY: TsDatagramResult = Object.freeze({ ok: false, reason: 'empty' });
const BAD_LENGTH: TsDatagramResult = Object.freeze({ ok: false, reason: 'length' });
const BAD_SYNC: TsDatagramResult = Object.freeze({ ok: false, reason: 'sync' });

/**
 * Whether a UDP payload is a whole, non-zero number of 188-byte TS packets,
 * each starting with 0x47. Returns `{ ok: true, packets }` or
 * `{ ok: false, reason }`; the result objects are shared and frozen, so the
 * check allocates nothing. Only framing is checked, not header contents.
 */
export function checkTsDatagram(buf: Uint8Array): TsDatagramResult {
  const len = buf.length;
  if (len === 0) return EMPTY;
  if (len % TS_PACKET_SIZE !== 0) return BAD_LENGTH;
  for (let i = 0; i < len; i += TS_PACKET_SIZE) if (buf[i] !== TS_SYNC_BYTE) return BAD_SYNC;
  const n = len / TS_PACKET_SIZE;
  return n <= MAX_CACHED_PACKETS ? OK_RESULTS[n]! : { ok: true, packets: n };
}

/**
 * The same check as `checkTsDatagram` over `length` bytes at `offset` of a
 * larger buffer (a receive slot), without creating a view per datagram.
 */
export function isTsDatagramAt(bytes: Uint8Array, offset: number, length: number): boolean {
  if (length === 0 || length % TS_PACKET_SIZE !== 0) return false;
  for (let i = offset; i < offset + length; i += TS_PACKET_SIZE) if (bytes[i] !== TS_SYNC_BYTE) return false;
  return true;
}
