/**
 * Streams grouped by time interval: a scheduler for many streams, each
 * sending a known piece of content (a file, a segment) to one destination
 * at its own bitrate, that collects every tick everything due from every
 * stream into ONE segmented write (Sluice.write, or any function with its
 * shape), so that one send call carries many streams' packets.
 *
 * Pacing is per stream (stream.ts): at every tick the scheduler takes from
 * each stream the whole packets due by then, computed from the stream's
 * start and the clock, as views of its buffer (no copy).
 *
 * The tick rule. tick = the time the aggregate packet rate of all running
 * streams takes to produce TICK_PACKETS (64) packets, so that one write
 * carries about 64 packets and amortizes the send call:
 *
 *   tickMs = clamp(64 × packetSize × 8 × 1000 / Σ bitrate, 1, 10)
 *
 * Below 1 ms the timers cannot keep up; above 10 ms a stream's burst per
 * tick grows large enough to strain receiver and switch buffers. E.g. one
 * 4 Mbit/s stream of 1316-byte packets (380 packets/s) → 10 ms; 100 of
 * them → 1.68 ms; 1000 → 1 ms. It is recomputed whenever a stream is
 * added, removed or finishes; the `tickMs` option overrides it.
 *
 * Ticks fall on absolute deadlines (tick-grid.ts); a tick whose timer
 * fired very late just carries more. At most one write is in flight: if
 * the previous write is still running at a tick, that tick sends nothing
 * and counts an overrun, and the next tick carries everything due by then
 * (so per-stream order is kept across writes).
 *
 * Streams paced by their own clock (`pace: 'pcr' | 'rtp'`, stream.ts)
 * have a due time per datagram instead: a DueTimer (tick-grid.ts) wakes
 * the scheduler at the earliest of them, and that wake-up's write carries
 * everything due from every stream. The grid runs only while streams
 * paced by bitrate do; the tick rule counts only them.
 *
 * Lateness of a packet is the time between its ideal due time and the
 * tick that hands it to the write; with ticks of T ms it is spread over
 * [0, T] on an idle machine (p50 ≈ T/2) and grows when ticks or writes run
 * late. Counters are kept in a bounded histogram (5 % resolution, exact
 * max) so a stream of hours costs no memory per packet.
 */
import { EventEmitter } from 'node:events';
import { formatEndpoint, parseEndpointInput } from '../wire/endpoint.js';
import { MAX_BATCH_BYTES, MAX_SUBSCRIBERS } from '../policy/schema.js';
import { parseSegment } from '../policy/validate.js';
import { ClosedError, ConflictError, InvalidArgumentError } from '../errors.js';
import type { WriteResult } from './results.js';
import { Histogram } from './histogram.js';
import { STREAM_PACES } from './pace-types.js';
import { Stream, type StreamHandle, type StreamInput, type StreamStats, type StreamStatus } from './stream.js';
import { DueTimer, TickGrid } from './tick-grid.js';

export type { StreamHandle, StreamInput, StreamStats, StreamStatus } from './stream.js';
export type { StreamPace } from './pace-types.js';
export {
  TICK_PACKETS,
  MIN_TICK_MS,
  MAX_TICK_MS,
  streamTickMs,
  type StreamWriteEntry,
  type StreamWriteOptions,
  type StreamWriteFn,
  type StreamSchedulerOptions,
  type SchedulerStats,
  type StreamSchedulerEvents,
} from './stream-scheduler-types.js';
import {
  MIN_TICK_MS,
  streamTickMs,
  type SchedulerStats,
  type StreamSchedulerEvents,
  type StreamSchedulerOptions,
  type StreamWriteEntry,
  type StreamWriteFn,
  type StreamWriteOptions,
} from './stream-scheduler-types.js';

