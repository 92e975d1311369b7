/**
 * Reassembly of PSI sections (PAT, PMT) that span transport packets
 * (ISO/IEC 13818-1 2.4.4): a payload_unit_start packet begins with a
 * pointer_field that says how many bytes still belong to the section begun
 * in earlier packets; new sections follow, back to back, until 0xFF stuffing;
 * packets without payload_unit_start continue the section being built.
 *
 * One fixed 1024-byte buffer per PSI PID (PAT and PMT sections are at most
 * 1024 bytes: section_length ≤ 1021), filled byte by byte, so nothing is
 * allocated per packet and nothing past the packet or the buffer is ever
 * read or written, whatever section_length or pointer_field claim.
 */

/** Bytes in the largest PAT/PMT section (3 + section_length ≤ 1021). */
export const MAX_PSI_SECTION = 1024;
const MAX_SECTION_LENGTH = MAX_PSI_SECTION - 3;

/** Outcome of feeding bytes to an assembler. */
export const SECTION_PENDING = 0;
export const SECTION_COMPLETE = 1;
/** section_length exceeds 1021: the section cannot be a PAT/PMT and is dropped. */
export const SECTION_TOO_LONG = 2;

/** Builds one section at a time for one PID. */
export class SectionAssembler {
  /** The section's bytes, [0, length) valid. */
  readonly buf = new Uint8Array(MAX_PSI_SECTION);
  /** Bytes collected so far. */
  length = 0;
  /** Total bytes of the section (3 + section_length), 0 until its 3-byte header is in. */
  need = 0;
  /** A section is being built. */
  active = false;
  /** The section's table_id is not the one this PID may carry: skip its bytes, do not interpret them. */
  foreign = false;

  /** Starts a new section (its first byte is the next one appended). */
  begin(foreign: boolean): void {
    this.length = 0;
    this.need = 0;
    this.active = true;
    this.foreign = foreign;
  }

  /** Forgets the section being built (a lost packet, or a section completed or dropped). */
  reset(): void {
    this.length = 0;
    this.need = 0;
    this.active = false;
    this.foreign = false;
  }

  /**
   * Appends bytes from `src[start, end)` to the section being built, no more
   * than it needs. Returns how many bytes it took; `status` says whether the
   * section is now complete, still pending, or impossible (too long).
   * The caller guarantees 0 ≤ start ≤ end ≤ src.length.
   */
  append(src: Uint8Array, start: number, end: number): number {
    let p = start;
    const buf = this.buf;
    while (this.length < 3 && p < end) buf[this.length++] = src[p++]!;
    if (this.length < 3) return p - start;
    if (this.need === 0) {
      const sectionLength = ((buf[1]! & 0x0f) << 8) | buf[2]!;
      if (sectionLength > MAX_SECTION_LENGTH) {
        this.need = -1;
        return p - start;
      }
      this.need = 3 + sectionLength;
    }
    let n = this.need - this.length;
    if (n > end - p) n = end - p;
    for (let i = 0; i < n; i++) buf[this.length + i] = src[p + i]!;
    this.length += n;
    return p + n - start;
  }

  /** Where the section being built stands after `append`. */
  get status(): number {
    if (this.need < 0) return SECTION_TOO_LONG;
    return this.need > 0 && this.length === this.need ? SECTION_COMPLETE : SECTION_PENDING;
  }
}
