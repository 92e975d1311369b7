/**
 * `sluice write`: a file to several destinations, cut into packets,
 * destinations interleaved; paced (--bitrate, or --pace pcr|rtp: by the
 * stream's own clock), each destination gets the file as its own stream.
 * An unpaced write of a file that looks like MPEG-TS warns: players drop
 * most frames of a TS file sent as fast as the link goes.
 *
 * Both forms show live progress (progress.ts) and stop early on SIGINT or
 * SIGTERM: the packets not yet handed to the kernel are not sent, the
 * report says how many were and were not, and the exit code is 0 unless a
 * send failed. An unpaced write goes to the engine in chunks of about
 * CHUNK_BYTES for that: one Sender.write resolves only when it is done.
 */
import { Sender } from '../control/sender.js';
import { PolicyValidationError } from '../errors.js';
import { MAX_BATCH_BYTES, type TierChoice } from '../policy/schema.js';
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { EXIT, emitJson, engineText, table } from './output.js';
import { Progress } from './progress.js';
import { listenForStop, type StopListener } from './signals.js';
import type { WriteDestination, WriteResult } from '../sender/results.js';
import type { SchedulerStats, StreamHandle, StreamPace, StreamScheduler, StreamStats } from '../sender/stream-scheduler.js';
import { rtpFraming } from '../sender/pace-rtp.js';
import { looksLikeTs } from './ts-sniff.js';

export interface WriteOptions {
  file: string;
  to: string[];
  packetSize: number;
  burst: number;
  bitrate?: number;
  /** What paces the write (default: --bitrate if given, else unpaced). 'bitrate' needs `bitrate`. */
  pace?: StreamPace;
  /** RTP clock rate, Hz (pace 'rtp'). */
  clockRate?: number;
  tier: TierChoice;
  json: boolean;
  /** Seconds between progress lines off a terminal, or JSON progress events (default: progress.ts). */
  progressIntervalS?: number;
}

/** Largest file `sluice write --bitrate` streams (it is held in memory whole). */
export const MAX_STREAM_FILE_BYTES = 1024 * 1024 * 1024;

/**
 * Bytes of one chunk of an unpaced write, all destinations together:
 * milliseconds of work on loopback, a fraction of a second on a slow link,
 * so progress moves and a stop is prompt; the engine's round trip per
 * chunk is a few microseconds against that.
 */
export const CHUNK_BYTES = 4 << 20;

export async function runWrite(opts: WriteOptions): Promise<number> {
  const pace = opts.pace ?? (opts.bitrate !== undefined ? 'bitrate' : undefined);
  if (pace === 'bitrate' && opts.bitrate === undefined) {
    throw new PolicyValidationError([{ path: '--pace', message: 'bitrate pacing needs --bitrate RATE' }], 'invalid write');
  }
  const data = readWriteFile(opts.file, opts.to.length, pace !== undefined);
  if (pace === undefined && looksLikeTs(data)) {
    process.stderr.write(
      `sluice write: warning: ${opts.file} looks like MPEG-TS; unpaced, it leaves as fast as the link goes and players lose most frames: add --pace pcr (its own clock) or --bitrate RATE\n`,
    );
  }
  const stop = listenForStop();
  try {
    if (pace !== undefined) return await writePaced(data, { ...opts, pace }, stop);
    return await writeUnpaced(data, opts, stop);
  } finally {
    stop.dispose();
  }
}

/** `interrupted by SIGINT: 1200 of 5000 packets sent, 3800 not sent` (stdout, after the report). */
function interruptedText(signal: string, sent: number, planned: number, notSent: number): string {
  return `interrupted by ${signal}: ${sent} of ${planned} packets sent, ${notSent} not sent\n`;
}

/**
 * The chunks of an unpaced write. Every destination gets the same bytes,
 * so cutting the file at a multiple of `burst` packets gives the engine's
 * interleave the same wire order as one write of the whole file.
 */
function chunkBytes(packetSize: number, burst: number, destinations: number): number {
  const packets = Math.floor(CHUNK_BYTES / (packetSize * Math.max(1, destinations)) / burst) * burst;
  return Math.max(burst, packets) * packetSize;
}

/** Counters of an unpaced write summed over its chunks. */
class WriteTotals {
  packets = 0;
  sent = 0;
  bytes = 0;
  errors = 0;
  sendCalls: number | undefined;
  gsoMessages: number | undefined;
  zeroCopy: { sends: number; completed: number; copied: number; fallback?: string; error?: string } | undefined;
  destinations: WriteDestination[] = [];
  firstElapsedMs = 0;
  firstDoneAt = 0;
  lastDoneAt = 0;