/**
 * Paces many streams, each at its own bitrate, through one write per tick
 * (see the file comment for the pacing and the tick rule).
 *
 * Timers run on the application's thread (the write itself may run
 * elsewhere, e.g. in the batched tier's send worker). That is acceptable
 * for ticks ≥ 1 ms because the amount due is computed from each stream's
 * start and the clock, not counted in ticks: a timer that fires late, or
 * a blocked event loop, makes the next write larger, not the stream slower.
 *
 *   const sched = sluice.streams({ packetSize: 1316 });
 *   const s = sched.add({ id: 'movie-1', to: 'udp://198.51.100.7:5000', bitrate: 4e6, data });
 *   const final = await s.done;       // or sched.on('end', (stats) => ...)
 *   await sched.close();
 *
 * A write that rejects (e.g. the Sluice was closed) stops the scheduler:
 * every stream ends as 'failed' with the error's message, `error` holds
 * it, and an 'error' event is emitted if anyone listens.
 */
export class StreamScheduler extends EventEmitter<StreamSchedulerEvents> {
  readonly #write: StreamWriteFn;
  readonly #packetSize: number;
  readonly #writeOptions: StreamWriteOptions;
  readonly #tickOverride: number | undefined;
  /** Unfinished streams (running, or ending with a write in flight), by id. */
  readonly #streams = new Map<string, Stream>();
  /** Σ bitrate of the bitrate-paced streams still taking data, and how many they are. */
  #rate = 0;
  #ratePaced = 0;
  /** Streams still taking data. */
  #running = 0;
  readonly #grid: TickGrid;
  readonly #due = new DueTimer(() => {
    if (!this.#closed) this.#tick();
  });
  #inFlight: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<SchedulerStats> | undefined;
  #error: Error | undefined;
  #ticks = 0;
  #writes = 0;
  #overruns = 0;
  #packets = 0;
  #bytes = 0;
  #errors = 0;
  readonly #writeMs = new Histogram();

  constructor(write: StreamWriteFn, options: StreamSchedulerOptions) {
    super();
    if (typeof write !== 'function') throw new InvalidArgumentError('StreamScheduler: write must be a function');
    const o = (options ?? {}) as Partial<StreamSchedulerOptions>;
    if (o.tickMs !== undefined && !(typeof o.tickMs === 'number' && o.tickMs >= MIN_TICK_MS && o.tickMs <= 1000)) {
      throw new InvalidArgumentError(`StreamScheduler: tickMs must be a number from ${MIN_TICK_MS} to 1000 (got ${String(o.tickMs)})`);
    }
    if (o.packetSize === undefined) throw new InvalidArgumentError('StreamScheduler: packetSize is required (e.g. 1316 for MPEG-TS, 1472 for a 1500-byte MTU)');
    // The write options through the segment schema: the same checks and messages as sluice.write.
    const spec = parseSegment({
      entries: [{ to: 'udp://127.0.0.1:9', data: new Uint8Array(0) }],
      packetSize: o.packetSize,
      ...(o.burst !== undefined ? { burst: o.burst } : {}),
      ...(o.gso !== undefined ? { gso: o.gso } : {}),
      ...(o.zeroCopy !== undefined ? { zeroCopy: o.zeroCopy } : {}),
      ...(o.from !== undefined ? { from: o.from } : {}),
    });
    this.#write = write;
    this.#packetSize = spec.packetSize;
    this.#writeOptions = {
      packetSize: spec.packetSize,
      burst: spec.burst,
      ...(o.gso !== undefined ? { gso: o.gso } : {}),
      ...(o.zeroCopy !== undefined ? { zeroCopy: o.zeroCopy } : {}),
      ...(spec.from !== undefined ? { from: formatEndpoint(spec.from) } : {}),
    };
    this.#tickOverride = o.tickMs;
    this.#grid = new TickGrid(o.tickMs ?? streamTickMs(0, spec.packetSize), () => {
      if (this.#closed) return false;
      this.#tick();
      return !this.#closed && this.#ratePaced !== 0;
    });
  }

  /** The tick in force, ms. */
  get tickMs(): number {
    return this.#grid.tickMs;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The write error that stopped the scheduler, if one did. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Starts a stream now: its first packet is due one packet time from now
   * (paced by bitrate), or now (paced by its clock). Throws
   * InvalidArgumentError for a bad id, destination, bitrate, pace or data
   * (a clock-paced stream whose data does not give its clock),
   * ConflictError when an unfinished stream has the id, ClosedError after close().
   */
  add(input: StreamInput): StreamHandle {
    if (this.#closed) throw new ClosedError('StreamScheduler');
    if (typeof input !== 'object' || input === null) throw new InvalidArgumentError('stream: expected { id, to, bitrate, data }');
    const { id, bitrate, data } = input;
    const pace = input.pace ?? 'bitrate';
    if (typeof id !== 'string' || id.length < 1 || id.length > 64) throw new InvalidArgumentError('stream id: expected a string of 1 to 64 characters');
    if (this.#streams.has(id)) throw new ConflictError(`stream '${id}' is already running`);
    if (!STREAM_PACES.includes(pace)) throw new InvalidArgumentError(`stream '${id}': pace must be one of ${STREAM_PACES.join(', ')} (got ${String(pace)})`);
    if ((pace === 'bitrate' || bitrate !== undefined) && (typeof bitrate !== 'number' || !Number.isFinite(bitrate) || bitrate <= 0)) {
      throw new InvalidArgumentError(`stream '${id}': bitrate must be a positive number of bits per second (got ${String(bitrate)})`);
    }
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(`stream '${id}': data must be a Uint8Array (or Buffer)`);
    if (input.loop && data.byteLength === 0) throw new InvalidArgumentError(`stream '${id}': a looping stream needs data`);
    const to = typeof input.to === 'string' || (typeof input.to === 'object' && input.to !== null) ? parseEndpointInput(input.to) : undefined;
    if (!to?.ok) throw new InvalidArgumentError(`stream '${id}': to: ${to ? to.reason : 'expected udp://host:port or { host, port }'}`);
    const s = new Stream(this, input, formatEndpoint(to.endpoint), this.#packetSize);
    this.#streams.set(id, s);
    if (data.byteLength === 0) {
      // Nothing to send: finished at once (after add returns, so 'end' listeners can be attached).
      s.ending = 'finished';
      queueMicrotask(() => this.#end(s, 'finished'));
      return s;
    }
    this.#running++;
    if (!s.clockPaced) {
      this.#rate += s.bitrate;
      this.#ratePaced++;
    }
    this.#retime();
    this.#armDue();
    return s;
  }

  /** The unfinished stream called `id`. */
  stream(id: string): StreamHandle | undefined {
    return this.#streams.get(id);
  }

  /** Stops stream `id` (see StreamHandle.remove). False when no unfinished stream has that id. */
  remove(id: string, which?: StreamHandle): boolean {
    const s = this.#streams.get(id);
    if (!s || (which && s !== which)) return false;
    // A stream whose data is all handed over stays 'finished'.
    if (s.ending === undefined) this.#stopTaking(s, 'removed');
    if (!s.inFlight) this.#end(s, s.ending!);
    return true;
  }

  /** Counters of every unfinished stream. */
  streams(): StreamStats[] {
    return [...this.#streams.values()].map((s) => s.stats());
  }

  stats(): SchedulerStats {
    return {
      tickMs: this.#grid.tickMs,
      streams: this.#streams.size,
      ticks: this.#ticks,
      writes: this.#writes,
      overruns: this.#overruns,
      packets: this.#packets,
      bytes: this.#bytes,
      errors: this.#errors,
      writeMs: this.#writeMs.percentiles(),
    };
  }

  /**
   * Stops ticking, waits for the write in flight, ends the remaining
   * streams as 'closed' and resolves with the final counters. Idempotent.
   */
  close(): Promise<SchedulerStats> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#grid.stop();
      this.#due.stop();
      await this.#inFlight;
      // Nothing is in flight now: what is left was still running.
      for (const s of [...this.#streams.values()]) this.#end(s, s.ending ?? 'closed');
      return this.stats();
    })();
    return this.#closing;
  }

  /** The stream takes no more data; the tick follows the remaining rate. */
  #stopTaking(s: Stream, why: 'finished' | 'removed'): void {
    s.ending = why;
    this.#untake(s);
    this.#retime();
  }

  #end(s: Stream, status: Exclude<StreamStatus, 'running'>): void {
    if (s.status !== 'running') return;
    if (s.ending === undefined) this.#untake(s);
    s.ending = status;
    s.status = status;
    s.endedAt = performance.now();
    if (this.#streams.get(s.id) === s) this.#streams.delete(s.id);
    const final = s.stats();
    s.resolveDone(final);
    this.emit('end', final);
    if (this.#running === 0) {
      this.#grid.stop();
      this.#due.stop();
    }
  }

  /** A stream stops taking data: out of the counts (and the tick rule, if paced by bitrate). */
  #untake(s: Stream): void {
    this.#running--;
    if (!s.clockPaced) {
      this.#rate -= s.bitrate;
      this.#ratePaced--;
      if (this.#ratePaced === 0) this.#rate = 0; // no float residue
    }
  }

  /** Wakes at the earliest due time of the clock-paced streams (none while a write is in flight: its end re-arms). */
  #armDue(): void {
    if (this.#closed || this.#inFlight) return;
    let at = Infinity;
    for (const s of this.#streams.values()) {
      if (s.ending !== undefined || !s.clockPaced) continue;
      const due = s.nextDueAt();
      if (due !== undefined && due < at) at = due;
    }
    if (at !== Infinity) this.#due.wakeAt(at);
  }

  /** Recomputes the tick (the rule over the streams still taking data, or the override) and retimes the grid. */
  #retime(): void {
    if (this.#closed) return;
    if (this.#ratePaced === 0) {
      this.#grid.stop();
      return;
    }
    this.#grid.retime(this.#tickOverride ?? streamTickMs(this.#rate, this.#packetSize));
  }

  #tick(): void {
    this.#ticks++;
    if (this.#inFlight) {
      this.#overruns++;
      return;
    }
    const now = performance.now();
    const entries: StreamWriteEntry[] = [];
    const owners: Stream[] = [];
    let budget = MAX_BATCH_BYTES;
    const finished: Stream[] = [];
    const views: Uint8Array[] = [];
    for (const s of this.#streams.values()) {
      if (s.ending !== undefined) continue;
      views.length = 0;
      budget -= s.takeInto(now, this.#packetSize, budget, views, MAX_SUBSCRIBERS - entries.length);
      for (const view of views) {
        entries.push({ to: s.to, data: view });
        owners.push(s);
      }
      if (s.exhausted) finished.push(s);
      if (entries.length >= MAX_SUBSCRIBERS || budget < this.#packetSize) break;
    }
    for (const s of finished) this.#stopTaking(s, 'finished');
    if (entries.length === 0) return this.#armDue();
    for (const s of owners) s.inFlight = true;
    this.#writes++;
    const t0 = performance.now();
    let p: Promise<WriteResult>;
    try {
      p = Promise.resolve(this.#write(entries, { ...this.#writeOptions }));
    } catch (err) {
      p = Promise.reject(err);
    }
    this.#inFlight = p.then(
      (r) => {
        this.#settle(entries, owners, r, t0);
        this.#armDue();
      },
      (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err)), owners),
    );
  }

  #settle(entries: StreamWriteEntry[], owners: Stream[], r: WriteResult, t0: number): void {
    this.#writeMs.record(performance.now() - t0);
    this.#inFlight = undefined;
    const reported = Array.isArray(r?.destinations) && r.destinations.length === entries.length;
    for (let i = 0; i < owners.length; i++) {
      const s = owners[i]!;
      const d = reported ? r.destinations[i]! : undefined;
      // A write function that does not report per entry: its entries count as sent.
      const packets = d ? d.packets : Math.ceil(entries[i]!.data.byteLength / this.#packetSize);
      const bytes = d ? d.bytes : entries[i]!.data.byteLength;
      const errors = d ? d.errors : 0;
      s.packets += packets;
      s.bytes += bytes;
      s.errors += errors;
      if (d?.lastError) s.lastError = d.lastError;
      this.#packets += packets;
      this.#bytes += bytes;
      this.#errors += errors;
      s.inFlight = false;
      if (s.ending !== undefined) this.#end(s, s.ending);
    }
  }

  #fail(err: Error, owners: Stream[]): void {
    this.#inFlight = undefined;
    for (const s of owners) s.inFlight = false;
    if (this.#error) return;
    this.#error = err;
    this.#closed = true;
    this.#grid.stop();
    this.#due.stop();
    // Every unfinished stream was running or had data in this write.
    for (const s of [...this.#streams.values()]) {
      s.error = err.message;
      this.#end(s, 'failed');
    }
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
