/**
 * Whether a file looks like MPEG-TS: sync bytes (0x47) at 188-byte
 * strides from its start, for the first packets. `sluice write` warns
 * when such a file is sent unpaced.
 */
import { TS_PACKET_SIZE, TS_SYNC_BYTE } from '../wire/mpegts/packet.js';

/** Packets checked (fewer in a shorter file; at least 2 must be there). */
const SNIFF_PACKETS = 16;

export function looksLikeTs(data: Uint8Array): boolean {
  const packets = Math.min(SNIFF_PACKETS, Math.floor(data.byteLength / TS_PACKET_SIZE));
  if (packets < 2) return false;
  for (let i = 0; i < packets; i++) if (data[i * TS_PACKET_SIZE] !== TS_SYNC_BYTE) return false;
  return true;
}
