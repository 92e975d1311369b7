/** Runs the sluice CLI from source (through tsx) as a child process. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `sluice ARGS...`; the caller owns the child. */
export function startCli(args: string[], opts: { asNobody?: boolean } = {}): ChildProcessWithoutNullStreams {
  const node = [process.execPath, '--import', 'tsx', CLI, ...args];
  // As root every tier may be available; an unprivileged user lacks the kernel tier.
  const argv = opts.asNobody && process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...node] : node;
  return spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: 'pipe' });
}

/** Waits for a child to exit (killing it after `timeoutMs`) and collects its output. */
export function collect(child: ChildProcessWithoutNullStreams, timeoutMs = 30_000): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `sluice ARGS...` to completion. */
export function runCli(args: string[], timeoutMs?: number, opts: { asNobody?: boolean } = {}): Promise<CliResult> {
  return collect(startCli(args, opts), timeoutMs);
}

/** Resolves with the first stdout line that parses as JSON with the given `event`; the deadline only catches a hang (a cold tsx start took > 15 s at load 19). */
export function waitForEvent(child: ChildProcessWithoutNullStreams, event: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no '${event}' event within ${timeoutMs} ms; stdout so far: ${buf}`)), timeoutMs);
    const onData = (d: Buffer) => {
      buf += d;
      for (const line of buf.split('\n')) {
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          if (obj.event === event) {
            clearTimeout(timer);
            child.stdout.off('data', onData);
            resolve(obj);
            return;
          }
        } catch {
          // partial or non-JSON line
        }
      }
    };
    child.stdout.on('data', onData);
  });
}