  add(r: WriteResult): void {
    const now = performance.now();
    if (this.destinations.length === 0) {
      this.destinations = r.destinations.map((d) => ({ ...d }));
      this.firstElapsedMs = r.elapsedMs;
      this.firstDoneAt = now;
    } else {
      r.destinations.forEach((d, i) => {
        const t = this.destinations[i]!;
        t.packets += d.packets;
        t.bytes += d.bytes;
        t.errors += d.errors;
        if (d.lastError !== undefined) t.lastError = d.lastError;
      });
    }
    this.lastDoneAt = now;
    this.packets += r.packets;
    this.sent += r.sent;
    this.bytes += r.bytes;
    this.errors += r.errors;
    if (r.sendCalls !== undefined) this.sendCalls = (this.sendCalls ?? 0) + r.sendCalls;
    if (r.gsoMessages !== undefined) this.gsoMessages = (this.gsoMessages ?? 0) + r.gsoMessages;
    if (r.zeroCopy) {
      const z = (this.zeroCopy ??= { sends: 0, completed: 0, copied: 0 });
      z.sends += r.zeroCopy.sends;
      z.completed += r.zeroCopy.completed;
      z.copied += r.zeroCopy.copied;
      if (r.zeroCopy.fallback !== undefined) z.fallback ??= r.zeroCopy.fallback;
      if (r.zeroCopy.error !== undefined) z.error ??= r.zeroCopy.error;
    }
  }

  /** As one WriteResult: the first chunk's own time (it includes no engine start-up) plus the time to the last chunk's end. */
  result(label: { engine: WriteResult['engine']; tier: WriteResult['tier'] }, planned: number): WriteResult {
    return {
      ...label,
      packets: planned,
      sent: this.sent,
      bytes: this.bytes,
      errors: this.errors,
      destinations: this.destinations,
      elapsedMs: this.firstElapsedMs + (this.lastDoneAt - this.firstDoneAt),
      ...(this.sendCalls !== undefined ? { sendCalls: this.sendCalls } : {}),
      ...(this.gsoMessages !== undefined ? { gsoMessages: this.gsoMessages } : {}),
      ...(this.zeroCopy ? { zeroCopy: this.zeroCopy } : {}),
    };
  }
}

async function writeUnpaced(data: Buffer, opts: WriteOptions, stop: StopListener): Promise<number> {
  const sender = await Sender.open({ tier: opts.tier });
  const perDestination = Math.ceil(data.byteLength / opts.packetSize);
  const planned = opts.to.length * perDestination;
  const totals = new WriteTotals();
  const progress = new Progress({
    label: 'sluice write',
    json: opts.json,
    ...(opts.progressIntervalS !== undefined ? { intervalS: opts.progressIntervalS } : {}),
    read: () => ({ unit: 'packets', sent: totals.sent, total: planned, bytes: totals.bytes, totalBytes: data.byteLength * opts.to.length }),
  });
  let r: WriteResult;
  try {
    const size = chunkBytes(opts.packetSize, opts.burst, opts.to.length);
    // At least one write, even of an empty file (its result names the destinations).
    for (let at = 0; at === 0 || (at < data.byteLength && stop.received === undefined); at += size) {
      // Every destination gets the same bytes: one buffer (a view of it per chunk), no copies.
      const part = data.byteLength <= size ? data : data.subarray(at, Math.min(data.byteLength, at + size));
      totals.add(
        await sender.write(
          opts.to.map((to) => ({ to, data: part })),
          { packetSize: opts.packetSize, burst: opts.burst },
        ),
      );
    }
    r = totals.result({ engine: sender.engine, tier: sender.tier }, planned);
  } finally {
    progress.stop();
    await sender.close();
  }
  const notSent = planned - totals.packets;
  const interrupted = notSent > 0 && stop.received !== undefined ? stop.received : undefined;
  if (opts.json) emitJson('write', { ...r, ...(interrupted ? { interrupted, notSent } : {}) });
  else {
    process.stdout.write(
      `${table(
        ['to', 'packets', 'bytes', 'errors'],
        r.destinations.map((d) => [d.to, String(d.packets), String(d.bytes), d.lastError ? `${d.errors} (${d.lastError})` : String(d.errors)]),
      )}\n`,
    );
    process.stdout.write(`${engineText(r)}: ${r.sent} of ${r.packets} packets, ${r.bytes} bytes in ${r.elapsedMs.toFixed(1)} ms\n`);
    if (interrupted) process.stdout.write(interruptedText(interrupted, r.sent, planned, notSent));
  }
  return r.errors === 0 ? EXIT.OK : EXIT.FAILURE;
}

