/**
 * Alarm bookkeeping for the TS monitor: each indicator (per PID where it is
 * a per-PID indicator) is raised once when its condition first appears and
 * cleared once the condition has been absent for a full interval, so an
 * operator sees one raise/clear pair per episode, never one per packet.
 *
 * Conditions report themselves with `flag` (an event, e.g. a CC jump) or,
 * for states that last (PAT missing, sync lost), by being flagged again at
 * every tick while they last. The one-line detail is formatted only when an
 * alarm is raised, from numbers the caller passes, so the per-packet path
 * allocates nothing while an alarm stays up.
 */

import { MEDIA_ALARM_KINDS, type MediaAlarm, type MediaAlarmKind } from './monitor-types.js';

/** An alarm clears after its condition has been absent this long (monitor clock, ms). */
export const ALARM_CLEAR_MS = 1000;

/** No PID: the alarm concerns the whole stream. */
export const NO_PID = -1;

/** Reason codes a caller passes as `x` for the PSI indicators (PAT, PMT). */
export const PSI_MISSING = 0;
export const PSI_TABLE_ID = 1;
export const PSI_SCRAMBLED = 2;

/** For ccError: `x` is the previous CC, or this marker for a packet seen a third time. */
export const CC_REPEATED = -2;

interface Active {
  readonly kind: MediaAlarmKind;
  readonly pid: number;
  lastMs: number;
}

const hex = (pid: number): string => `PID 0x${pid.toString(16).padStart(4, '0')}`;

function psiDetail(table: string, pid: number, x: number, y: number): string {
  if (x === PSI_TABLE_ID) return `${hex(pid)}: a section with table_id 0x${y.toString(16)} where only ${table} (0x${pid === 0 ? '00' : '02'}) belongs`;
  if (x === PSI_SCRAMBLED) return `${hex(pid)}: ${table} packet with transport_scrambling_control ${y}`;
  return `${hex(pid)}: no ${table} for ${Math.round(y)} ms (limit 500 ms)`;
}

/** The detail line of an alarm being raised, from the numbers its check passed. */
function detail(kind: MediaAlarmKind, pid: number, x: number, y: number): string {
  switch (kind) {
    case 'tsSyncLoss':
      return `sync lost: ${x} consecutive packets without 0x47`;
    case 'syncByteError':
      return y < 0 ? `a ${x}-byte tail shorter than a 188-byte packet` : `packet ${x}: first byte 0x${y.toString(16)}, not 0x47`;
    case 'patError':
      return psiDetail('PAT', pid, x, y);
    case 'pmtError':
      return psiDetail('PMT', pid, x, y);
    case 'ccError':
      return x === CC_REPEATED ? `${hex(pid)}: CC ${y} a third time` : `${hex(pid)}: CC ${y} after ${x}`;
    case 'pidError':
      return `${hex(pid)}: referenced by a PMT, not seen for ${Math.round(x)} ms`;
    case 'pcrRepetitionError':
      return `${hex(pid)}: ${x.toFixed(1)} ms between PCRs (limit 40 ms)`;
    case 'pcrDiscontinuityError':
      return `${hex(pid)}: PCR moved by ${x.toFixed(1)} ms without discontinuity_indicator`;
    case 'pcrAccuracyError':
      return `${hex(pid)}: PCR off by ${Math.round(x)} ns from the stream's constant rate (limit ±500 ns)`;
    case 'streamStopped':
      return `no datagram for ${Math.round(x)} ms`;
    case 'rtpLoss':
    case 'rtpSsrcChange':
      return kind;
  }
}

/** Raised alarms, keyed by kind and PID; emits every raise and clear. */
export class AlarmBook {
  readonly #onAlarm: ((alarm: MediaAlarm) => void) | undefined;
  readonly #active = new Map<number, Active>();
  /** How many alarms of each kind are up (a kind may be up on several PIDs). */
  readonly #perKind = new Map<MediaAlarmKind, number>();

  constructor(onAlarm: ((alarm: MediaAlarm) => void) | undefined) {
    this.#onAlarm = onAlarm;
  }

  /**
   * The condition of `kind` (on `pid`, or NO_PID) is present at `nowMs`:
   * raises the alarm if it is not up, otherwise only notes the time.
   * `x`, `y` feed the detail line (see `detail`).
   */
  flag(kind: MediaAlarmKind, pid: number, nowMs: number, x = 0, y = 0): void {
    const k = key(kind, pid);
    const a = this.#active.get(k);
    if (a !== undefined) {
      if (nowMs > a.lastMs) a.lastMs = nowMs;
      return;
    }
    this.#active.set(k, { kind, pid, lastMs: nowMs });
    this.#perKind.set(kind, (this.#perKind.get(kind) ?? 0) + 1);
    this.#emit(kind, 'raised', nowMs, pid, detail(kind, pid, x, y));
  }

  /** Whether `kind` is up (on any PID). */
  isUp(kind: MediaAlarmKind): boolean {
    return this.#perKind.has(kind);
  }

  /** Clears `kind` on `pid` now if it is up (for conditions that end at once, e.g. streamStopped). */
  clear(kind: MediaAlarmKind, pid: number, nowMs: number, why: string): void {
    const k = key(kind, pid);
    const a = this.#active.get(k);
    if (a !== undefined) this.#drop(k, a, nowMs, why);
  }

  /** Clears every alarm whose condition has been absent for ALARM_CLEAR_MS. */
  sweep(nowMs: number, except?: MediaAlarmKind): void {
    for (const [k, a] of this.#active) {
      if (a.kind !== except && nowMs - a.lastMs >= ALARM_CLEAR_MS) {
        this.#drop(k, a, nowMs, `absent for ${Math.round(nowMs - a.lastMs)} ms`);
      }
    }
  }

  /** Kinds now raised, in the contract's order. */
  activeKinds(order: readonly MediaAlarmKind[]): MediaAlarmKind[] {
    return order.filter((k) => this.#perKind.has(k));
  }

  #drop(k: number, a: Active, nowMs: number, why: string): void {
    this.#active.delete(k);
    const n = (this.#perKind.get(a.kind) ?? 1) - 1;
    if (n > 0) this.#perKind.set(a.kind, n);
    else this.#perKind.delete(a.kind);
    this.#emit(a.kind, 'cleared', nowMs, a.pid, a.pid === NO_PID ? `${a.kind}: ${why}` : `${hex(a.pid)}: ${a.kind} ${why}`);
  }

  #emit(kind: MediaAlarmKind, state: 'raised' | 'cleared', atMs: number, pid: number, text: string): void {
    if (this.#onAlarm === undefined) return;
    this.#onAlarm(pid === NO_PID ? { kind, state, atMs, detail: text } : { kind, state, atMs, pid, detail: text });
  }
}

const KIND_INDEX = new Map<MediaAlarmKind, number>(MEDIA_ALARM_KINDS.map((k, i) => [k, i]));

/** A number per (kind, PID), so looking an alarm up allocates nothing. */
function key(kind: MediaAlarmKind, pid: number): number {
  return (KIND_INDEX.get(kind) ?? 0) * 0x2001 + pid + 1;
}
