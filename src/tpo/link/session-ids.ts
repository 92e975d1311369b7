/**
 * Connection ids that tell a restarted peer from one that was only
 * unreachable for a while. A peer that crashes says no goodbye; when it
 * comes back, its new session must reset the flows the old one carried
 * (their far ends are gone) even if nothing was in flight, while a peer
 * that was cut off and comes back with its state must keep them. So:
 *  - an initiator keeps one connection id for its life (peer-link.ts);
 *  - a responder's ids share their high 16 bits, drawn once per link (its
 *    instance), and differ in the low 16.
 * A restarted responder is then told apart with probability 1 - 2^-16;
 * a miss leaves its flows to their idle timeouts, as before. Ids stay
 * opaque on the wire (docs/WIRE.md 3.5).
 */
import { randomInt } from 'node:crypto';

export class ResponderIds {
  readonly #instance = randomInt(1, 0x10000);

  /** A new id for an offered session (never 0). */
  next(): number {
    return this.#instance * 0x10000 + randomInt(0, 0x10000);
  }
}

/** Whether two session ids of a peer in `peerRole` come from the same process of it. */
export function sameProcess(peerRole: 'initiator' | 'responder', before: number, now: number): boolean {
  return peerRole === 'initiator' ? before === now : before >>> 16 === now >>> 16;
}
