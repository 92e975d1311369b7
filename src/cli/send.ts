/**
 * `sluice send` and `sluice write`: one-shot sends from the shell.
 *
 * An aggregate file is JSON: the aggregate of docs/POLICY.md, with each
 * message's payload given as exactly one of `text` (UTF-8), `hex`,
 * `base64` or `file` (a regular file in the JSON file's folder, the path
 * relative to it; --allow-any-file lifts the folder rule):
 *
 *   { "schedule": { "kind": "sequence", "sequence": [2, 1], "tickMs": 5 },
 *     "messages": [ { "to": "udp://127.0.0.1:6000", "text": "second", "stream": "v1" },
 *                   { "to": "udp://127.0.0.1:6001", "hex": "0102ff" } ] }
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { Sender, type AggregateInput } from '../control/sender.js';
import { PolicyValidationError } from '../errors.js';
import { MAX_AGGREGATE_MESSAGES, MAX_BATCH_BYTES, type TierChoice } from '../policy/schema.js';
import { MAX_UDP_PAYLOAD } from '../wire/udp.js';
import { FileRefusedError, readRegularFile } from '../fs/regular-file.js';
import { parseAggregateForSend } from '../policy/validate.js';
import { nestingProblem } from '../policy/config.js';
import { readInputText } from './input.js';
import { EXIT, emitJson, table } from './output.js';
import type { AggregateResult, WriteResult } from '../sender/results.js';
import type { SchedulerStats, StreamScheduler, StreamStats } from '../sender/stream-scheduler.js';

interface Issue {
  path: string;
  message: string;
}

export interface AggregateFileOptions {
  /**
   * Let `file` payloads name any regular file: absolute paths, and paths
   * that lead out of the JSON file's folder (`..`, symbolic links). Off by
   * default: whoever wrote the JSON could otherwise send any file the
   * user can read (a private key) over UDP.
   */
  readonly allowAnyFile?: boolean;
}

/**
 * Turns the JSON document into an aggregate: payload fields become bytes.
 * `file` payloads are regular files (a FIFO or device is refused, never
 * read), each at most one UDP payload, the aggregate's total bounded before
 * each read; their paths are relative to `baseDir` (the JSON file's folder)
 * and confined to it unless `allowAnyFile`.
 */
export async function aggregateFromJson(text: string, baseDir: string, opts: AggregateFileOptions = {}): Promise<AggregateInput> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new PolicyValidationError([{ path: '', message: `not JSON: ${(err as Error).message}` }], 'invalid aggregate');
  }
  // JSON.parse does not recurse, but everything after it (the schema) does.
  const deep = nestingProblem(doc);
  if (deep) throw new PolicyValidationError([{ path: '', message: deep }], 'invalid aggregate');
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { messages?: unknown }).messages)) {
    throw new PolicyValidationError([{ path: 'messages', message: 'expected an array of messages' }], 'invalid aggregate');
  }
  const input = (doc as { messages: unknown[] }).messages;
  // Before any file is read: the schema would refuse this many anyway.
  if (input.length > MAX_AGGREGATE_MESSAGES) {
    throw new PolicyValidationError(
      [{ path: 'messages', message: `${input.length} messages; an aggregate carries at most ${MAX_AGGREGATE_MESSAGES}` }],
      'invalid aggregate',
    );
  }
  const issues: Issue[] = [];
  let total = 0;
  const messages: unknown[] = new Array(input.length);
  // One message at a time: files are read only while the total stays within bounds.
  for (let i = 0; i < input.length; i++) {
    const m = input[i];
    messages[i] = payloadOf(m, i);
    const data = (messages[i] as { data?: unknown } | null)?.data;
    if (data instanceof Uint8Array) total += data.byteLength;
    if (issues.length >= 100) break;
  }
  if (issues.length) throw new PolicyValidationError(issues, 'invalid aggregate');
  return { ...(doc as object), messages } as AggregateInput;

  function payloadOf(m: unknown, i: number): unknown {
    if (typeof m !== 'object' || m === null) {
      issues.push({ path: `messages[${i}]`, message: 'expected an object' });
      return m;
    }
    const { text: t, hex, base64, file, ...rest } = m as Record<string, unknown>;
    const given = [t, hex, base64, file].filter((x) => x !== undefined);
    if (given.length !== 1) {
      issues.push({ path: `messages[${i}]`, message: 'give the payload as exactly one of text, hex, base64 or file' });
      return rest;
    }
    if (typeof given[0] !== 'string') {
      issues.push({ path: `messages[${i}]`, message: 'the payload field must be a string' });
      return rest;
    }
    if (t !== undefined) return { ...rest, data: Buffer.from(t as string, 'utf8') };
    if (hex !== undefined) {
      if (!/^([0-9a-fA-F]{2})*$/.test(hex as string)) issues.push({ path: `messages[${i}].hex`, message: 'not an even number of hex digits' });
      return { ...rest, data: Buffer.from(hex as string, 'hex') };
    }
    if (base64 !== undefined) return { ...rest, data: Buffer.from(base64 as string, 'base64') };
    const name = file as string;
    const path = `messages[${i}].file`;
    if (!opts.allowAnyFile && isAbsolute(name)) {
      issues.push({ path, message: `${name}: absolute paths are refused; name a file in the JSON file's folder (or pass --allow-any-file)` });
      return rest;
    }
    const room = MAX_BATCH_BYTES - total;
    try {
      const { data } = readRegularFile(resolve(baseDir, name), {
        maxBytes: Math.min(MAX_UDP_PAYLOAD, room),
        ...(opts.allowAnyFile ? {} : { within: baseDir }),
      });
      return { ...rest, data };
    } catch (err) {
      if (!(err instanceof FileRefusedError)) throw err;
      let why = err.reason;
      if (/^resolves to .* outside /.test(why)) why += " (files must be in the JSON file's folder; pass --allow-any-file to lift this)";
      else if (/more than the limit|grew past the limit/.test(why)) {
        why +=
          room < MAX_UDP_PAYLOAD ? ` (the aggregate may carry ${MAX_BATCH_BYTES} bytes in all; ${room} are left)` : ' (a message is at most one UDP payload)';
      }
      issues.push({ path, message: `cannot read ${name}: ${why}` });
      return rest;
    }
  }
}

