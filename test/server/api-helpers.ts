/**
 * Helpers of the daemon's tests: the service and its HTTP API in this
 * process (startApi), `sluice serve` as a child process (startServe), a
 * fetch wrapper that sends the token, and an event-stream reader.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Writable } from 'node:stream';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { startCli } from '../../harness/process/cli.js';
import { resolveServeConfig } from '../../src/server/config-file.js';
import { silentLogger, createLogger } from '../../src/server/log.js';
import { SluiceService } from '../../src/server/service.js';
import { loadOrCreateToken } from '../../src/server/token.js';
import { startApiServer, type ApiServer } from '../../src/server/http/server.js';
import type { SseOptions } from '../../src/server/http/sse.js';

export interface Api {
  readonly url: string;
  readonly token: string;
  readonly dir: string;
  readonly service: SluiceService;
  readonly server: ApiServer;
  /** A request with the token; body as JSON unless a string (sent as is). */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

export function tempDir(prefix = 'sluice-api-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function caller(url: string, token: string) {
  return async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: the text itself
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };
}

/** The service and API in this process, on the portable tier unless the config says otherwise. */
export async function startApi(
  opts: {
    config?: string;
    rateLimit?: { perSecond: number; burst: number };
    maxBodyBytes?: number;
    sse?: SseOptions;
    dir?: string;
    debug?: boolean;
    /** Where the service's JSON log records go (default: none, or stderr with `debug`). */
    logDestination?: Writable;
  } = {},
): Promise<Api> {
  const dir = opts.dir ?? tempDir();
  const path = join(dir, 'serve.yaml');
  const text = opts.config ?? 'tier: portable\n';
  writeFileSync(path, text);
  const config = resolveServeConfig(`${text}\napi: { listen: "127.0.0.1:0", tokenFile: ./api.token }\n`, path);
  const log = opts.logDestination
    ? createLogger({ level: 'info', pretty: false, destination: opts.logDestination })
    : opts.debug
      ? createLogger({ level: 'debug' })
      : silentLogger();
  const token = loadOrCreateToken(config.api.tokenFile);
  const service = await SluiceService.start({ config, log });
  const server = await startApiServer({
    service,
    token,
    log,
    listen: config.api.listen,
    maxBodyBytes: opts.maxBodyBytes ?? config.api.maxBodyBytes,
    rateLimit: opts.rateLimit ?? { perSecond: 100_000, burst: 100_000 },
    ...(opts.sse ? { sse: opts.sse } : {}),
  });
  return {
    url: server.url,
    token: token.value,
    dir,
    service,
    server,
    call: caller(server.url, token.value),
    async close() {
      await server.close();
      await service.close();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface SseEvent {
  readonly type: string;
  readonly id: string;
  readonly data: any;
}

export interface SseReader {
  readonly events: SseEvent[];
  /** Resolves with the first event (already seen or to come) that matches. */
  waitFor(pred: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  readonly closed: Promise<void>;
  close(): void;
}

/** Reads /v1/events with node:http (no buffering by a client library). */
export function readEvents(url: string, token: string): Promise<SseReader> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/v1/events`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`events: HTTP ${res.statusCode}`));
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      const events: SseEvent[] = [];
      const waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1).trimStart();
          }
          if (!fields.event) continue;
          const e = { type: fields.event, id: fields.id ?? '', data: JSON.parse(fields.data ?? 'null') };
          events.push(e);
          for (const w of waiters.splice(0)) {
            if (w.pred(e)) w.resolve(e);
            else waiters.push(w);
          }
        }
      });
      const closed = new Promise<void>((r) => res.once('close', () => r()));
      resolve({
        events,
        closed,
        close: () => req.destroy(),
        waitFor(pred, timeoutMs = 10_000) {
          const seen = events.find(pred);
          if (seen) return Promise.resolve(seen);
          return new Promise((res2, rej) => {
            const timer = setTimeout(() => rej(new Error(`no matching event in ${timeoutMs} ms; got ${events.map((e) => e.type).join(',')}`)), timeoutMs);
            waiters.push({
              pred,
              resolve: (e) => {
                clearTimeout(timer);
                res2(e);
              },
            });
          });
        },
      });
    });
    req.on('error', reject);
  });
}

export interface Serve {
  readonly child: ChildProcessWithoutNullStreams;
  readonly url: string;
  readonly token: string;
  readonly ready: Record<string, any>;
  stderr(): string;
  /** Log records (JSON lines on stderr) so far. */
  records(): Record<string, any>[];
  /** Resolves with the first log record matching, now or later. */
  waitForLog(pred: (r: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
  call: ReturnType<typeof caller>;
  /** SIGTERM, then the exit code (SIGKILL after 20 s). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `sluice serve --config CONFIG ARGS...` as a child process, once it logged `ready`. */
export async function startServe(config: string, args: string[] = [], tokenFile?: string): Promise<Serve> {
  const child = startCli(['serve', '--config', config, ...args]);
  let stderr = '';
  const records: Record<string, any>[] = [];
  const waiters: { pred: (r: Record<string, any>) => boolean; resolve: (r: Record<string, any>) => void }[] = [];
  let partial = '';
  child.stdout.resume();
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        const r = JSON.parse(line) as Record<string, any>;
        records.push(r);
        for (const w of waiters.splice(0)) {
          if (w.pred(r)) w.resolve(r);
          else waiters.push(w);
        }
      } catch {
        // not a log record
      }
    }
  });
  const waitForLog = (pred: (r: Record<string, any>) => boolean, timeoutMs = 60_000) => {
    const seen = records.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, any>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr.slice(-3000)}`)), timeoutMs);
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`sluice serve exited (${code}); stderr: ${stderr.slice(-3000)}`));
      };
      child.once('exit', onExit);
      waiters.push({
        pred,
        resolve: (r) => {
          clearTimeout(timer);
          child.off('exit', onExit);
          resolve(r);
        },
      });
    });
  };
  let ready: Record<string, any>;
  try {
    ready = await waitForLog((r) => r.msg === 'ready');
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const token = readFileSync(tokenFile ?? ready.tokenFile, 'utf8').trim();
  const url = String(ready.url);
  return {
    child,
    url,
    token,
    ready,
    stderr: () => stderr,
    records: () => records,
    waitForLog,
    call: caller(url, token),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