/**
 * The file of `sluice write`: a regular file, its size checked before it
 * is read. Unpaced, every destination's copy counts towards the 64 MiB a
 * write may carry; paced (--bitrate), up to MAX_STREAM_FILE_BYTES.
 */
function readWriteFile(file: string, destinations: number, paced: boolean): Buffer {
  const limit = paced ? MAX_STREAM_FILE_BYTES : Math.floor(MAX_BATCH_BYTES / Math.max(1, destinations));
  try {
    return readRegularFile(file, { maxBytes: limit }).data;
  } catch (err) {
    if (!(err instanceof FileRefusedError)) throw err;
    let message = err.message;
    if (/more than the limit|grew past the limit/.test(err.reason)) {
      message += paced
        ? ' (a paced write holds the file in memory)'
        : ` (a write carries at most ${MAX_BATCH_BYTES} bytes in all, the file once per destination; --bitrate streams larger files)`;
    }
    throw new PolicyValidationError([{ path: '--file', message }], 'invalid write');
  }
}

/** 4000000 → `4.000M`, 800000 → `800.0k`: bits per second for people. */
function formatRate(bps: number): string {
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(3)}G`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(3)}M`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(1)}k`;
  return bps.toFixed(0);
}

type PacedOptions = WriteOptions & { pace: StreamPace };

/** `at 4.000Mbit/s`, or `by PCR (10.0 s of media)`. */
function paceText(opts: PacedOptions, s: StreamStats | undefined): string {
  if (opts.pace === 'bitrate') return `at ${formatRate(opts.bitrate ?? 0)}bit/s`;
  const media = s?.passMs !== undefined ? ` (${(s.passMs / 1000).toFixed(1)} s of media)` : '';
  return `by ${opts.pace === 'pcr' ? 'PCR' : 'RTP timestamps'}${media}`;
}

/** Adds one stream per destination; a bad destination is a usage error naming --to, data that does not give its clock one naming --file. */
function addStreams(sched: StreamScheduler, data: Buffer, opts: PacedOptions): StreamHandle[] {
  return opts.to.map((dest, i) => {
    try {
      return sched.add({
        id: String(i + 1),
        to: dest,
        data,
        pace: opts.pace,
        ...(opts.bitrate !== undefined ? { bitrate: opts.bitrate } : {}),
        ...(opts.clockRate !== undefined ? { clockRate: opts.clockRate } : {}),
      });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SLUICE_ERR_INVALID_ARGUMENT') throw err;
      const message = (err as Error).message;
      if (/^stream '[^']*': to: /.test(message)) {
        throw new PolicyValidationError([{ path: '--to', message: `${dest}: ${message.replace(/^stream '[^']*': to: /, '')}` }], 'invalid write');
      }
      throw new PolicyValidationError([{ path: '--file', message: `${opts.file}: ${message.replace(/^stream '[^']*': /, '')}` }], 'invalid write');
    }
  });
}

/** Datagrams per destination of a paced write: the file cut every packet size, or its RTP packets. */
function datagramsOf(data: Buffer, opts: PacedOptions): number {
  if (opts.pace !== 'rtp') return Math.ceil(data.byteLength / opts.packetSize);
  try {
    return rtpFraming(data, opts.packetSize).offsets.length;
  } catch {
    return 0; // add() says what is wrong with the file
  }
}

/**
 * `sluice write --bitrate` or `--pace pcr|rtp`: every destination gets
 * the whole file as its own stream, at the bitrate or by the file's own
 * clock, all paced by one stream scheduler (one write per tick or due
 * time, carrying every destination's due packets); reports each
 * destination's counters, lateness and achieved rate once all are done,
 * or once a stop signal closed the scheduler (its streams end 'closed').
 */