/** `batched engine` or, when the tier has no engine of its own, `batched engine (tier kernel)`: output names what ran. */
function engineText(r: { engine: string; tier: string }): string {
  return r.engine === r.tier ? `${r.engine} engine` : `${r.engine} engine (tier ${r.tier})`;
}

/**
 * Largest aggregate JSON file, bytes: room for the 64 MiB an aggregate may
 * carry written as hex (twice its size), and the messages around it.
 */
export const MAX_AGGREGATE_JSON_BYTES = 2 * MAX_BATCH_BYTES + 32 * 1024 * 1024;

export async function runSendAggregate(opts: { file: string; tier: TierChoice; json: boolean; allowAnyFile?: boolean }): Promise<number> {
  const what = `invalid aggregate ${opts.file}`;
  const text = readInputText(opts.file, MAX_AGGREGATE_JSON_BYTES, what);
  let aggregate: AggregateInput;
  try {
    aggregate = await aggregateFromJson(text, dirname(resolve(opts.file)), { allowAnyFile: !!opts.allowAnyFile });
    // Validated here too, so that errors name the file and come before any socket opens.
    parseAggregateForSend(aggregate);
  } catch (err) {
    if (err instanceof PolicyValidationError) throw new PolicyValidationError(err.issues, what);
    throw err;
  }
  // A Sender, not a Sluice: sending needs no data plane (no eBPF loaded for --tier kernel).
  const sender = await Sender.open({ tier: opts.tier });
  let r: AggregateResult;
  try {
    r = await sender.sendAggregate(aggregate);
  } finally {
    await sender.close();
  }
  if (opts.json) emitJson('aggregate', { ...r });
  else {
    const f = (v: number) => v.toFixed(2);
    process.stdout.write(
      `${table(
        ['#', 'to', 'stream', 'status', 'due ms', 'sent ms', 'late ms'],
        r.messages.map((m) => [
          String(m.index),
          m.to,
          m.stream ?? '',
          m.reason ? `${m.status} (${m.reason})` : m.status,
          f(m.dueMs),
          f(m.sentAtMs),
          f(m.lateMs),
        ]),
      )}\n`,
    );
    process.stdout.write(
      `${engineText(r)}: ${r.sent} sent, ${r.late} late, ${r.dropped} dropped in ${f(r.elapsedMs)} ms; lateness p50 ${f(r.lateness.p50)} / p99 ${f(r.lateness.p99)} / max ${f(r.lateness.max)} ms${r.sendCalls !== undefined ? `; ${r.sendCalls} send call(s)` : ''}\n`,
    );
  }
  return r.dropped === 0 ? EXIT.OK : EXIT.FAILURE;
}

