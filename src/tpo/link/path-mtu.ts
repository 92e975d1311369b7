/**
 * The segment size of a session: from the peer's configured path MTU, or,
 * when none is configured, from where the peer is.
 */
import { segmentSizeForMtu } from '../protocol/data-mover.js';
import { isLoopbackAddress } from '../../wire/endpoint.js';

/**
 * Both gateways on one host: loopback's own MTU is 65536, but 9000-byte
 * (jumbo) datagrams already carry a transfer with about 60 % of the CPU
 * per byte that 1500-byte ones cost (AEAD calls, system calls, acks: per
 * datagram; measured 33 → 20 gateway CPU s/GB), and a loss or a
 * retransmission stays small.
 */
const LOOPBACK_MTU = 9000;

/** Segment bytes for a session with `peer`; undefined: the data mover's default (a 1500-byte MTU). */
export function segmentSizeFor(peer: { address: string } | undefined, mtu: number | undefined): number | undefined {
  const m = mtu ?? (peer && isLoopbackAddress(peer.address) ? LOOPBACK_MTU : undefined);
  return m === undefined ? undefined : segmentSizeForMtu(m, peer?.address.includes(':') ? 6 : 4);
}
