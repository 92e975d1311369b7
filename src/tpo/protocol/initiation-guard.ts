/**
 * Which authenticated handshake initiations a responder answers
 * (docs/WIRE.md 3.5): only those within the clock-skew window and newer
 * than the last it answered, so a replayed initiation is never answered
 * twice. The codec is wire/tpo/handshake.ts.
 */
import { MAX_CLOCK_SKEW_MS, type Initiation } from '../../wire/tpo/handshake.js';

/**
 * The responder's memory of initiations, per peer (WireGuard's rule): an
 * initiation is answered only if its timestamp is within the clock-skew
 * window and later than that of every initiation answered before. A
 * captured initiation replayed later gets no answer once the initiator has
 * sent a newer one (which it does whenever it pairs), and is never answered
 * twice; the memory is one number. After a restart the responder has
 * forgotten it, so a replay of an initiation younger than the window is
 * answered once; the responder's session stays unconfirmed until the
 * initiator's first authenticated transport datagram (peer-link.ts), so the
 * replayer gets that one 60-byte response and nothing more.
 */
export class InitiationGuard {
  #newest = -Infinity;

  /** The newest timestamp answered (ms since the epoch; -Infinity before the first). */
  get newest(): number {
    return this.#newest;
  }

  /** Whether to answer `i` (authenticated already), received at `now` (ms since the epoch); if so, older ones are refused from now on. */
  accept(i: Initiation, now: number): boolean {
    if (Math.abs(now - i.timestamp) > MAX_CLOCK_SKEW_MS) return false;
    if (i.timestamp <= this.#newest) return false;
    this.#newest = i.timestamp;
    return true;
  }
}
