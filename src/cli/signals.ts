/**
 * The process-wide handlers of the sluice command: the library installs
 * none (issue 17, item 7), so what a signal or the process's exit means is
 * decided here.
 *
 * A stop signal ends a command cleanly with exit 0 (README, "Exit codes").
 * A second one is the way out of a stop that hangs: it exits at once with
 * 128 + its number. Only a second one from the user counts, though: a
 * signal arriving within REPEAT_GRACE_MS of the first is the same Ctrl-C
 * delivered twice — `npx` and `npm run` forward the SIGINT the terminal
 * already sent to the whole foreground process group — and is ignored.
 */

/** Signals that stop a command cleanly. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** A repeat within this long of the first signal is a duplicate delivery, not an impatient user. */
export const REPEAT_GRACE_MS = 1000;

const SIGNAL_NUMBER: Record<StopSignal, number> = { SIGINT: 2, SIGTERM: 15 };

export interface StopListener {
  /** Resolves with the first SIGINT or SIGTERM. */
  readonly signal: Promise<StopSignal>;
  /** The signal, once one came. */
  readonly received: StopSignal | undefined;
  /** Removes the handlers (a signal then has its default effect again). Idempotent. */
  dispose(): void;
}

/**
 * Listens for SIGINT and SIGTERM until disposed: the first resolves
 * `signal`; a later one (after REPEAT_GRACE_MS) exits at once with
 * 128 + its number.
 */
export function listenForStop(): StopListener {
  let received: StopSignal | undefined;
  let at = 0;
  let resolve: (s: StopSignal) => void = () => undefined;
  const signal = new Promise<StopSignal>((r) => (resolve = r));
  const on = (sig: StopSignal) => {
    if (received === undefined) {
      received = sig;
      at = performance.now();
      resolve(sig);
      return;
    }
    if (performance.now() - at >= REPEAT_GRACE_MS) process.exit(128 + SIGNAL_NUMBER[sig]);
  };
  const handlers = STOP_SIGNALS.map((sig) => [sig, () => on(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  return {
    signal,
    get received() {
      return received;
    },
    dispose: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}

/**
 * Resolves with the first SIGINT or SIGTERM (the caller stops cleanly); a
 * second signal from the user exits at once with 128 + its number. The
 * handlers stay for the life of the process (long-running commands).
 */
export function waitForSignal(): Promise<string> {
  return listenForStop().signal;
}

/**
 * Runs `fn` if the process exits (process.exit, the end of the event loop,
 * an uncaught exception) before the returned function is called, which
 * removes it. `fn` must be synchronous: an 'exit' handler cannot wait.
 */
export function onExit(fn: () => void): () => void {
  const handler = () => fn();
  process.on('exit', handler);
  return () => void process.off('exit', handler);
}