async function writePaced(data: Buffer, opts: PacedOptions, stop: StopListener): Promise<number> {
  if (opts.to.length === 0) throw new PolicyValidationError([{ path: '--to', message: 'give at least one destination' }], 'invalid write');
  const sender = await Sender.open({ tier: opts.tier });
  const { engine, tier } = sender;
  const packets = opts.to.length * datagramsOf(data, opts);
  let finals: StreamStats[];
  let sched: StreamScheduler;
  let totals: SchedulerStats;
  let t0 = performance.now();
  let progress: Progress | undefined;
  try {
    // An empty write first (no packet): it starts the batched engine's send
    // worker, so that its start-up does not make the streams' first ticks late.
    if (engine === 'batched') await sender.write([{ to: opts.to[0]!, data: new Uint8Array(0) }]).catch(() => undefined);
    t0 = performance.now();
    sched = sender.streams({ packetSize: opts.packetSize, burst: opts.burst });
    try {
      const handles = addStreams(sched, data, opts);
      progress = new Progress({
        label: 'sluice write',
        json: opts.json,
        ...(opts.progressIntervalS !== undefined ? { intervalS: opts.progressIntervalS } : {}),
        read: () => {
          const now = handles.map((h) => h.stats());
          const bytes = now.reduce((n, s) => n + s.bytes, 0);
          // Every stream carries the same file at the same pace: the slowest decides.
          const behind = Math.max(...now.map((s) => s.size - s.bytes));
          const clock = now[0]?.passMs;
          const etaMs = clock !== undefined ? Math.max(0, clock - Math.min(...now.map((s) => s.elapsedMs))) : (behind * 8 * 1000) / now[0]!.bitrate;
          return {
            unit: 'packets',
            sent: now.reduce((n, s) => n + s.packets, 0),
            total: packets,
            bytes,
            totalBytes: data.byteLength * opts.to.length,
            etaMs,
          };
        },
      });
      // A stop closes the scheduler: the write in flight completes, the streams end 'closed'.
      void stop.signal.then(() => sched.close());
      finals = await Promise.all(handles.map((h) => h.done));
    } finally {
      totals = await sched.close();
    }
    if (sched.error) throw sched.error;
  } finally {
    progress?.stop();
    await sender.close();
  }
  const elapsedMs = performance.now() - t0;
  const sent = finals.reduce((n, s) => n + s.packets, 0);
  const bytes = finals.reduce((n, s) => n + s.bytes, 0);
  const errors = finals.reduce((n, s) => n + s.errors, 0);
  const notSent = packets - sent - errors;
  const interrupted = finals.some((s) => s.status === 'closed') && stop.received !== undefined ? stop.received : undefined;
  // Per destination: each stream's bytes over its own time, averaged.
  const achievedBitrate = finals.reduce((n, s) => n + s.achievedBitrate, 0) / finals.length;
  const destinations = finals.map((s) => ({
    to: s.to,
    packets: s.packets,
    bytes: s.bytes,
    errors: s.errors,
    ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
    elapsedMs: s.elapsedMs,
    achievedBitrate: s.achievedBitrate,
    lateness: s.lateness,
  }));
  if (opts.json) {
    emitJson('write', {
      engine,
      tier,
      pace: opts.pace,
      ...(opts.bitrate !== undefined ? { bitrate: opts.bitrate } : {}),
      ...(finals[0]?.passMs !== undefined ? { mediaMs: finals[0].passMs } : {}),
      packets,
      sent,
      bytes,
      errors,
      destinations,
      elapsedMs,
      achievedBitrate,
      tickMs: totals.tickMs,
      ticks: totals.ticks,
      writes: totals.writes,
      overruns: totals.overruns,
      ...(interrupted ? { interrupted, notSent } : {}),
    });
  } else {
    const f = (v: number) => v.toFixed(2);
    process.stdout.write(
      `${table(
        ['to', 'packets', 'bytes', 'errors', 'ms', 'bit/s', 'late p50 ms', 'late p99 ms', 'late max ms'],
        finals.map((s) => [
          s.to,
          String(s.packets),
          String(s.bytes),
          s.lastError ? `${s.errors} (${s.lastError})` : String(s.errors),
          s.elapsedMs.toFixed(1),
          formatRate(s.achievedBitrate),
          f(s.lateness.p50),
          f(s.lateness.p99),
          f(s.lateness.max),
        ]),
      )}\n`,
    );
    process.stdout.write(
      `${engineText({ engine, tier })}: ${sent} of ${packets} packets, ${bytes} bytes in ${elapsedMs.toFixed(1)} ms; ${finals.length} stream(s) ${paceText(opts, finals[0])}, achieved ${formatRate(achievedBitrate)}bit/s per destination; ${opts.pace === 'bitrate' ? `${totals.ticks} ticks of ${f(totals.tickMs)} ms` : `${totals.ticks} wake-ups at due times`}, ${totals.writes} writes, ${totals.overruns} overruns\n`,
    );
    if (interrupted) process.stdout.write(interruptedText(interrupted, sent, packets, notSent));
  }
  return errors === 0 ? EXIT.OK : EXIT.FAILURE;
}
