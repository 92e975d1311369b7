/**
 * The kind byte (docs/WIRE.md §3): byte 1 of every UDP datagram between two
 * gateways, after the version byte, says what follows: a data mover field
 * (transport, data-mover.ts) or one of the two handshake messages
 * (handshake.ts). A receiver tells datagrams apart by it before any key is
 * involved. Pure; the one place these numbers are written down.
 */

export const DatagramKind = {
  /** A data mover datagram: field, then the sealed segment. */
  transport: 1,
  /** A handshake initiation (initiator → responder). */
  initiate: 2,
  /** A handshake response (responder → initiator). */
  respond: 3,
} as const;

/** The kind byte of `datagram` (undefined when it has fewer than 2 bytes); not checked against the known kinds. */
export function peekKind(datagram: Uint8Array): number | undefined {
  return datagram[1];
}
