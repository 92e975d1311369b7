/**
 * Bounds-checked big-endian reading and writing for the TPO wire codecs.
 * Every read checks that the bytes are there and throws a WireError
 * naming the field otherwise, so a decoder never reads past its input and
 * a truncated input always surfaces as 'truncated'.
 */
import { WireError } from './errors.js';

export class Reader {
  #at: number;
  readonly #view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    readonly what: string,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.#at = start;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.#at;
  }

  get left(): number {
    return this.end - this.#at;
  }

  #need(n: number, field: string): number {
    if (this.#at + n > this.end)
      throw new WireError('truncated', `${this.what}: ${field} needs ${n} byte(s) at offset ${this.#at}, ${Math.max(0, this.end - this.#at)} left`, field);
    const at = this.#at;
    this.#at += n;
    return at;
  }

  u8(field: string): number {
    return this.#view.getUint8(this.#need(1, field));
  }

  u16(field: string): number {
    return this.#view.getUint16(this.#need(2, field));
  }

  u32(field: string): number {
    return this.#view.getUint32(this.#need(4, field));
  }

  /** A u64 that must fit a JS number exactly (sequence numbers stay below 2^53). */
  u64(field: string): number {
    const at = this.#need(8, field);
    const hi = this.#view.getUint32(at);
    const lo = this.#view.getUint32(at + 4);
    if (hi > 0x1fffff) throw new WireError('value', `${this.what}: ${field} exceeds 2^53`, field);
    return hi * 0x1_0000_0000 + lo;
  }

  /** `n` bytes as a view into the input (no copy). */
  bytesOf(n: number, field: string): Uint8Array {
    const at = this.#need(n, field);
    return this.bytes.subarray(at, at + n);
  }

  skip(n: number, field: string): void {
    this.#need(n, field);
  }
}

export class Writer {
  #at = 0;
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.#at;
  }

  u8(v: number): this {
    this.#view.setUint8(this.#at, v);
    this.#at += 1;
    return this;
  }

  u16(v: number): this {
    this.#view.setUint16(this.#at, v);
    this.#at += 2;
    return this;
  }

  u32(v: number): this {
    this.#view.setUint32(this.#at, v);
    this.#at += 4;
    return this;
  }

  u64(v: number): this {
    this.#view.setUint32(this.#at, Math.floor(v / 0x1_0000_0000));
    this.#view.setUint32(this.#at + 4, v >>> 0);
    this.#at += 8;
    return this;
  }

  bytesOf(b: Uint8Array): this {
    this.bytes.set(b, this.#at);
    this.#at += b.length;
    return this;
  }

  /** Overwrites a u32 written earlier (a value known only at the end, e.g. a checksum). */
  u32At(at: number, v: number): void {
    this.#view.setUint32(at, v);
  }
}
