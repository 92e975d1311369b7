/**
 * Waiting on a CLI child's output in the tests of test/cli: a line on
 * stderr or stdout matching a pattern, or a JSON event passing a check.
 * Every wait is bounded (the deadline only catches a hang: a cold tsx
 * start took > 15 s at load 19), and says what it saw when it gives up.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';

/** The local-time prefix of every human log and periodic line: `2026-12-03 16:30:05.123 `. */
export const TIMESTAMP = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}`;

/** Resolves with the first match of `pattern` in everything `stream` has written so far. */
export function waitForOutput(
  child: ChildProcessWithoutNullStreams,
  stream: 'stdout' | 'stderr',
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d;
      const m = pattern.exec(seen);
      if (!m) return;
      done();
      resolve(m);
    };
    const onClose = () => {
      done();
      reject(new Error(`exited before ${stream} matched ${pattern}; ${stream} so far:\n${seen}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms; ${stream} so far:\n${seen}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      child[stream].off('data', onData);
      child.off('close', onClose);
    };
    child[stream].on('data', onData);
    child.once('close', onClose);
  });
}

/** Resolves with the first stdout JSON line with `event` that passes `check`. */
export function waitForJson<T extends Record<string, unknown>>(
  child: ChildProcessWithoutNullStreams,
  event: string,
  check: (e: T) => boolean = () => true,
  timeoutMs = 60_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        let e: T;
        try {
          e = JSON.parse(line) as T;
        } catch {
          continue;
        }
        if (e.event === event && check(e)) {
          done();
          resolve(e);
          return;
        }
      }
    };
    const onClose = () => {
      done();
      reject(new Error(`exited before a matching '${event}' event`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no matching '${event}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('close', onClose);
    };
    child.stdout.on('data', onData);
    child.once('close', onClose);
  });
}

/** Every stdout line that parses as JSON. */
export function jsonLines<T = Record<string, unknown>>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}
