/**
 * A child process running inside a test namespace, its output kept as
 * lines, and the registry of such children still alive (netns.ts kills
 * them on cleanup, before it deletes their namespaces).
 */
import type { ChildProcess } from 'node:child_process';

/** How long to wait for stdout/stderr to close after the child exited. */
const CLOSE_GRACE_MS = 500;

/** Children spawned into namespaces that have not exited yet. */
export const liveChildren = new Set<ChildProcess>();

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitForLineOptions {
  /** Milliseconds; default 10 000. */
  timeoutMs?: number;
  /** Which stream(s) to search; default both. */
  stream?: 'stdout' | 'stderr' | 'both';
}

/**
 * A child process running inside a namespace, with its output kept as
 * lines so a wait can match output that arrived before the wait started.
 */
export class NsProcess {
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];
  /** Resolves once the process exited and its output was collected. */
  readonly exited: Promise<ExitInfo>;
  /** Resolves on the process's own exit, output possibly still in flight. */
  readonly processExited: Promise<ExitInfo>;
  #exitInfo: ExitInfo | undefined;
  readonly #lineListeners = new Set<(line: string, stream: 'stdout' | 'stderr') => void>();

  constructor(
    readonly child: ChildProcess,
    readonly ns: string,
    readonly description: string,
  ) {
    liveChildren.add(child);
    this.processExited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        this.#exitInfo = { code, signal };
        resolve(this.#exitInfo);
      });
      child.once('error', (err) => {
        liveChildren.delete(child);
        this.stderrLines.push(`spawn error: ${err.message}`);
        this.#exitInfo = { code: null, signal: null };
        resolve(this.#exitInfo);
      });
    });
    // Prefer 'close' so every byte of output is in the line arrays when a
    // caller awaits `exited`. But a grandchild (e.g. `sleep` under `sh -c`)
    // inherits the pipes and can hold them open long after our child died,
    // so stop waiting for 'close' shortly after 'exit'.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    this.exited = this.processExited.then(async (info) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      child.stdout?.destroy();
      child.stderr?.destroy();
      return info;
    });
    // Writing to a child that died fails with EPIPE; its exit is reported
    // through `exited`, so the stream error itself must not crash us.
    child.stdin?.on('error', () => undefined);
    this.#collect(child.stdout, this.stdoutLines, 'stdout');
    this.#collect(child.stderr, this.stderrLines, 'stderr');
  }

  #collect(stream: NodeJS.ReadableStream | null, into: string[], name: 'stdout' | 'stderr'): void {
    if (!stream) return;
    let partial = '';
    stream.setEncoding('utf8');
    const emit = (line: string): void => {
      into.push(line);
      for (const l of this.#lineListeners) l(line, name);
    };
    stream.on('data', (chunk: string) => {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        emit(partial.slice(0, nl).replace(/\r$/, ''));
        partial = partial.slice(nl + 1);
      }
    });
    stream.on('end', () => {
      if (partial) emit(partial);
      partial = '';
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Exit status once exited, else undefined. */
  get exitStatus(): ExitInfo | undefined {
    return this.#exitInfo;
  }

  stdout(): string {
    return this.stdoutLines.join('\n');
  }

  stderr(): string {
    return this.stderrLines.join('\n');
  }

  /** Every stdout line that parses as a JSON object. */
  jsonLines<T = Record<string, unknown>>(): T[] {
    const out: T[] = [];
    for (const line of this.stdoutLines) {
      const t = line.trim();
      if (!t.startsWith('{')) continue;
      try {
        out.push(JSON.parse(t) as T);
      } catch {
        /* not JSON after all */
      }
    }
    return out;
  }

  /**
   * Resolve with the first line (already seen or future) matching `re`;
   * reject on timeout or if the process exits first. The error carries the
   * process's stderr, which is usually the explanation.
   */
  waitForLine(re: RegExp, opts: WaitForLineOptions = {}): Promise<string> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const which = opts.stream ?? 'both';
    const wanted = (s: 'stdout' | 'stderr'): boolean => which === 'both' || which === s;
    const test = (line: string): boolean => {
      re.lastIndex = 0; // a /g or /y regexp is stateful
      return re.test(line);
    };
    const seen = [...(wanted('stdout') ? this.stdoutLines : []), ...(wanted('stderr') ? this.stderrLines : [])].find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return this.#futureLine((line, stream) => wanted(stream) && test(line), String(re), timeoutMs);
  }

  /**
   * Resolve with the next stdout line printed after this call (for a
   * request/reply protocol over stdin: call this, then writeLine()); reject
   * on timeout or if the process exits first.
   */
  nextLine(opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.#futureLine((_, stream) => stream === 'stdout', 'a line', opts.timeoutMs ?? 10_000);
  }

  /** Write one line to the child's stdin (spawned with `stdin: 'pipe'`). */
  writeLine(line: string): void {
    const stdin = this.child.stdin;
    if (!stdin) throw new Error(`${this.description}: stdin is not a pipe (spawn with { stdin: 'pipe' })`);
    if (this.#exitInfo) throw new Error(`${this.description} has exited (code ${this.#exitInfo.code}, signal ${this.#exitInfo.signal})${this.#tail()}`);
    stdin.write(`${line}\n`);
  }

  /** Close the child's stdin (end of input), if it is a pipe. */
  endInput(): void {
    this.child.stdin?.end();
  }

  #futureLine(match: (line: string, stream: 'stdout' | 'stderr') => boolean, what: string, timeoutMs: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#lineListeners.delete(listener);
      };
      const listener = (line: string, stream: 'stdout' | 'stderr'): void => {
        if (match(line, stream)) {
          done();
          resolve(line);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from ${this.description}${this.#tail()}`));
      }, timeoutMs);
      this.#lineListeners.add(listener);
      void this.exited.then((info) => {
        if (!this.#lineListeners.has(listener)) return;
        done();
        reject(new Error(`${this.description} exited (code ${info.code}, signal ${info.signal}) before printing ${what}${this.#tail()}`));
      });
    });
  }

  /** Wait for exit, rejecting after `timeoutMs` (the process is left running). */
  async waitExit(timeoutMs = 10_000): Promise<ExitInfo> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.description} did not exit within ${timeoutMs} ms${this.#tail()}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Send a signal if still running. */
  signal(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.#exitInfo === undefined) this.child.kill(sig);
  }

  /**
   * SIGTERM, then SIGKILL if not gone after `graceMs`; resolves on exit
   * (output collected, see `exited`).
   */
  async stop(graceMs = 3_000): Promise<ExitInfo> {
    await this.terminate(graceMs);
    return this.exited;
  }

  /** SIGTERM, SIGKILL after `graceMs`; resolves when the process itself exited. */
  async terminate(graceMs = 3_000): Promise<ExitInfo> {
    if (this.#exitInfo) return this.#exitInfo;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.processExited;
    } finally {
      clearTimeout(timer);
    }
  }

  #tail(): string {
    const err = this.stderrLines.slice(-20).join('\n');
    const out = this.stdoutLines.slice(-10).join('\n');
    return `${err ? `\n--- stderr (tail) ---\n${err}` : ''}${out ? `\n--- stdout (tail) ---\n${out}` : ''}`;
  }
}

/**
 * Free-standing variant for callers holding an NsProcess; kept as a function
 * so tests read `await waitForLine(proc, /ready/)`.
 */
export function waitForLine(proc: NsProcess, re: RegExp, opts?: WaitForLineOptions): Promise<string> {
  return proc.waitForLine(re, opts);
}
