/**
 * A TPO peer's loss ratio for `sluice_tpo_peer_loss_ratio`. A peer status
 * that carries `lossRatio` (0–1) is used as is. One that carries the data
 * mover's counters `lost` and `datagramsSent` gives the share lost over a
 * window of at least WINDOW_MS between scrapes: a ratio since the start
 * would hide today's loss under months of clean traffic, and a window of
 * one scrape interval would depend on who scrapes how often. A status with
 * neither gives no series.
 */
import type { PeerStatus } from '../tpo/index.js';

const WINDOW_MS = 10_000;

/** A numeric field the status type may not declare yet (added by later versions: fields are added, never renamed). */
export function numberField(o: object, key: string): number | undefined {
  const v = (o as Record<string, unknown>)[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

interface Base {
  readonly t: number;
  readonly lost: number;
  readonly sent: number;
}

export class PeerLoss {
  readonly #now: () => number;
  /** Per peer: the reading the window starts at, and the last ratio. */
  readonly #peers = new Map<string, { base: Base; ratio: number | undefined }>();

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  ratio(gateway: string, p: PeerStatus): number | undefined {
    const given = numberField(p, 'lossRatio');
    if (given !== undefined) return Math.min(1, Math.max(0, given));
    const lost = numberField(p, 'lost');
    const sent = numberField(p, 'datagramsSent');
    if (lost === undefined || sent === undefined) return undefined;
    const key = `${gateway}\u0000${p.name}`;
    const now: Base = { t: this.#now(), lost, sent };
    const entry = this.#peers.get(key);
    if (!entry || sent < entry.base.sent || lost < entry.base.lost) {
      // First reading, or the counters restarted (a new session): the lifetime ratio until a window has passed.
      const ratio = sent > 0 ? Math.min(1, lost / sent) : undefined;
      this.#peers.set(key, { base: now, ratio });
      return ratio;
    }
    if (now.t - entry.base.t >= WINDOW_MS) {
      const dSent = sent - entry.base.sent;
      // Nothing sent in the window: no loss to report, keep the last ratio.
      if (dSent > 0) entry.ratio = Math.min(1, (lost - entry.base.lost) / dSent);
      entry.base = now;
    }
    return entry.ratio;
  }
}
