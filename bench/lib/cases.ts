/**
 * What a bench run measures. A case is one scenario (fan-out), payload size
 * and input pattern in one of two modes:
 *
 *   cpu  (a) a realistic stream: REALISTIC_PPS in, relay CPU per delivered packet
 *   max  (b) the highest input rate with at most 0.1 % loss
 *
 * 1->1 is a redirect for Sluice, socat and nginx and a one-client
 * multiudpsink for GStreamer (Sluice's "replicate to one" is the same flow
 * as its redirect, so it is not run twice). 1->10 and 1->100 are replicates.
 */
import type { Pattern } from './trial.js';

export type Mode = 'cpu' | 'max';

export interface BenchCase {
  id: string;
  mode: Mode;
  fanout: number;
  size: number;
  pattern: Pattern;
}

/** A ~21 Mbit/s MPEG-TS stream in 1316-byte datagrams (7 x 188). */
export const REALISTIC_PPS = 2000;
export const FANOUTS = [1, 10, 100] as const;
export const SIZES = [1316, 200] as const;
export const PATTERNS: readonly Pattern[] = ['smooth', 'bursty'];

export function caseId(mode: Mode, fanout: number, size: number, pattern: Pattern): string {
  return `${mode}-1to${fanout}-${size}B-${pattern}`;
}

export function scenarioName(fanout: number): string {
  return fanout === 1 ? 'redirect 1→1' : `replicate 1→${fanout}`;
}

/** Every case, in run order within one relay start: cpu cases first, then max. */
export function allCases(cpuPatterns: readonly Pattern[]): BenchCase[] {
  const out: BenchCase[] = [];
  for (const fanout of FANOUTS) {
    for (const size of SIZES) {
      for (const pattern of cpuPatterns) out.push({ id: caseId('cpu', fanout, size, pattern), mode: 'cpu', fanout, size, pattern });
    }
    for (const size of SIZES) {
      for (const pattern of PATTERNS) out.push({ id: caseId('max', fanout, size, pattern), mode: 'max', fanout, size, pattern });
    }
  }
  return out;
}
