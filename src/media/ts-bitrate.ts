/**
 * Bitrate per PID and of the whole TS, over the last full second of the
 * monitor clock. Seconds count from the first data, so the first reading
 * covers a whole second; bytes are added per packet into a typed array
 * indexed by PID (no allocation), and the arrays roll once a second.
 */

import { TS_PACKET_SIZE } from '../wire/mpegts/packet.js';

const PID_COUNT = 0x2000;

export class BitrateMeter {
  /** Bytes per PID in the current second; the monitor adds to it per packet. */
  readonly current = new Float64Array(PID_COUNT);
  readonly #last = new Float64Array(PID_COUNT);
  #currentTotal = 0;
  #lastTotal = 0;
  #originMs = NaN;
  #second = 0;

  /** Counts one 188-byte packet of `pid` (the total counts every packet, sync errors included). */
  packet(pid: number): void {
    this.current[pid]! += TS_PACKET_SIZE;
  }

  /** Counts bytes that belong to no PID (bad sync bytes, a short tail). */
  unattributed(bytes: number): void {
    this.#currentTotal += bytes;
  }

  /** Moves to the second `nowMs` falls in; call before counting a push's packets, and on tick. */
  roll(nowMs: number): void {
    if (Number.isNaN(this.#originMs)) {
      this.#originMs = nowMs;
      return;
    }
    const s = Math.floor((nowMs - this.#originMs) / 1000);
    if (s <= this.#second) return;
    if (s === this.#second + 1) {
      this.#last.set(this.current);
      this.#lastTotal = this.#currentTotal + sum(this.current);
    } else {
      // A whole second or more without data: the last full second carried nothing.
      this.#last.fill(0);
      this.#lastTotal = 0;
    }
    this.current.fill(0);
    this.#currentTotal = 0;
    this.#second = s;
  }

  /** Bits per second of `pid` over the last full second. */
  pidBitrate(pid: number): number {
    return this.#last[pid]! * 8;
  }

  /** Bits per second of the whole stream over the last full second. */
  totalBitrate(): number {
    return this.#lastTotal * 8;
  }
}

function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}
