/**
 * When an initiator's handshakes go unanswered, say so — once a bounded
 * number of them has gone, then again less and less often, never per
 * datagram. A responder never answers an initiation it cannot
 * authenticate (a wrong key, or one from a stranger: answering would tell
 * a scanner the port is a gateway), so from the initiator's side a wrong
 * key, a wrong address, a firewall and a stopped peer all look the same:
 * silence. This is how the initiator's owner hears of it ('unreachable'
 * on the PeerLink, 'peerunreachable' on the TpoGateway).
 */

/** Unanswered initiations before the first report: with the link's retries (250 ms, then 1.5x), about 2 s. */
export const UNREACHABLE_AFTER_ATTEMPTS = 5;

/** Time from one report to the next while the silence lasts; the last interval repeats. */
export const UNREACHABLE_REPORT_INTERVALS_MS: readonly number[] = [10_000, 30_000, 60_000, 120_000, 300_000];

export interface UnreachableReport {
  /** Initiations sent since the last answer (or since the link started). */
  readonly attempts: number;
  /** Since the first of them, ms. */
  readonly sinceMs: number;
}

/** PeerLink's 'unreachable': the initiator's handshakes to `address`:`port` went unanswered. */
export interface PeerUnreachable extends UnreachableReport {
  readonly address: string;
  readonly port: number;
}

export class UnansweredHandshakes {
  #attempts = 0;
  #since = 0;
  #reports = 0;
  #nextReportAt = 0;

  /** Initiations sent and not answered (0 once one was). */
  get attempts(): number {
    return this.#attempts;
  }

  /** An initiation left; the report to make now, if one is due. */
  sent(now = performance.now()): UnreachableReport | undefined {
    if (this.#attempts === 0) this.#since = now;
    this.#attempts++;
    if (this.#attempts < UNREACHABLE_AFTER_ATTEMPTS || now < this.#nextReportAt) return undefined;
    const intervals = UNREACHABLE_REPORT_INTERVALS_MS;
    this.#nextReportAt = now + intervals[Math.min(this.#reports, intervals.length - 1)]!;
    this.#reports++;
    return { attempts: this.#attempts, sinceMs: Math.round(now - this.#since) };
  }

  /** The peer answered (a session is up, or the old one came back): the next silence is counted afresh. */
  answered(): void {
    this.#attempts = 0;
    this.#reports = 0;
    this.#nextReportAt = 0;
  }
}
