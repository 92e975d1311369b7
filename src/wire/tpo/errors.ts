import { SluiceError } from '../../errors.js';

/**
 * Why a wire decoder refused its input:
 * - truncated: the input ends before a field does;
 * - version:   a version this code does not speak;
 * - length:    a length field disagrees with the input or with another field;
 * - type:      an unknown function, protocol, codec or subfield type;
 * - value:     a field outside its range (or reserved bits set);
 * - checksum:  the CRC-32 does not match (corruption).
 */
export type WireErrorReason = 'truncated' | 'version' | 'length' | 'type' | 'value' | 'checksum';

/** A TPO wire structure could not be decoded (or encoded): `reason` and the `field`. */
export class WireError extends SluiceError<'SLUICE_ERR_WIRE'> {
  constructor(
    readonly reason: WireErrorReason,
    message: string,
    readonly field: string,
  ) {
    super('SLUICE_ERR_WIRE', message);
    this.name = 'WireError';
  }
}