export async function runWrite(opts: {
  file: string;
  to: string[];
  packetSize: number;
  burst: number;
  bitrate?: number;
  tier: TierChoice;
  json: boolean;
}): Promise<number> {
  const data = readWriteFile(opts.file, opts.to.length, opts.bitrate !== undefined);
  if (opts.bitrate !== undefined) return writeAtBitrate(data, { ...opts, bitrate: opts.bitrate });
  const sender = await Sender.open({ tier: opts.tier });
  let r: WriteResult;
  try {
    // Every destination gets the same bytes: one buffer, no copies.
    r = await sender.write(
      opts.to.map((to) => ({ to, data })),
      { packetSize: opts.packetSize, burst: opts.burst },
    );
  } finally {
    await sender.close();
  }
  if (opts.json) emitJson('write', { ...r });
  else {
    process.stdout.write(
      `${table(
        ['to', 'packets', 'bytes', 'errors'],
        r.destinations.map((d) => [d.to, String(d.packets), String(d.bytes), d.lastError ? `${d.errors} (${d.lastError})` : String(d.errors)]),
      )}\n`,
    );
    process.stdout.write(`${engineText(r)}: ${r.sent} of ${r.packets} packets, ${r.bytes} bytes in ${r.elapsedMs.toFixed(1)} ms\n`);
  }
  return r.errors === 0 ? EXIT.OK : EXIT.FAILURE;
}

/** Largest file `sluice write --bitrate` streams (it is held in memory whole). */
export const MAX_STREAM_FILE_BYTES = 1024 * 1024 * 1024;

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

/**
 * `sluice write --bitrate`: every destination gets the whole file as its
 * own stream at the bitrate, all paced by one stream scheduler (one write
 * per tick carrying every destination's due packets); reports each
 * destination's counters, lateness and achieved rate once all are done.
 */
async function writeAtBitrate(
  data: Buffer,
  opts: { to: string[]; packetSize: number; burst: number; bitrate: number; tier: TierChoice; json: boolean },
): Promise<number> {
  if (opts.to.length === 0) throw new PolicyValidationError([{ path: '--to', message: 'give at least one destination' }], 'invalid write');
  const sender = await Sender.open({ tier: opts.tier });
  const { engine, tier } = sender;
  let finals: StreamStats[];
  let sched: StreamScheduler;
  let totals: SchedulerStats;
  let t0 = performance.now();
  try {
    // An empty write first (no packet): it starts the batched engine's send
    // worker, so that its start-up does not make the streams' first ticks late.
    if (engine === 'batched') await sender.write([{ to: opts.to[0]!, data: new Uint8Array(0) }]).catch(() => undefined);
    t0 = performance.now();
    sched = sender.streams({ packetSize: opts.packetSize, burst: opts.burst });
    try {
      const handles = opts.to.map((to, i) => {
        try {
          return sched.add({ id: String(i + 1), to, bitrate: opts.bitrate, data });
        } catch (err) {
          if ((err as { code?: unknown }).code !== 'SLUICE_ERR_INVALID_ARGUMENT') throw err;
          throw new PolicyValidationError(
            [{ path: '--to', message: `${to}: ${(err as Error).message.replace(/^stream '[^']*': to: /, '')}` }],
            'invalid write',
          );
        }
      });
      finals = await Promise.all(handles.map((h) => h.done));
    } finally {
      totals = await sched.close();
    }
    if (sched.error) throw sched.error;
  } finally {
    await sender.close();
  }
  const elapsedMs = performance.now() - t0;
  const packets = opts.to.length * Math.ceil(data.byteLength / opts.packetSize);
  const sent = finals.reduce((n, s) => n + s.packets, 0);
  const bytes = finals.reduce((n, s) => n + s.bytes, 0);
  const errors = finals.reduce((n, s) => n + s.errors, 0);
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
      bitrate: opts.bitrate,
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
      `${engineText({ engine, tier })}: ${sent} of ${packets} packets, ${bytes} bytes in ${elapsedMs.toFixed(1)} ms; ${finals.length} stream(s) at ${formatRate(opts.bitrate)}bit/s, achieved ${formatRate(achievedBitrate)}bit/s per destination; ${totals.ticks} ticks of ${f(totals.tickMs)} ms, ${totals.writes} writes, ${totals.overruns} overruns\n`,
    );
  }
  return errors === 0 ? EXIT.OK : EXIT.FAILURE;
}
