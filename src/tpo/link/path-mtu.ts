/**
 * The segment size of a session: from the peer's configured path MTU, or,
 * when none is configured, from where the peer is.
 */
import { segmentSizeForMtu } from '../protocol/data-mover.js';
import { isLoopbackAddress } from '../../wire/endpoint.js';

/**
 * Both gateways on one host: loopback's own MTU (65536), so a segment
 * (65 KB) holds a whole driver buffer (32 KB by default) and a datagram
 * carries one. Every datagram costs the same whatever its size (a seal
 * and an open, a system call's share, the loss detector's entry, an
 * eighth of an ack and its hand-over between threads), so loopback
 * carries a transfer with fewer of them: 1500-byte datagrams cost 33
 * gateway CPU s/GB, 9000-byte ones 20, and 65535 about a tenth less again
 * (docs/BENCHMARKS.md, issue 18). Loopback does not lose datagrams to
 * the path, so a retransmission's larger size costs nothing there.
 */
const LOOPBACK_MTU = 65_535;

/** Segment bytes for a session with `peer`; undefined: the data mover's default (a 1500-byte MTU). */
export function segmentSizeFor(peer: { address: string } | undefined, mtu: number | undefined): number | undefined {
  const m = mtu ?? (peer && isLoopbackAddress(peer.address) ? LOOPBACK_MTU : undefined);
  return m === undefined ? undefined : segmentSizeForMtu(m, peer?.address.includes(':') ? 6 : 4);
}
