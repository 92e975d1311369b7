/** Limits of the UDP wire format itself, shared by the policy checks and the socket code. */

/**
 * Largest UDP payload in one IPv4 datagram (65535 − 20 IP − 8 UDP); also the
 * cap on one GSO message's total for both families.
 */
export const MAX_UDP_PAYLOAD = 65507;
