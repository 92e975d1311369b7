/**
 * `sluice send`: an aggregate from a JSON file (`sluice write` is write.ts).
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
import { EXIT, emitJson, engineText, table } from './output.js';
import type { AggregateResult } from '../sender/results.js';
import type { SendableAggregate } from '../policy/schema.js';
import { SlicedSend, wantsSlicing } from './aggregate-slices.js';
import { Progress } from './progress.js';
import { listenForStop } from './signals.js';

// main.ts imports both one-shot sends from here.
export { runWrite } from './write.js';

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

/**
 * Largest aggregate JSON file, bytes: room for the 64 MiB an aggregate may
 * carry written as hex (twice its size), and the messages around it.
 */
export const MAX_AGGREGATE_JSON_BYTES = 2 * MAX_BATCH_BYTES + 32 * 1024 * 1024;

export async function runSendAggregate(opts: {
  file: string;
  tier: TierChoice;
  json: boolean;
  allowAnyFile?: boolean;
  /** Seconds between progress lines off a terminal, or JSON progress events (default: progress.ts). */
  progressIntervalS?: number;
}): Promise<number> {
  const what = `invalid aggregate ${opts.file}`;
  const text = readInputText(opts.file, MAX_AGGREGATE_JSON_BYTES, what);
  let aggregate: AggregateInput;
  let spec: SendableAggregate;
  try {
    aggregate = await aggregateFromJson(text, dirname(resolve(opts.file)), { allowAnyFile: !!opts.allowAnyFile });
    // Validated here too, so that errors name the file and come before any socket opens.
    spec = parseAggregateForSend(aggregate);
  } catch (err) {
    if (err instanceof PolicyValidationError) throw new PolicyValidationError(err.issues, what);
    throw err;
  }
  // A Sender, not a Sluice: sending needs no data plane (no eBPF loaded for --tier kernel).
  const sender = await Sender.open({ tier: opts.tier });
  // A stop signal ends a long send early (aggregate-slices.ts); a short one just finishes.
  const stop = listenForStop();
  let r: AggregateResult;
  let notSent = 0;
  try {
    if (wantsSlicing(spec)) {
      const sliced = new SlicedSend(sender, aggregate, spec);
      const total = spec.messages.length;
      const totalBytes = spec.messages.reduce((n, m) => n + m.data.byteLength, 0);
      const progress = new Progress({
        label: 'sluice send',
        json: opts.json,
        ...(opts.progressIntervalS !== undefined ? { intervalS: opts.progressIntervalS } : {}),
        read: () => {
          const p = sliced.progress();
          return { unit: 'messages', sent: p.done, total, bytes: p.bytes, totalBytes, etaMs: p.etaMs };
        },
      });
      try {
        ({ result: r, notSent } = await sliced.run(stop));
      } finally {
        progress.stop();
      }
    } else r = await sender.sendAggregate(aggregate);
  } finally {
    stop.dispose();
    await sender.close();
  }
  const interrupted = notSent > 0 ? stop.received : undefined;
  if (opts.json) {
    emitJson('aggregate', { ...r, ...(interrupted ? { interrupted, notSent } : {}) });
    return r.dropped === 0 ? EXIT.OK : EXIT.FAILURE;
  }
  const f = (v: number) => v.toFixed(2);
  process.stdout.write(
    `${table(
      ['#', 'to', 'stream', 'status', 'due ms', 'sent ms', 'late ms'],
      r.messages.map((m) => [String(m.index), m.to, m.stream ?? '', m.reason ? `${m.status} (${m.reason})` : m.status, f(m.dueMs), f(m.sentAtMs), f(m.lateMs)]),
    )}\n`,
  );
  process.stdout.write(
    `${engineText(r)}: ${r.sent} sent, ${r.late} late, ${r.dropped} dropped in ${f(r.elapsedMs)} ms; lateness p50 ${f(r.lateness.p50)} / p99 ${f(r.lateness.p99)} / max ${f(r.lateness.max)} ms${r.sendCalls !== undefined ? `; ${r.sendCalls} send call(s)` : ''}\n`,
  );
  if (interrupted) {
    const total = r.sent + r.dropped + notSent;
    process.stdout.write(`interrupted by ${interrupted}: ${r.sent} of ${total} messages sent, ${r.dropped} dropped, ${notSent} not sent\n`);
  }
  return r.dropped === 0 ? EXIT.OK : EXIT.FAILURE;
}
