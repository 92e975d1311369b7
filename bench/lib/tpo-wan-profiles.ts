/**
 * The paths the tpo-wan suite crosses (issues #7 and #18): emulated WANs
 * of a given rate and RTT at several random-loss rates, and loopback (no
 * emulator: what the pair costs and carries when the path is not the
 * limit). `--profiles` picks among them; `--quick` shortens each within
 * its own bounds.
 */

export interface WanProfile {
  readonly id: string;
  readonly kind: 'wan';
  readonly rateMbit: number;
  readonly rttMs: number;
  readonly losses: readonly number[];
  /** Bulk transfer time of a trial (quick: `quickSeconds`). */
  readonly seconds: number;
  readonly quickSeconds: number;
  /** Losses a quick run keeps. */
  readonly quickLosses: readonly number[];
  /** Bins before this are slow start; "steady" goodput counts the rest. */
  readonly steadyFromS: number;
}

export interface LoopbackProfile {
  readonly id: string;
  readonly kind: 'loopback';
  /** Size of the fixed transfer, MB (quick: `quickMb`). */
  readonly mb: number;
  readonly quickMb: number;
  /** Bound of one transfer, s: a path slower than mb / maxS is reported as it stood then. */
  readonly maxS: number;
}

export type TpoWanProfile = WanProfile | LoopbackProfile;

export const TPO_WAN_PROFILES: readonly TpoWanProfile[] = [
  {
    id: '50m-100ms',
    kind: 'wan',
    rateMbit: 50,
    rttMs: 100,
    losses: [0, 0.01, 0.03],
    seconds: 20,
    quickSeconds: 10,
    quickLosses: [0, 0.01, 0.03],
    steadyFromS: 5,
  },
  { id: '200m-10ms', kind: 'wan', rateMbit: 200, rttMs: 10, losses: [0, 0.01], seconds: 10, quickSeconds: 6, quickLosses: [0], steadyFromS: 2 },
  // Issue 18 asks for 500 Mbit/s too: no loss, as a CPU figure (on 2 cores the emulator itself competes for them).
  { id: '500m-10ms', kind: 'wan', rateMbit: 500, rttMs: 10, losses: [0], seconds: 10, quickSeconds: 6, quickLosses: [0], steadyFromS: 2 },
  { id: 'loopback', kind: 'loopback', mb: 1000, quickMb: 400, maxS: 60 },
];

export const profileIds = (): string[] => TPO_WAN_PROFILES.map((p) => p.id);

/** The profiles named in a comma list (all when undefined); throws on an unknown name. */
export function pickProfiles(list: string | undefined): TpoWanProfile[] {
  if (list === undefined) return [...TPO_WAN_PROFILES];
  const names = list
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !TPO_WAN_PROFILES.some((p) => p.id === n));
  if (bad.length) throw new Error(`unknown tpo-wan profile(s) ${bad.join(', ')} (have ${profileIds().join(', ')})`);
  return TPO_WAN_PROFILES.filter((p) => names.includes(p.id));
}

/** A profile as a heading: "50 Mbit/s, 100 ms RTT" or "loopback". */
export function profileTitle(p: TpoWanProfile): string {
  return p.kind === 'wan' ? `${p.rateMbit} Mbit/s, ${p.rttMs} ms RTT` : 'loopback, no emulator';
}

export const lossesOf = (p: TpoWanProfile, quick: boolean): readonly number[] => (p.kind === 'loopback' ? [0] : quick ? p.quickLosses : p.losses);
