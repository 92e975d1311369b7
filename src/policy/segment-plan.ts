/**
 * Pure planning for segmented multi-destination writes: which slice of which
 * entry goes out in which order. Destinations are interleaved `burst`
 * packets at a time so that no receiver gets a long back-to-back burst.
 */

/** One packet of a segmented write: a slice of entry `entry`. */
export interface PlannedSegment {
  readonly entry: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * Cuts each entry (given by its byte length) into packets of at most
 * `packetSize` bytes and orders them round-robin, `burst` per destination
 * per round. An empty entry yields no packet.
 */
export function planSegments(lengths: readonly number[], packetSize: number, burst = 1): PlannedSegment[] {
  if (!(packetSize >= 1) || !(burst >= 1)) throw new RangeError('packetSize and burst must be >= 1');
  const next = lengths.map(() => 0);
  const out: PlannedSegment[] = [];
  let remaining = lengths.reduce((n, len) => n + Math.ceil(len / packetSize), 0);
  while (remaining > 0) {
    for (let e = 0; e < lengths.length; e++) {
      for (let b = 0; b < burst && next[e]! < lengths[e]!; b++) {
        const offset = next[e]!;
        const length = Math.min(packetSize, lengths[e]! - offset);
        out.push({ entry: e, offset, length });
        next[e] = offset + length;
        remaining--;
      }
    }
  }
  return out;
}
