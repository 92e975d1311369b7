/**
 * The soak's child processes: real `sluice` CLI processes (bin/sluice.js,
 * what operators run), their output, their exit, and their memory over
 * time (VmRSS from /proc, threads included: a relay's batched worker is a
 * thread of its process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SLUICE_BIN = join(REPO_ROOT, 'bin/sluice.js');

export interface RssSample {
  /** Seconds since the soak started. */
  readonly t: number;
  readonly kb: number;
}

export interface ExitRecord {
  readonly code: number | null;
  readonly signal: string | null;
  /** Seconds since the soak started. */
  readonly at: number;
  /** We asked it to stop (SIGTERM at the end); otherwise it is a crash. */
  readonly expected: boolean;
  /** It did not stop within the grace period after SIGTERM and was killed. */
  readonly killed: boolean;
}

/** VmRSS of `pid` in kB, or undefined when the process is gone. */
export function rssKb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export class SoakProcess {
  readonly rss: RssSample[] = [];
  readonly stderrTail: string[] = [];
  exit: ExitRecord | undefined;
  #stopping = false;
  #killed = false;
  #stdoutBuf = '';
  readonly #lineListeners = new Set<(line: string) => void>();
  readonly exited: Promise<ExitRecord>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly t0: number,
  ) {
    child.stdout!.on('data', (d: Buffer) => {
      this.#stdoutBuf += d.toString();
      let nl: number;
      while ((nl = this.#stdoutBuf.indexOf('\n')) >= 0) {
        const line = this.#stdoutBuf.slice(0, nl);
        this.#stdoutBuf = this.#stdoutBuf.slice(nl + 1);
        for (const l of this.#lineListeners) l(line);
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (line) this.stderrTail.push(line);
      if (this.stderrTail.length > 200) this.stderrTail.splice(0, this.stderrTail.length - 200);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal, at: (performance.now() - this.t0) / 1000, expected: this.#stopping, killed: this.#killed };
        resolve(this.exit);
      });
    });
  }

  /** Starts `sluice ARGS...`. */
  static start(name: string, args: readonly string[], t0: number): SoakProcess {
    const child = spawn(process.execPath, [SLUICE_BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    return new SoakProcess(name, child, t0);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return !this.exit;
  }

  onLine(f: (line: string) => void): void {
    this.#lineListeners.add(f);
  }

  /** The next JSON line with `event`, or a rejection after `timeoutMs` (or when the process exits). */
  waitForEvent(event: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`${this.name}: no '${event}' within ${timeoutMs} ms: ${this.stderrTail.slice(-10).join(' | ')}`)),
        timeoutMs,
      );
      const listener = (line: string) => {
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          if (o.event === event) done(undefined, o);
        } catch {
          // not JSON
        }
      };
      const done = (err?: Error, value?: Record<string, unknown>) => {
        clearTimeout(timer);
        this.#lineListeners.delete(listener);
        if (err) reject(err);
        else resolve(value!);
      };
      this.#lineListeners.add(listener);
      void this.exited.then((e) => done(new Error(`${this.name} exited (${e.code ?? e.signal}) before '${event}': ${this.stderrTail.slice(-10).join(' | ')}`)));
    });
  }

  sample(): void {
    if (!this.alive) return;
    const kb = rssKb(this.pid);
    if (kb !== undefined) this.rss.push({ t: (performance.now() - this.t0) / 1000, kb });
  }

  /** From now on an exit is one we asked for (the run was interrupted). */
  expectExit(): void {
    this.#stopping = true;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit record. */
  async stop(graceMs: number): Promise<ExitRecord> {
    if (this.exit) return this.exit;
    this.#stopping = true;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.#killed = true;
      this.child.kill('SIGKILL');
    }, graceMs);
    const e = await this.exited;
    clearTimeout(timer);
    return e;
  }
}
