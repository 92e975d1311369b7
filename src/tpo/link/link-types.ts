/** What a PeerLink (peer-link.ts) reports: why it dropped a handshake datagram, and its counters. */

/**
 * Why a handshake datagram was dropped (each one counts in droppedHandshake):
 * it did not authenticate under the pair's key (a wrong key, or forged);
 * its key id is not this peer's; its timestamp is off by more than the
 * allowed clock skew; it is not newer than the last initiation answered
 * (replayed); it does not decode; or nothing asked for it (a response
 * with no initiation outstanding, often a late duplicate of one already
 * taken); or it is an initiation for a peer this side initiates to itself
 * (roleConflict: both gateways were given the other's address, and each
 * waits for the other to answer).
 */
export type HandshakeFailureReason = 'authentication' | 'unknownKey' | 'stale' | 'replayed' | 'malformed' | 'unexpected' | 'roleConflict';

export interface PeerLinkStats {
  initiationsSent: number;
  /** Handshake responses sent (responder): one per fresh, authentic initiation newer than the last. */
  responsesSent: number;
  sessions: number;
  /** Datagrams dropped before a session existed or for another: malformed, unauthenticated, stale or replayed handshakes. */
  droppedHandshake: number;
  droppedNoSession: number;
  /** Driver buffers from an authenticated peer that did not decode (a peer bug): counted, not delivered. */
  badBuffers: number;
  /** Sessions the peer ended with a goodbye. */
  goodbyes: number;
  /** Messages whose 'message' handler threw (a bug; counted and reported once as a warning). */
  handlerErrors: number;
}
