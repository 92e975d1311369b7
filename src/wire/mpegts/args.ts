/**
 * Argument checks shared by the MPEG-TS encoders. Encoders throw RangeError
 * (bad value) or TypeError (bad type) on invalid arguments, because those are
 * programming errors; decoders never throw.
 */

/** Throws unless `v` is an integer in [min, max]; `name` goes into the message. */
export function checkInt(name: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${v}`);
}
